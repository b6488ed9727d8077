--[[ Add jobs, pending or delayed, all or none; with an idempotency key, return the job it first made.
KEYS[1]  job_prefix          KEYS[2]  pending             KEYS[3]  delayed
KEYS[4]  marker              KEYS[5]  sequence            KEYS[6]  type_counts
KEYS[7]  type_index_prefix   KEYS[8]  idempotency_prefix  KEYS[9]  events_prefix
KEYS[10] events              KEYS[11] lanes               KEYS[12] lane_prefix
ARGV[1] now_ms
ARGV[2] max_memory_share: share of maxmemory above which nothing is enqueued (0 = no check of our own)
then 9 per job, from ARGV[3]:
  job id, type, priority, taskiq message, due ms (<= now: pending at once), max attempts,
  keep-completed policy "count,age", keep-failed policy, idempotency key or ""
Returns {"full", used_memory, maxmemory} when memory is above the share (nothing written), else
{"ok", then per job: job id, 1 if created else 0, state}.

One script for a whole bulk request because Redis does not roll back: in MULTI/EXEC each script
is checked for memory on its own, so a bulk could stop halfway with some jobs committed. A script
that passes its first write runs to the end (Redis checks OOM only before a script's first write),
and the memory check below happens before any write.
]]
local FIELDS_PER_JOB = 9
local pend = {pending = KEYS[2], lanes = KEYS[11], lane_prefix = KEYS[12]}
local now, memory_share = tonumber(ARGV[1]), tonumber(ARGV[2])

-- INFO is the only memory reading a script may make (CONFIG is not allowed in scripts); about
-- 5 µs for INFO memory plus a few µs of parsing, once per call whatever the number of jobs.
local function memory_refusal()
  if memory_share <= 0 then return nil end
  local info = rcall("INFO", "memory")
  local at = string.find(info, "maxmemory:", 1, true)
  local maxmemory = at and tonumber(string.match(info, "^%d+", at + 10)) or 0
  if maxmemory == 0 then return nil end
  local used = tonumber(string.match(info, "used_memory:(%d+)"))
  if used > maxmemory * memory_share then return {"full", used, maxmemory} end
  return nil
end

local function enqueue_one(base)
  local job_id, job_type, priority, message = ARGV[base], ARGV[base + 1], ARGV[base + 2],
    ARGV[base + 3]
  local due, idem = tonumber(ARGV[base + 4]), ARGV[base + 8]
  local job_key = KEYS[1] .. job_id

  if idem ~= "" then
    local idem_key = KEYS[8] .. idem
    local existing = rcall("GET", idem_key)
    if existing and rcall("EXISTS", KEYS[1] .. existing) == 1 then
      return existing, 0, rcall("HGET", KEYS[1] .. existing, "state")
    end
    rcall("SET", idem_key, job_id)
  end
  if rcall("EXISTS", job_key) == 1 then
    return job_id, 0, rcall("HGET", job_key, "state")
  end

  rcall("HSET", job_key, "type", job_type, "priority", priority, "msg", message, "created", now,
    "due", math.max(due, now), "attempts", 0, "max_attempts", ARGV[base + 5],
    "keep_completed", ARGV[base + 6], "keep_failed", ARGV[base + 7])
  if idem ~= "" then rcall("HSET", job_key, "idem", idem) end
  rcall("ZADD", KEYS[7] .. job_type, now, job_id)

  local state
  if due > now then
    state = "delayed"
    rcall("HSET", job_key, "state", state)
    rcall("ZADD", KEYS[3], due, job_id)
    count(KEYS[6], job_type, state, 1)
    timeline(job_key, state, now, "")
    -- Wake one idle worker early enough to promote it; LT keeps an earlier wake-up.
    rcall("ZADD", KEYS[4], "LT", due, "0")
  else
    state = "pending"
    make_pending(job_key, job_id, pend, KEYS[5], KEYS[6], job_type, now, "")
    rcall("ZADD", KEYS[4], 0, "0")
  end
  publish(KEYS[9], KEYS[10], job_id, state, now)
  return job_id, 1, state
end

local refusal = memory_refusal()
if refusal then return refusal end
local reply = {"ok"}
for base = 3, #ARGV, FIELDS_PER_JOB do
  local job_id, created, state = enqueue_one(base)
  reply[#reply + 1] = job_id
  reply[#reply + 1] = created
  reply[#reply + 1] = state
end
return reply
