--[[ Run a delayed job now: it becomes pending at once (in its lane, if it has one).
KEYS[1] job_prefix   KEYS[2] delayed   KEYS[3] pending   KEYS[4] lanes   KEYS[5] lane_prefix
KEYS[6] sequence     KEYS[7] type_counts                 KEYS[8] marker
KEYS[9] events_prefix                  KEYS[10] events   KEYS[11] flow
KEYS[12] group_prefix   KEYS[13] groups   KEYS[14] groups_ready   KEYS[15] groups_held
KEYS[16] group_state    KEYS[17] groups_pending
ARGV[1] job_id   ARGV[2] now_ms
Returns {"missing"} | {state it is in, when not delayed} | {"ok"}.
]]
local job_id, now = ARGV[1], tonumber(ARGV[2])
local job_key = KEYS[1] .. job_id
local fields = rcall("HMGET", job_key, "state", "type")
local state, job_type = fields[1], fields[2]
if not state then return {"missing"} end
if state ~= "delayed" then return {state} end
rcall("ZREM", KEYS[2], job_id)
count(KEYS[7], job_type, "delayed", -1)
local pend = {pending = KEYS[3], lanes = KEYS[4], lane_prefix = KEYS[5],
  groups = group_keys(12, KEYS[6])}
make_pending(job_key, job_id, pend, KEYS[6], KEYS[7], job_type, now, "promoted")
if rcall("HEXISTS", KEYS[11], "queue_paused") == 0 then rcall("ZADD", KEYS[8], 0, "0") end
publish(KEYS[9], KEYS[10], job_id, "pending", now)
return {"ok"}
