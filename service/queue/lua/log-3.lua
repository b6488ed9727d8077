--[[ Append a log line to a job, keeping only the newest lines, and publish it on the job's
event channel in the same step (the SSE stream's `log` event), numbered so a follower that also
reads the kept lines prints each once.
KEYS[1] job (its hash)   KEYS[2] logs (the job's log list)   KEYS[3] events_prefix
ARGV[1] line   ARGV[2] lines_kept   ARGV[3] job_id
Returns the line's number (1 for a job's first line; counted in the hash's `logs_total`, so it
keeps growing when old lines are trimmed), or 0 when the job no longer exists (no orphan log
key is created).
]]
if rcall("EXISTS", KEYS[1]) == 0 then return 0 end
local n = rcall("RPUSH", KEYS[2], ARGV[1])
if n > tonumber(ARGV[2]) then rcall("LTRIM", KEYS[2], -tonumber(ARGV[2]), -1) end
local index = rcall("HINCRBY", KEYS[1], "logs_total", 1)
local state = rcall("HGET", KEYS[1], "state")
rcall("PUBLISH", KEYS[3] .. ARGV[3],
  cjson.encode({id = ARGV[3], state = state, log = ARGV[1], index = index}))
return index
