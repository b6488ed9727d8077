--[[ Hand jobs back to pending (worker shutting down before they finished). The interrupted
attempt is not counted: the job did not fail, its worker left.
KEYS[1] active   KEYS[2] pending   KEYS[3] marker          KEYS[4] sequence
KEYS[5] type_counts   KEYS[6] job_prefix   KEYS[7] events_prefix   KEYS[8] events
KEYS[9] lanes    KEYS[10] lane_prefix
KEYS[11] group_prefix   KEYS[12] groups   KEYS[13] groups_ready   KEYS[14] groups_held
KEYS[15] group_state    KEYS[16] groups_pending
ARGV[1] worker_id   ARGV[2] now_ms   ARGV[3..] job ids
Returns how many were handed back.
]]
local worker, now = ARGV[1], tonumber(ARGV[2])
local released = 0
local pend = {pending = KEYS[2], lanes = KEYS[9], lane_prefix = KEYS[10],
  groups = group_keys(11, KEYS[4])}
for i = 3, #ARGV do
  local job_id = ARGV[i]
  local job_key = KEYS[6] .. job_id
  if rcall("ZSCORE", KEYS[1], job_id) and rcall("HGET", job_key, "worker") == worker then
    local fields = rcall("HMGET", job_key, "type", "group")
    local job_type = fields[1]
    rcall("ZREM", KEYS[1], job_id)
    if fields[2] then group_stopped(pend.groups, fields[2]) end
    count(KEYS[5], job_type, "processing", -1)
    rcall("HINCRBY", job_key, "attempts", -1)
    rcall("HDEL", job_key, "worker")
    make_pending(job_key, job_id, pend, KEYS[4], KEYS[5], job_type, now, "released")
    publish(KEYS[7], KEYS[8], job_id, "pending", now)
    released = released + 1
  end
end
if released > 0 then rcall("ZADD", KEYS[3], 0, "0") end
return released
