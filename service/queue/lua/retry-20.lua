--[[ Run a failed or cancelled job again, with its attempts reset.
A flow parent with children still open waits for them again (waiting-children) instead of
becoming pending. A grouped job becomes pending in its group. A flow child re-opens its parent: counted again, its failure forgotten, and a
parent that failed for its failed children waits again once none is left (recursively).
KEYS[1] job_prefix   KEYS[2] failed        KEYS[3] cancelled     KEYS[4] pending
KEYS[5] marker       KEYS[6] sequence      KEYS[7] type_counts   KEYS[8] expiry
KEYS[9] events_prefix                      KEYS[10] events
KEYS[11] lanes        KEYS[12] lane_prefix
KEYS[13] group_prefix KEYS[14] groups      KEYS[15] groups_ready   KEYS[16] groups_held
KEYS[17] group_state  KEYS[18] groups_pending
KEYS[19] waiting_children    KEYS[20] child_failures_prefix
ARGV[1] job_id   ARGV[2] now_ms
Returns {"missing"} | {state it is in, when not retryable} | {"ok", previous state}.
]]
local job_id, now = ARGV[1], tonumber(ARGV[2])
local job_key = KEYS[1] .. job_id
local fields = rcall("HMGET", job_key, "state", "type", "parent", "waiting")
local state, job_type = fields[1], fields[2]
if not state then return {"missing"} end
local sets = {failed = KEYS[2], cancelled = KEYS[3]}
if not sets[state] then return {state} end
local f = {job_prefix = KEYS[1], failed = KEYS[2], expiry = KEYS[8], type_counts = KEYS[7],
  events_prefix = KEYS[9], events = KEYS[10], waiting = KEYS[19], failures_prefix = KEYS[20]}

rcall("ZREM", sets[state], job_id)
rcall("ZREM", KEYS[8], job_id)
count(KEYS[7], job_type, state, -1)
rcall("HDEL", job_key, "error", "traceback", "result", "finished", "worker", "progress_msg")
rcall("HSET", job_key, "attempts", 0, "progress", 0, "due", now)
if tonumber(fields[4] or 0) > 0 then
  rcall("HSET", job_key, "state", "waiting-children")
  rcall("ZADD", KEYS[19], now, job_id)
  count(KEYS[7], job_type, "waiting-children", 1)
  timeline(job_key, "waiting-children", now, "retry")
  publish(KEYS[9], KEYS[10], job_id, "waiting-children", now)
else
  make_pending(job_key, job_id, {pending = KEYS[4], lanes = KEYS[11], lane_prefix = KEYS[12], groups = group_keys(13, KEYS[6])}, KEYS[6], KEYS[7], job_type, now, "retry")
  rcall("ZADD", KEYS[5], 0, "0")
  publish(KEYS[9], KEYS[10], job_id, "pending", now)
end
if fields[3] then rearm_parent(f, fields[3], job_id, now) end
return {"ok", state}
