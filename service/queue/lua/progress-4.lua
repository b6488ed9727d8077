--[[ Record a running job's progress and tell live listeners.
KEYS[1] job_prefix   KEYS[2] active   KEYS[3] events_prefix   KEYS[4] events
ARGV[1] job_id   ARGV[2] worker_id   ARGV[3] percent (0-100)   ARGV[4] message   ARGV[5] now_ms
Returns 1, or 0 when the worker no longer holds the job (cancelled or lease lost).
]]
local job_id, worker = ARGV[1], ARGV[2]
local job_key = KEYS[1] .. job_id
if not rcall("ZSCORE", KEYS[2], job_id) or rcall("HGET", job_key, "worker") ~= worker then
  return 0
end
rcall("HSET", job_key, "progress", ARGV[3], "progress_msg", ARGV[4])
local msg = cjson.encode({id = job_id, state = "processing", progress = tonumber(ARGV[3]),
  message = ARGV[4], ts = tonumber(ARGV[5])})
rcall("PUBLISH", KEYS[3] .. job_id, msg)
return 1
