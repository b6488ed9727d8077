--[[ Cancel a delayed, pending, processing or waiting-children job in one step.
A processing job is marked cancelled here at once (so its worker's late finish is stale and it is
never retried) and its worker is told on the cancel channel to stop the running task. A flow
parent's live children are cancelled with it (recursively); a child's cancellation is settled
with its parent (its on_child_failure applies) in the same step. A grouped job leaves its
group's pending set, or frees its group's running slot (cancel_one in _lib.lua).
KEYS[1]  job_prefix   KEYS[2]  pending       KEYS[3]  delayed          KEYS[4] active
KEYS[5]  cancelled    KEYS[6]  type_counts   KEYS[7]  cancel_channel   KEYS[8] expiry
KEYS[9]  type_index_prefix   KEYS[10] idempotency_prefix   KEYS[11] logs_prefix
KEYS[12] marker       KEYS[13] events_prefix KEYS[14] events
KEYS[15] lane_prefix  KEYS[16] dedupe_prefix KEYS[17] sequence
KEYS[18] group_prefix KEYS[19] groups        KEYS[20] groups_ready     KEYS[21] groups_held
KEYS[22] group_state  KEYS[23] groups_pending
KEYS[24] failed       KEYS[25] lanes         KEYS[26] waiting_children
KEYS[27] children_prefix                     KEYS[28] child_results_prefix
KEYS[29] child_failures_prefix               KEYS[30] stats_minute
ARGV[1] job_id   ARGV[2] now_ms   ARGV[3] trim_limit   ARGV[4] stats_ttl_s
Returns {"missing"} | {terminal state it is already in} | {"ok", previous state}.
]]
local job_id, now = ARGV[1], tonumber(ARGV[2])
local state = rcall("HGET", KEYS[1] .. job_id, "state")
if not state then return {"missing"} end
local f = {job_prefix = KEYS[1], active = KEYS[4], delayed = KEYS[3], cancelled = KEYS[5],
  type_counts = KEYS[6], cancel_channel = KEYS[7], expiry = KEYS[8],
  type_index_prefix = KEYS[9], idempotency_prefix = KEYS[10], logs_prefix = KEYS[11],
  marker = KEYS[12], events_prefix = KEYS[13], events = KEYS[14], dedupe_prefix = KEYS[16],
  failed = KEYS[24], sequence = KEYS[17], stats = KEYS[30], stats_ttl = ARGV[4],
  pend = {pending = KEYS[2], lanes = KEYS[25], lane_prefix = KEYS[15],
    groups = group_keys(18, KEYS[17])},
  waiting = KEYS[26], children_prefix = KEYS[27], results_prefix = KEYS[28],
  failures_prefix = KEYS[29]}
local previous = cancel_tree(f, job_id, now, tonumber(ARGV[3]), false)
if not previous then return {state} end
return {"ok", previous}
