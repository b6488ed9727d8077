--[[ Delete one finished job and every trace of it (hash, logs, indexes, idempotency key, and
for a flow parent its children list, results and failures; its children stay).
Only completed, failed or cancelled jobs: a live job must be cancelled first, so no worker is
left running a job that no longer exists.
KEYS[1] job_prefix   KEYS[2] completed   KEYS[3] failed   KEYS[4] cancelled   KEYS[5] expiry
KEYS[6] type_index_prefix   KEYS[7] idempotency_prefix   KEYS[8] logs_prefix
KEYS[9] type_counts  KEYS[10] children_prefix   KEYS[11] child_results_prefix
KEYS[12] child_failures_prefix
ARGV[1] job_id
Returns {"ok"}, {"missing"} or {<the job's state>} when it has not finished.
]]
local job_id = ARGV[1]
local state = rcall("HGET", KEYS[1] .. job_id, "state")
if not state then return {"missing"} end
local finished_sets = {completed = KEYS[2], failed = KEYS[3], cancelled = KEYS[4]}
local finished_set = finished_sets[state]
if not finished_set then return {state} end
local p = {job_prefix = KEYS[1], expiry = KEYS[5], type_index_prefix = KEYS[6],
  idempotency_prefix = KEYS[7], logs_prefix = KEYS[8], type_counts = KEYS[9],
  children_prefix = KEYS[10], results_prefix = KEYS[11], failures_prefix = KEYS[12]}
remove_job(p, job_id, finished_set)
return {"ok"}
