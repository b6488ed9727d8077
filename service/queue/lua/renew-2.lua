--[[ Extend this worker's leases; record when held jobs' code started; report the jobs it no
longer holds.
A job is lost when its lease already expired and the sweeper gave it away, or it was cancelled:
the worker then stops running it.
A job's start rides on the next renewal (no round trip of its own): `dequeue` writes no start
time, since a prefetched job may wait in the worker before its code runs (docs/queue.md,
"Processing and reserved"). A start is written only while this worker holds that attempt.
KEYS[1] active   KEYS[2] job_prefix
ARGV[1] worker_id   ARGV[2] deadline_ms (the new lease deadline)
ARGV[3] starts (how many start triples follow)
ARGV[4..] per started job 3 entries (job id, attempt, start ms), then the job ids to renew
Returns the ids of jobs not held any more.
]]
local worker, deadline = ARGV[1], ARGV[2]
local first_id = 4 + 3 * tonumber(ARGV[3])
for i = 4, first_id - 1, 3 do
  local job_key = KEYS[2] .. ARGV[i]
  local held = rcall("HMGET", job_key, "worker", "attempts", "state")
  if held[1] == worker and held[2] == ARGV[i + 1] and held[3] == "processing" then
    rcall("HSET", job_key, "attempt_started", ARGV[i + 2])
    rcall("HSETNX", job_key, "started", ARGV[i + 2])
  end
end
local lost = {}
for i = first_id, #ARGV do
  local job_id = ARGV[i]
  if rcall("ZSCORE", KEYS[1], job_id) and rcall("HGET", KEYS[2] .. job_id, "worker") == worker then
    rcall("ZADD", KEYS[1], "XX", deadline, job_id)
  else
    lost[#lost + 1] = job_id
  end
end
return lost
