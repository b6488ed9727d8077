--[[ Claim one tick of a schedule: enqueue its job and move the schedule to its next tick, only
while the schedule's score is still the tick the caller read (compare-and-set), so of all the
processes that saw the tick due exactly one enqueues it. A trigger (expected_ms "") enqueues
without touching the cadence.
KEYS[1]  schedules           KEYS[2]  schedule_prefix     KEYS[3]  schedule_runs_prefix
KEYS[4]  job_prefix          KEYS[5]  pending             KEYS[6]  delayed
KEYS[7]  marker              KEYS[8]  sequence            KEYS[9]  type_counts
KEYS[10] type_index_prefix   KEYS[11] events_prefix       KEYS[12] events
KEYS[13] lanes               KEYS[14] lane_prefix
ARGV[1] schedule_id
ARGV[2] expected_ms: the tick (score) the caller read, "" for a trigger
ARGV[3] next_ms: the schedule's next tick, -1 when it has ended (scored +inf)
ARGV[4] runs: the schedule's run count after this claim
ARGV[5] now_ms
ARGV[6] runs_kept: newest run job ids kept on the schedule
ARGV[7] job_id: "" for no job (a skipped misfire)
ARGV[8] type              ARGV[9] priority         ARGV[10] message: the taskiq message
ARGV[11] due_ms           ARGV[12] attempts: max attempts
ARGV[13] keep_completed: policy "count,age"         ARGV[14] keep_failed
Returns {"missing"} (no such schedule), {"stale"} (someone else claimed it, or it was paused,
replaced or deleted since it was read), else {"ok", job id or ""}.
]]
local schedule_id, expected, next_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now, runs_kept = tonumber(ARGV[5]), tonumber(ARGV[6])
local job_id, job_type, priority, message = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local due = tonumber(ARGV[11])
local schedule_key = KEYS[2] .. schedule_id
local pend = {pending = KEYS[5], lanes = KEYS[13], lane_prefix = KEYS[14]}

if rcall("EXISTS", schedule_key) == 0 then return {"missing"} end
if expected ~= "" then
  local score = rcall("ZSCORE", KEYS[1], schedule_id)
  if not score or tonumber(score) ~= tonumber(expected) then return {"stale"} end
  -- An ended schedule stays listed, scored +inf like a paused one: never due.
  rcall("ZADD", KEYS[1], next_ms < 0 and "+inf" or ARGV[3], schedule_id)
  rcall("HSET", schedule_key, "runs", ARGV[4])
end
if job_id == "" then return {"ok", ""} end

-- The same steps as enqueue-13.lua's new job (no idempotency key: the id is the key).
if rcall("EXISTS", KEYS[4] .. job_id) == 1 then return {"ok", job_id} end
local new_job_keys = {job_prefix = KEYS[4], delayed = KEYS[6], marker = KEYS[7],
  sequence = KEYS[8], type_counts = KEYS[9], type_index_prefix = KEYS[10],
  events_prefix = KEYS[11], events = KEYS[12], pend = pend}
create_job(new_job_keys, job_id, job_type, priority, message, due, ARGV[12], ARGV[13], ARGV[14],
  {"schedule", schedule_id}, now, "schedule")
local runs_key = KEYS[3] .. schedule_id
rcall("LPUSH", runs_key, job_id)
rcall("LTRIM", runs_key, 0, runs_kept - 1)
return {"ok", job_id}
