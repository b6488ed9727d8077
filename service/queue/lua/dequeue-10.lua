--[[ Move up to N of the best due jobs to active under this worker's lease, in one step.
Due delayed jobs are promoted first, so delays need no scheduler process. Job types with a
concurrency limit (type_limits) are skipped while that many of them are processing.
KEYS[1] pending    KEYS[2] delayed      KEYS[3] active        KEYS[4] marker
KEYS[5] sequence   KEYS[6] type_counts  KEYS[7] type_limits   KEYS[8] job_prefix
KEYS[9] events_prefix                   KEYS[10] events
ARGV[1] now_ms, or -1 for the server's clock (the call was queued behind a blocking pop, so
        the time it was sent at is stale by however long the pop waited)
ARGV[2] lease_ms   ARGV[3] worker_id   ARGV[4] max_jobs   ARGV[5] promote_limit
Returns {next delayed due ms or -1, id1, msg1, attempt1, pending_since1, id2, ...}.
]]
local now, lease, worker, max_jobs = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
if now < 0 then
  local t = rcall("TIME")
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local pending, type_counts, job_prefix = KEYS[1], KEYS[6], KEYS[8]

promote_due(KEYS[2], pending, KEYS[5], type_counts, job_prefix, now, tonumber(ARGV[5]))

local chosen = {}
if rcall("HLEN", KEYS[7]) == 0 then
  local popped = rcall("ZPOPMIN", pending, max_jobs)
  for i = 1, #popped, 2 do chosen[#chosen + 1] = popped[i] end
else
  -- Look a bounded window past limited types so they cannot starve the others.
  local window = rcall("ZRANGE", pending, 0, max_jobs + 200)
  local taken = {}
  for _, job_id in ipairs(window) do
    if #chosen >= max_jobs then break end
    local job_type = rcall("HGET", job_prefix .. job_id, "type")
    local limit = job_type and rcall("HGET", KEYS[7], job_type)
    local busy = 0
    if limit then
      busy = tonumber(rcall("HGET", type_counts, job_type .. "|processing") or "0")
        + (taken[job_type] or 0)
    end
    if not limit or busy < tonumber(limit) then
      taken[job_type] = (taken[job_type] or 0) + 1
      rcall("ZREM", pending, job_id)
      chosen[#chosen + 1] = job_id
    end
  end
end

local out = {-1}
for _, job_id in ipairs(chosen) do
  local job_key = job_prefix .. job_id
  local fields = rcall("HMGET", job_key, "type", "msg", "started", "pending_since")
  local attempt = rcall("HINCRBY", job_key, "attempts", 1)
  rcall("HSET", job_key, "state", "processing", "worker", worker, "attempt_started", now)
  if not fields[3] then rcall("HSET", job_key, "started", now) end
  rcall("ZADD", KEYS[3], now + lease, job_id)
  count(type_counts, fields[1], "pending", -1)
  count(type_counts, fields[1], "processing", 1)
  timeline(job_key, "processing", now, worker)
  publish(KEYS[9], KEYS[10], job_id, "processing", now)
  out[#out + 1] = job_id
  out[#out + 1] = fields[2]
  out[#out + 1] = attempt
  out[#out + 1] = fields[4] or now
end

-- A full batch may have left work behind: pass the wake-up on to the next idle worker.
if #chosen == max_jobs and rcall("ZCARD", pending) > 0 then
  rcall("ZADD", KEYS[4], 0, "0")
end
local next_due = rcall("ZRANGE", KEYS[2], 0, 0, "WITHSCORES")
if next_due[2] then out[1] = tonumber(next_due[2]) end
return out
