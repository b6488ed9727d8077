--[[ Append a log line to a job, keeping only the newest lines.
KEYS[1] job (its hash)   KEYS[2] logs (the job's log list)
ARGV[1] line   ARGV[2] lines_kept
Returns the list length, or 0 when the job no longer exists (no orphan log key is created).
]]
if rcall("EXISTS", KEYS[1]) == 0 then return 0 end
local n = rcall("RPUSH", KEYS[2], ARGV[1])
if n > tonumber(ARGV[2]) then rcall("LTRIM", KEYS[2], -tonumber(ARGV[2]), -1) end
return n
