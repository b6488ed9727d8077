--[[ Extend this worker's leases; report the jobs it no longer holds.
A job is lost when its lease already expired and the sweeper gave it away, or it was cancelled:
the worker then stops running it.
KEYS[1] active   KEYS[2] job_prefix
ARGV[1] worker_id   ARGV[2] deadline_ms (the new lease deadline)   ARGV[3..] job ids
Returns the ids of jobs not held any more.
]]
local worker, deadline = ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
  local job_id = ARGV[i]
  if rcall("ZSCORE", KEYS[1], job_id) and rcall("HGET", KEYS[2] .. job_id, "worker") == worker then
    rcall("ZADD", KEYS[1], "XX", deadline, job_id)
  else
    lost[#lost + 1] = job_id
  end
end
return lost
