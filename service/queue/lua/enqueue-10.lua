--[[ Add one job, pending or delayed; with an idempotency key, return the job it first made.
KEYS[1]  job_prefix          KEYS[2]  pending             KEYS[3]  delayed
KEYS[4]  marker              KEYS[5]  sequence            KEYS[6]  type_counts
KEYS[7]  type_index_prefix   KEYS[8]  idempotency_prefix  KEYS[9]  events_prefix
KEYS[10] events channel
ARGV[1] job id   ARGV[2] type   ARGV[3] priority   ARGV[4] taskiq message   ARGV[5] now ms
ARGV[6] due ms (<= now: pending at once)   ARGV[7] max attempts
ARGV[8] keep-completed policy "count,age"   ARGV[9] keep-failed policy   ARGV[10] idempotency key or ""
Returns {job id, 1 if created else 0, state}.
]]
local job_id, job_type, now, due = ARGV[1], ARGV[2], tonumber(ARGV[5]), tonumber(ARGV[6])
local idem = ARGV[10]
local job_key = KEYS[1] .. job_id

if idem ~= "" then
  local idem_key = KEYS[8] .. idem
  local existing = rcall("GET", idem_key)
  if existing and rcall("EXISTS", KEYS[1] .. existing) == 1 then
    return {existing, 0, rcall("HGET", KEYS[1] .. existing, "state")}
  end
  rcall("SET", idem_key, job_id)
end
if rcall("EXISTS", job_key) == 1 then
  return {job_id, 0, rcall("HGET", job_key, "state")}
end

rcall("HSET", job_key, "type", job_type, "priority", ARGV[3], "msg", ARGV[4], "created", now,
  "due", math.max(due, now), "attempts", 0, "max_attempts", ARGV[7], "keep_completed", ARGV[8],
  "keep_failed", ARGV[9])
if idem ~= "" then rcall("HSET", job_key, "idem", idem) end
rcall("ZADD", KEYS[7] .. job_type, now, job_id)

local state
if due > now then
  state = "delayed"
  rcall("HSET", job_key, "state", state)
  rcall("ZADD", KEYS[3], due, job_id)
  count(KEYS[6], job_type, state, 1)
  timeline(job_key, state, now, "")
  -- Wake one idle worker early enough to promote it; LT keeps an earlier wake-up.
  rcall("ZADD", KEYS[4], "LT", due, "0")
else
  state = "pending"
  make_pending(job_key, job_id, KEYS[2], KEYS[5], KEYS[6], job_type, now, "")
  rcall("ZADD", KEYS[4], 0, "0")
end
publish(KEYS[9], KEYS[10], job_id, state, now)
return {job_id, 1, state}
