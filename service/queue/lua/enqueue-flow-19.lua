--[[ Add a whole flow (a tree of jobs) in one step, all or nothing (docs/queue.md "Flows").
Leaves are placed pending or delayed as `enqueue` places a job; a node with children waits in
state waiting-children, with `waiting` = its number of children, `on_child_failure`, and its
children's ids in its children list; every child names its `parent`. A job with a group is
placed in its group's pending set as `enqueue` places one; a grouped parent joins its group
only when its children are done and it becomes pending.
KEYS[1]  job_prefix          KEYS[2]  pending           KEYS[3]  delayed
KEYS[4]  marker              KEYS[5]  sequence          KEYS[6]  type_counts
KEYS[7]  type_index_prefix   KEYS[8]  events_prefix     KEYS[9]  events
KEYS[10] lanes               KEYS[11] lane_prefix       KEYS[12] waiting_children
KEYS[13] children_prefix     KEYS[14] group_prefix      KEYS[15] groups
KEYS[16] groups_ready        KEYS[17] groups_held       KEYS[18] group_state
KEYS[19] groups_pending
ARGV[1] now_ms
ARGV[2] max_memory_share: share of maxmemory above which nothing is enqueued (0 = no check of our own)
then 12 per job, parents before their children (the root first):
  job id, parent id ("" for the root), number of children, on_child_failure (fail | ignore |
  cancel), type, priority, taskiq message, due ms, max attempts, keep-completed policy,
  keep-failed policy, group or ""
Returns {"full", used_memory, maxmemory} when memory is above the share (nothing written),
{"exists"} when the root exists already (this very call, resent after a lost reply: nothing
written again), else {"ok"}.
]]
local FIELDS_PER_JOB = 12
local k = {job_prefix = KEYS[1], delayed = KEYS[3], marker = KEYS[4], sequence = KEYS[5],
  type_counts = KEYS[6], type_index_prefix = KEYS[7], events_prefix = KEYS[8],
  events = KEYS[9], pend = {pending = KEYS[2], lanes = KEYS[10], lane_prefix = KEYS[11],
    groups = group_keys(14, KEYS[5])}}
local now = tonumber(ARGV[1])
local NO_FIELDS = {}

local refusal = memory_refusal(tonumber(ARGV[2]))
if refusal then return refusal end
-- Ids are fresh uuids, so only a resend of this call can have made the root.
if rcall("EXISTS", KEYS[1] .. ARGV[3]) == 1 then return {"exists"} end

local function add_parent(job_id, children, mode, base, extra)
  local job_key = KEYS[1] .. job_id
  local job_type = ARGV[base + 4]
  rcall("HSET", job_key, "type", job_type, "priority", ARGV[base + 5], "msg", ARGV[base + 6],
    "created", now, "due", math.max(tonumber(ARGV[base + 7]), now), "attempts", 0,
    "max_attempts", ARGV[base + 8], "keep_completed", ARGV[base + 9],
    "keep_failed", ARGV[base + 10], "state", "waiting-children", "waiting", children,
    "on_child_failure", mode, unpack(extra))
  rcall("ZADD", KEYS[7] .. job_type, now, job_id)
  rcall("ZADD", KEYS[12], now, job_id)
  count(KEYS[6], job_type, "waiting-children", 1)
  timeline(job_key, "waiting-children", now, "")
  publish(KEYS[8], KEYS[9], job_id, "waiting-children", now)
end

for base = 3, #ARGV, FIELDS_PER_JOB do
  local job_id, parent, children = ARGV[base], ARGV[base + 1], tonumber(ARGV[base + 2])
  local extra = NO_FIELDS
  if parent ~= "" then
    extra = {"parent", parent}
    rcall("RPUSH", KEYS[13] .. parent, job_id)
  end
  local group = ARGV[base + 11]
  if group ~= "" then
    if extra == NO_FIELDS then extra = {} end
    extra[#extra + 1] = "group"
    extra[#extra + 1] = group
  end
  if children > 0 then
    add_parent(job_id, children, ARGV[base + 3], base, extra)
  else
    create_job(k, job_id, ARGV[base + 4], ARGV[base + 5], ARGV[base + 6],
      tonumber(ARGV[base + 7]), ARGV[base + 8], ARGV[base + 9], ARGV[base + 10], extra, now, "")
  end
end
return {"ok"}
