--[[ End an attempt: completed, or failed (retried after a backoff while attempts remain).
Only the worker holding the lease may finish a job: a stale worker (its lease expired and the
job went elsewhere, or the job was cancelled) gets 0 and changes nothing.
KEYS[1]  job_prefix    KEYS[2]  active        KEYS[3]  delayed      KEYS[4]  completed
KEYS[5]  failed        KEYS[6]  marker        KEYS[7]  pending      KEYS[8]  type_counts
KEYS[9]  type_limits   KEYS[10] expiry        KEYS[11] type_index_prefix
KEYS[12] idempotency_prefix                   KEYS[13] logs_prefix  KEYS[14] samples
KEYS[15] stats of this minute                 KEYS[16] events_prefix
KEYS[17] events channel
ARGV[1] job id   ARGV[2] worker id   ARGV[3] now ms   ARGV[4] "completed" | "failed"
ARGV[5] result JSON (completed) or error message (failed)   ARGV[6] traceback
ARGV[7] retry delay ms, -1 = do not retry   ARGV[8] trim limit   ARGV[9] stats TTL s
ARGV[10] samples kept
Returns 0 stale, 1 completed, 2 retry scheduled, 3 failed.
]]
local job_id, worker, now, outcome = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local job_key = KEYS[1] .. job_id
local fields = rcall("HMGET", job_key, "worker", "type", "attempts", "max_attempts",
  "keep_completed", "keep_failed", "pending_since", "attempt_started")
if fields[1] ~= worker or not rcall("ZSCORE", KEYS[2], job_id) then return 0 end

local job_type = fields[2]
local p = {job_prefix = KEYS[1], expiry = KEYS[10], type_counts = KEYS[8],
  type_index_prefix = KEYS[11], idempotency_prefix = KEYS[12], logs_prefix = KEYS[13]}
local limit, stats = tonumber(ARGV[8]), KEYS[15]
rcall("ZREM", KEYS[2], job_id)
count(KEYS[8], job_type, "processing", -1)
rcall("EXPIRE", stats, ARGV[9])
-- A job of a concurrency-limited type leaving may unblock one waiting in pending.
if rcall("HEXISTS", KEYS[9], job_type) == 1 and rcall("ZCARD", KEYS[7]) > 0 then
  rcall("ZADD", KEYS[6], 0, "0")
end

if outcome == "completed" then
  local started = tonumber(fields[8] or now)
  rcall("LPUSH", KEYS[14], (started - tonumber(fields[7] or started)) .. " " .. (now - started))
  rcall("LTRIM", KEYS[14], 0, tonumber(ARGV[10]) - 1)
  rcall("HINCRBY", stats, "completed", 1)
  rcall("HSET", job_key, "result", ARGV[5], "progress", 100)
  retire(p, job_key, job_id, job_type, "completed", KEYS[4], fields[5], now, limit)
  publish(KEYS[16], KEYS[17], job_id, "completed", now)
  return 1
end

rcall("HSET", job_key, "error", ARGV[5], "traceback", ARGV[6])
local delay = tonumber(ARGV[7])
if delay >= 0 and tonumber(fields[3]) < tonumber(fields[4]) then
  rcall("HINCRBY", stats, "retried", 1)
  rcall("HSET", job_key, "state", "delayed")
  rcall("ZADD", KEYS[3], now + delay, job_id)
  count(KEYS[8], job_type, "delayed", 1)
  timeline(job_key, "delayed", now, "retry")
  rcall("ZADD", KEYS[6], "LT", now + delay, "0")
  publish(KEYS[16], KEYS[17], job_id, "delayed", now)
  return 2
end
rcall("HINCRBY", stats, "failed", 1)
retire(p, job_key, job_id, job_type, "failed", KEYS[5], fields[6], now, limit)
publish(KEYS[16], KEYS[17], job_id, "failed", now)
return 3
