--[[ Add jobs, pending or delayed, all or none; with an idempotency key, return the job it first
made; with a dedupe key, throttle, debounce or hold back while its job runs (docs/queue.md
"Deduplication").
KEYS[1]  job_prefix          KEYS[2]  pending             KEYS[3]  delayed
KEYS[4]  marker              KEYS[5]  sequence            KEYS[6]  type_counts
KEYS[7]  type_index_prefix   KEYS[8]  idempotency_prefix  KEYS[9]  events_prefix
KEYS[10] events              KEYS[11] lanes               KEYS[12] lane_prefix
KEYS[13] dedupe_prefix       KEYS[14] group_prefix        KEYS[15] groups
KEYS[16] groups_ready        KEYS[17] groups_held         KEYS[18] group_state
KEYS[19] groups_pending
ARGV[1] now_ms
ARGV[2] max_memory_share: share of maxmemory above which nothing is enqueued (0 = no check of our own)
then 11 per job, from ARGV[3]:
  job id, type, priority, taskiq message, due ms (<= now: pending at once), max attempts,
  keep-completed policy "count,age", keep-failed policy, idempotency key or "",
  dedupe "<mode>:<ttl ms>:<key>" (mode throttle | debounce | until_done, ttl 0 = none) or "",
  group or ""
Returns {"full", used_memory, maxmemory} when memory is above the share (nothing written), else
{"ok", then per job: job id, 1 created | 0 existing (id or idempotency key) | 2 deduplicated,
state}.

One script for a whole bulk request because Redis does not roll back: in MULTI/EXEC each script
is checked for memory on its own, so a bulk could stop halfway with some jobs committed. A script
that passes its first write runs to the end (Redis checks OOM only before a script's first write),
and the memory check below happens before any write.
]]
local FIELDS_PER_JOB = 11
local groups = group_keys(14, KEYS[5])
local pend = {pending = KEYS[2], lanes = KEYS[11], lane_prefix = KEYS[12], groups = groups}
local new_job_keys = {job_prefix = KEYS[1], delayed = KEYS[3], marker = KEYS[4],
  sequence = KEYS[5], type_counts = KEYS[6], type_index_prefix = KEYS[7],
  events_prefix = KEYS[9], events = KEYS[10], pend = pend}
local now, memory_share = tonumber(ARGV[1]), tonumber(ARGV[2])
local LIVE = {pending = true, delayed = true, processing = true}
local NO_FIELDS = {}

-- The message was built for the new id; a debounce keeps the job it replaces, so the message
-- must name that job (the worker runs a message under its task_id).
local function message_for(message, from_id, to_id)
  local head = '{"task_id":"' .. from_id .. '"'
  if string.sub(message, 1, #head) == head then
    return '{"task_id":"' .. to_id .. '"' .. string.sub(message, #head + 1)
  end
  local decoded = cjson.decode(message)
  decoded.task_id = to_id
  return cjson.encode(decoded)
end

-- Debounce: the waiting job takes the newer call's message and options and waits its delay
-- again from now (out of its set, then placed like a new job).
local function debounce(base, existing, state)
  local job_key = KEYS[1] .. existing
  local job_type, due = ARGV[base + 1], tonumber(ARGV[base + 4])
  if state == "delayed" then
    rcall("ZREM", KEYS[3], existing)
  else
    rcall("ZREM", KEYS[2], existing)
    rcall("ZREM", KEYS[12] .. job_type, existing)
    local group = rcall("HGET", job_key, "group")
    if group then group_remove(groups, group, existing) end
  end
  count(KEYS[6], job_type, state, -1)
  -- The newer call's group wins, as its other options do.
  local group = ARGV[base + 10]
  if group == "" then rcall("HDEL", job_key, "group") else rcall("HSET", job_key, "group", group) end
  rcall("HSET", job_key, "priority", ARGV[base + 2],
    "msg", message_for(ARGV[base + 3], ARGV[base], existing), "due", math.max(due, now),
    "max_attempts", ARGV[base + 5], "keep_completed", ARGV[base + 6],
    "keep_failed", ARGV[base + 7])
  return place_job(new_job_keys, job_key, existing, job_type, due, now, "debounce")
end

-- The job a dedupe key leads to, if this enqueue is deduplicated into it: (id, state), else nil.
local function deduplicated(base, dedupe_key, mode, ttl)
  local existing = rcall("GET", dedupe_key)
  if not existing then return nil end
  local fields = rcall("HMGET", KEYS[1] .. existing, "state", "type")
  local state = fields[1]
  if not state then return nil end
  if mode == "throttle" then return existing, state end
  if mode == "until_done" then
    if LIVE[state] then return existing, state end
    return nil
  end
  -- debounce: only a job still waiting (of the same type) can be replaced.
  if (state == "pending" or state == "delayed") and fields[2] == ARGV[base + 1] then
    rcall("PEXPIRE", dedupe_key, ttl)
    return existing, debounce(base, existing, state)
  end
  return nil
end

local function enqueue_one(base)
  local job_id, idem = ARGV[base], ARGV[base + 8]
  local job_key = KEYS[1] .. job_id

  if idem ~= "" then
    local existing = rcall("GET", KEYS[8] .. idem)
    if existing and rcall("EXISTS", KEYS[1] .. existing) == 1 then
      return existing, 0, rcall("HGET", KEYS[1] .. existing, "state")
    end
  end
  if rcall("EXISTS", job_key) == 1 then
    return job_id, 0, rcall("HGET", job_key, "state")
  end

  -- The only cost of dedupe to a job without it: this comparison.
  local dedupe = ARGV[base + 9]
  local mode, ttl, dedupe_key
  if dedupe ~= "" then
    mode, ttl, dedupe = string.match(dedupe, "^([%a_]+):(%d+):(.+)$")
    ttl, dedupe_key = tonumber(ttl), KEYS[13] .. dedupe
    local existing, state = deduplicated(base, dedupe_key, mode, ttl)
    if existing then return existing, 2, state end
  end

  local extra = NO_FIELDS
  if idem ~= "" then
    rcall("SET", KEYS[8] .. idem, job_id)
    extra = {"idem", idem}
  end
  local group = ARGV[base + 10]
  if group ~= "" then
    if extra == NO_FIELDS then extra = {} end
    extra[#extra + 1] = "group"
    extra[#extra + 1] = group
  end
  if dedupe ~= "" then
    if extra == NO_FIELDS then extra = {} end
    if ttl > 0 then
      rcall("SET", dedupe_key, job_id, "PX", ttl)
    else
      rcall("SET", dedupe_key, job_id)
    end
    extra[#extra + 1] = "dedupe"
    extra[#extra + 1] = dedupe
    if mode == "until_done" then
      extra[#extra + 1] = "dedupe_until_done"
      extra[#extra + 1] = dedupe
    end
  end

  return job_id, 1, create_job(new_job_keys, job_id, ARGV[base + 1], ARGV[base + 2],
    ARGV[base + 3], tonumber(ARGV[base + 4]), ARGV[base + 5], ARGV[base + 6], ARGV[base + 7],
    extra, now, "")
end

local refusal = memory_refusal(memory_share)
if refusal then return refusal end
local reply = {"ok"}
for base = 3, #ARGV, FIELDS_PER_JOB do
  local job_id, created, state = enqueue_one(base)
  reply[#reply + 1] = job_id
  reply[#reply + 1] = created
  reply[#reply + 1] = state
end
return reply
