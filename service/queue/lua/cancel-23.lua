--[[ Cancel a delayed, pending or processing job in one step.
A processing job is marked cancelled here at once (so its worker's late finish is stale and it is
never retried) and its worker is told on the cancel channel to stop the running task.
KEYS[1]  job_prefix   KEYS[2]  pending       KEYS[3]  delayed          KEYS[4] active
KEYS[5]  cancelled    KEYS[6]  type_counts   KEYS[7]  cancel_channel   KEYS[8] expiry
KEYS[9]  type_index_prefix   KEYS[10] idempotency_prefix   KEYS[11] logs_prefix
KEYS[12] marker       KEYS[13] events_prefix KEYS[14] events
KEYS[15] lane_prefix  KEYS[16] dedupe_prefix KEYS[17] sequence
KEYS[18] group_prefix KEYS[19] groups        KEYS[20] groups_ready     KEYS[21] groups_held
KEYS[22] group_state  KEYS[23] groups_pending
ARGV[1] job_id   ARGV[2] now_ms   ARGV[3] trim_limit
Returns {"missing"} | {terminal state it is already in} | {"ok", previous state}.
]]
local job_id, now = ARGV[1], tonumber(ARGV[2])
local job_key = KEYS[1] .. job_id
local fields = rcall("HMGET", job_key, "state", "type", "keep_failed", "group")
local state, job_type = fields[1], fields[2]
if not state then return {"missing"} end
local sets = {pending = KEYS[2], delayed = KEYS[3], processing = KEYS[4]}
if not sets[state] then return {state} end

rcall("ZREM", sets[state], job_id)
-- A pending job of a lane is in its lane's set (or still in `pending`, not yet moved there).
if state == "pending" then rcall("ZREM", KEYS[15] .. job_type, job_id) end
local group = fields[4]
local groups = group_keys(18, KEYS[17])
if group and state == "pending" then group_remove(groups, group, job_id) end
count(KEYS[6], job_type, state, -1)
if state == "processing" then
  if group then group_stopped(groups, group) end
  rcall("PUBLISH", KEYS[7], job_id)
  -- Its slot is free now: a job of a limited type may be waiting for it.
  rcall("ZADD", KEYS[12], 0, "0")
end
local p = {job_prefix = KEYS[1], expiry = KEYS[8], type_counts = KEYS[6],
  type_index_prefix = KEYS[9], idempotency_prefix = KEYS[10], logs_prefix = KEYS[11],
  dedupe_prefix = KEYS[16]}
-- Cancelled jobs follow the job's failure retention, but are always kept at least briefly so
-- the caller can read what it cancelled.
local policy = fields[3] or "-1,-1"
if string.match(policy, "^0,") then policy = "-1,3600" end
retire(p, job_key, job_id, job_type, "cancelled", KEYS[5], policy, now, tonumber(ARGV[3]))
publish(KEYS[13], KEYS[14], job_id, "cancelled", now)
return {"ok", state}
