--[[ End attempts: completed, or failed (retried after a backoff while attempts remain).
One call finishes a batch of jobs (all of one worker), so a busy worker pays one round trip
and one script run for many jobs.
Only the worker holding the lease may finish a job: for a stale worker (its lease expired and
the job went elsewhere, or the job was cancelled) that job gets 0 and nothing changes.
KEYS[1]  job_prefix    KEYS[2]  active        KEYS[3]  delayed      KEYS[4]  completed
KEYS[5]  failed        KEYS[6]  marker        KEYS[7]  lane_prefix  KEYS[8]  type_counts
KEYS[9]  lanes         KEYS[10] expiry        KEYS[11] type_index_prefix
KEYS[12] idempotency_prefix                   KEYS[13] logs_prefix  KEYS[14] samples
KEYS[15] stats_minute                         KEYS[16] events_prefix
KEYS[17] events                               KEYS[18] dedupe_prefix
KEYS[19] sequence      KEYS[20] group_prefix  KEYS[21] groups       KEYS[22] groups_ready
KEYS[23] groups_held   KEYS[24] group_state   KEYS[25] groups_pending
KEYS[26] pending       KEYS[27] cancelled     KEYS[28] cancel_channel
KEYS[29] waiting_children                     KEYS[30] children_prefix
KEYS[31] child_results_prefix                 KEYS[32] child_failures_prefix
ARGV[1] worker_id   ARGV[2] now_ms   ARGV[3] trim_limit   ARGV[4] stats_ttl_s
ARGV[5] samples_kept
then per job, 6 entries: job id, "completed" | "failed", result JSON (completed) or error
message (failed), traceback, retry delay ms (-1 = do not retry), start ms (when its code
started; "" when none ran). A start the renewal did not record yet is recorded here: `dequeue`
writes none (docs/queue.md, "Processing and reserved").
Returns per job: 0 stale, 1 completed, 2 retry scheduled, 3 failed.
A job of a flow that ends for good (completed, or failed with no attempt left) is settled with
its parent in the same step (_lib.lua's settle_child): the last child releases the parent, into
its group's pending set when it has a group.
]]
local worker, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local stats = KEYS[15]
local groups = group_keys(20, KEYS[19])
-- Every key retire and the flow helpers may touch (a parent may be released, failed or
-- cancelled with its children).
local p = {job_prefix = KEYS[1], expiry = KEYS[10], type_counts = KEYS[8],
  stats = KEYS[15], stats_ttl = ARGV[4],
  type_index_prefix = KEYS[11], idempotency_prefix = KEYS[12], logs_prefix = KEYS[13],
  dedupe_prefix = KEYS[18], active = KEYS[2], delayed = KEYS[3], failed = KEYS[5],
  marker = KEYS[6], events_prefix = KEYS[16], events = KEYS[17],
  pend = {pending = KEYS[26], lanes = KEYS[9], lane_prefix = KEYS[7], groups = groups},
  sequence = KEYS[19], cancelled = KEYS[27], cancel_channel = KEYS[28], waiting = KEYS[29],
  children_prefix = KEYS[30], results_prefix = KEYS[31], failures_prefix = KEYS[32]}

local function finish_one(job_id, outcome, payload, trace, delay, start)
  local job_key = KEYS[1] .. job_id
  local fields = rcall("HMGET", job_key, "worker", "type", "attempts", "max_attempts",
    "keep_completed", "keep_failed", "pending_since", "attempt_started", "group", "parent")
  if fields[1] ~= worker or not rcall("ZSCORE", KEYS[2], job_id) then return 0 end

  if start ~= "" and not fields[8] then
    rcall("HSET", job_key, "attempt_started", start)
    rcall("HSETNX", job_key, "started", start)
    fields[8] = start
  end
  local job_type = fields[2]
  rcall("ZREM", KEYS[2], job_id)
  count(KEYS[8], job_type, "processing", -1)
  -- A job of a limited lane leaving may unblock one waiting in that lane.
  if rcall("SISMEMBER", KEYS[9], job_type) == 1 and rcall("ZCARD", KEYS[7] .. job_type) > 0 then
    rcall("ZADD", KEYS[6], 0, "0")
  end
  -- Likewise for its group: a free slot may let the group's next job start.
  if fields[9] and group_stopped(groups, fields[9]) then rcall("ZADD", KEYS[6], 0, "0") end

  if outcome == "completed" then
    local started = tonumber(fields[8] or now)
    rcall("LPUSH", KEYS[14], (started - tonumber(fields[7] or started)) .. " " .. (now - started))
    rcall("HINCRBY", stats, "completed", 1)
    rcall("HSET", job_key, "result", payload, "progress", 100)
    retire(p, job_key, job_id, job_type, "completed", KEYS[4], fields[5], now, limit)
    publish(KEYS[16], KEYS[17], job_id, "completed", now)
    if fields[10] then settle_child(p, fields[10], job_id, "completed", payload, now, limit) end
    return 1
  end

  rcall("HSET", job_key, "error", payload, "traceback", trace)
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
  if fields[10] then settle_child(p, fields[10], job_id, "failed", payload, now, limit) end
  return 3
end

local statuses = {}
for i = 6, #ARGV, 6 do
  statuses[#statuses + 1] = finish_one(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    tonumber(ARGV[i + 4]), ARGV[i + 5])
end
rcall("EXPIRE", stats, ARGV[4])
rcall("LTRIM", KEYS[14], 0, tonumber(ARGV[5]) - 1)
return statuses
