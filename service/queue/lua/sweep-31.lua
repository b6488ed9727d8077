--[[ Housekeeping, run by one worker at a time under the sweep lock:
  1. jobs whose lease expired (worker killed or frozen) go back to pending; a job that lost its
     worker more than max_stalls times fails instead (it is probably what kills them);
  2. due delayed jobs are promoted (dequeue does this too; this covers queues with no idle worker);
  3. finished jobs past their retention age are deleted;
  4. workers whose heartbeat stopped leave the registry.
Each step handles at most `limit` items so one call stays short; the caller repeats while busy.
KEYS[1]  active      KEYS[2]  pending      KEYS[3]  delayed       KEYS[4]  marker
KEYS[5]  sequence    KEYS[6]  type_counts  KEYS[7]  job_prefix    KEYS[8]  completed
KEYS[9]  failed      KEYS[10] cancelled    KEYS[11] expiry        KEYS[12] type_index_prefix
KEYS[13] idempotency_prefix                KEYS[14] logs_prefix   KEYS[15] workers
KEYS[16] events_prefix                     KEYS[17] events
KEYS[18] stats_minute    KEYS[19] lanes    KEYS[20] lane_prefix
KEYS[21] group_prefix    KEYS[22] groups   KEYS[23] groups_ready      KEYS[24] groups_held
KEYS[25] group_state     KEYS[26] groups_pending
KEYS[27] cancel_channel  KEYS[28] waiting_children               KEYS[29] children_prefix
KEYS[30] child_results_prefix                KEYS[31] child_failures_prefix
ARGV[1] now_ms   ARGV[2] limit   ARGV[3] max_stalls   ARGV[4] worker_ttl_ms (heartbeat TTL)
ARGV[5] stats_ttl_s
A job failed for stalling is settled with its flow parent, as finish does.
Returns {requeued, failed for stalling, promoted, expired and deleted, workers dropped}.
]]
local now, limit, max_stalls = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local job_prefix, type_counts = KEYS[7], KEYS[6]
local pend = {pending = KEYS[2], lanes = KEYS[19], lane_prefix = KEYS[20],
  groups = group_keys(21, KEYS[5])}
local p = {job_prefix = job_prefix, expiry = KEYS[11], type_counts = type_counts,
  stats = KEYS[18], stats_ttl = ARGV[5],
  type_index_prefix = KEYS[12], idempotency_prefix = KEYS[13], logs_prefix = KEYS[14],
  active = KEYS[1], delayed = KEYS[3], marker = KEYS[4], sequence = KEYS[5], pend = pend,
  failed = KEYS[9], cancelled = KEYS[10], events_prefix = KEYS[16], events = KEYS[17],
  cancel_channel = KEYS[27], waiting = KEYS[28], children_prefix = KEYS[29],
  results_prefix = KEYS[30], failures_prefix = KEYS[31]}

local requeued, stalled_out = 0, 0
local expired = rcall("ZRANGEBYSCORE", KEYS[1], "-inf", now, "LIMIT", 0, limit)
for _, job_id in ipairs(expired) do
  local job_key = job_prefix .. job_id
  rcall("ZREM", KEYS[1], job_id)
  local fields = rcall("HMGET", job_key, "type", "keep_failed", "worker", "group", "parent")
  local job_type = fields[1]
  if job_type then
    count(type_counts, job_type, "processing", -1)
    if fields[4] then group_stopped(pend.groups, fields[4]) end
    local stalls = rcall("HINCRBY", job_key, "stalls", 1)
    rcall("HDEL", job_key, "worker")
    if stalls > max_stalls then
      local err = "job lost its worker " .. stalls .. " times (lease expired); last worker "
        .. (fields[3] or "?")
      rcall("HSET", job_key, "error", err)
      rcall("HINCRBY", KEYS[18], "failed", 1)
      rcall("EXPIRE", KEYS[18], ARGV[5])
      retire(p, job_key, job_id, job_type, "failed", KEYS[9], fields[2] or "-1,-1", now, limit)
      publish(KEYS[16], KEYS[17], job_id, "failed", now)
      if fields[5] then settle_child(p, fields[5], job_id, "failed", err, now, limit) end
      stalled_out = stalled_out + 1
    else
      make_pending(job_key, job_id, pend, KEYS[5], type_counts, job_type, now, "lease-expired")
      publish(KEYS[16], KEYS[17], job_id, "pending", now)
      requeued = requeued + 1
    end
  end
end

local promoted = promote_due(KEYS[3], pend, KEYS[5], type_counts, job_prefix, now, limit)
if requeued + promoted > 0 then rcall("ZADD", KEYS[4], 0, "0") end

local finished_sets = {completed = KEYS[8], failed = KEYS[9], cancelled = KEYS[10]}
local too_old = rcall("ZRANGEBYSCORE", KEYS[11], "-inf", now, "LIMIT", 0, limit)
for _, job_id in ipairs(too_old) do
  local state = rcall("HGET", job_prefix .. job_id, "state")
  if finished_sets[state] then
    remove_job(p, job_id, finished_sets[state])
  else
    rcall("ZREM", KEYS[11], job_id) -- retried since: no longer due for deletion
  end
end

local dropped = rcall("ZREMRANGEBYSCORE", KEYS[15], "-inf", now - tonumber(ARGV[4]))
return {requeued, stalled_out, promoted, #too_old, dropped}
