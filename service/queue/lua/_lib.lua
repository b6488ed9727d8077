-- Shared helpers, prepended to every script by scripts.py (Redis has no script includes).
-- They touch only keys handed to them, which the calling script took from KEYS.
local rcall = redis.call

-- Pending score: higher priority first, then FIFO by sequence (see states.py).
local PRIORITY_SPAN = 100
local SEQUENCE_SPAN = 17592186044416 -- 2^44

local function pending_score(priority, seq)
  -- %.0f keeps the integer exact; tostring() would round it to 14 digits.
  return string.format("%.0f", (PRIORITY_SPAN - tonumber(priority)) * SEQUENCE_SPAN + seq)
end

local function count(type_counts, job_type, state, delta)
  rcall("HINCRBY", type_counts, job_type .. "|" .. state, delta)
end

-- The timeline is a compact "state@ms[:note];" string on the job hash: cheaper than a list key
-- per job, and bounded because transitions are bounded by attempts and stalls.
local function timeline(job_key, state, now, note)
  local entry = state .. "@" .. now
  if note and note ~= "" then entry = entry .. ":" .. note end
  local tl = rcall("HGET", job_key, "timeline")
  if tl then
    if #tl > 4000 then tl = string.sub(tl, -2000) end
    entry = tl .. ";" .. entry
  end
  rcall("HSET", job_key, "timeline", entry)
end

local function publish(events_prefix, events_channel, job_id, state, now)
  local msg = cjson.encode({id = job_id, state = state, ts = tonumber(now)})
  rcall("PUBLISH", events_prefix .. job_id, msg)
  rcall("PUBLISH", events_channel, msg)
end

-- Pending work is split into lanes (docs/queue.md "Flow control"): a job type that is paused or
-- limited keeps its pending jobs in its own set `lane_prefix .. type`; every other type shares
-- `pending`. `pend` names those keys: {pending = ..., lanes = ..., lane_prefix = ...}, plus
-- `groups` (the keys of fair-share groups, below) in every script that may make a grouped job
-- pending.
local function pending_set(pend, job_type)
  if job_type and rcall("SISMEMBER", pend.lanes, job_type) == 1 then
    return pend.lane_prefix .. job_type
  end
  return pend.pending
end

-- Fair-share groups (docs/queue.md "Groups"). `g` names their keys: {prefix = group_prefix
-- (a group's pending set, scored like `pending`), index = groups (group -> pending count),
-- ready = groups_ready (groups that may start a job now, scored by where their turn is),
-- held = groups_held (rate-held groups -> ms they may start again), state = group_state (hash
-- `paused|g`, `rate|g`, `concurrency|g`, `running|g`), all = groups_pending (every grouped
-- pending job, scored like `pending`, so listings and counts read one set, not one per group),
-- sequence}.

-- The group keys a script was given from KEYS[i] on, in their declared order (scripts.py
-- GROUP_KEYS): group_prefix, groups, groups_ready, groups_held, group_state, groups_pending.
local function group_keys(i, sequence)
  return {prefix = KEYS[i], index = KEYS[i + 1], ready = KEYS[i + 2], held = KEYS[i + 3],
    state = KEYS[i + 4], all = KEYS[i + 5], sequence = sequence}
end

-- A group's turn: the score its head would get if it were enqueued now at its priority, so
-- a served group goes to the back of its priority level (round robin) and queues FIFO
-- behind ungrouped jobs already pending there.
local function group_turn(g, head_score)
  local band = math.floor(tonumber(head_score) / SEQUENCE_SPAN)
  return string.format("%.0f", band * SEQUENCE_SPAN + rcall("INCR", g.sequence))
end

-- Put the group in `ready` if it has pending work and may start it (not paused, under its
-- concurrency, not waiting for its rate); a group already there keeps its turn unless its
-- head's priority changed. O(log groups).
local function group_refresh(g, group)
  local head = rcall("ZRANGE", g.prefix .. group, 0, 0, "WITHSCORES")
  if not head[1] then
    rcall("ZREM", g.ready, group)
    return
  end
  local turn = rcall("ZSCORE", g.ready, group)
  if turn then
    if math.floor(tonumber(turn) / SEQUENCE_SPAN) ~= math.floor(tonumber(head[2]) / SEQUENCE_SPAN) then
      rcall("ZADD", g.ready, group_turn(g, head[2]), group)
    end
    return
  end
  local f = rcall("HMGET", g.state, "paused|" .. group, "concurrency|" .. group, "running|" .. group)
  if f[1] then return end
  if f[2] and tonumber(f[3] or "0") >= tonumber(f[2]) then return end
  if rcall("ZSCORE", g.held, group) then return end
  rcall("ZADD", g.ready, group_turn(g, head[2]), group)
end

-- A group leaves the index once nothing of it is pending or running and it has no settings.
local function group_forget(g, group)
  if tonumber(rcall("ZSCORE", g.index, group) or "0") > 0 then return end
  local f = rcall("HMGET", g.state, "paused|" .. group, "rate|" .. group,
    "concurrency|" .. group, "running|" .. group)
  if f[1] or f[2] or f[3] or f[4] then return end
  rcall("ZREM", g.index, group)
  rcall("ZREM", g.held, group)
end

local function group_add(g, group, score, job_id)
  rcall("ZADD", g.prefix .. group, score, job_id)
  rcall("ZADD", g.all, score, job_id)
  rcall("ZINCRBY", g.index, 1, group)
  group_refresh(g, group)
end

-- Take a pending job out of its group (cancel, debounce, serve). Returns true if it was there.
local function group_remove(g, group, job_id)
  if rcall("ZREM", g.prefix .. group, job_id) == 0 then return false end
  rcall("ZREM", g.all, job_id)
  if tonumber(rcall("ZINCRBY", g.index, -1, group)) <= 0 then rcall("ZADD", g.index, 0, group) end
  group_refresh(g, group)
  group_forget(g, group)
  return true
end

-- A job of the group stopped processing (finished, failed, cancelled, lease lost, handed
-- back): one slot of its concurrency is free again. Returns true when the group has pending
-- work that may now start.
local function group_stopped(g, group)
  local field = "running|" .. group
  if tonumber(rcall("HINCRBY", g.state, field, -1)) <= 0 then rcall("HDEL", g.state, field) end
  group_refresh(g, group)
  group_forget(g, group)
  return rcall("ZSCORE", g.ready, group) ~= false
end

local function make_pending(job_key, job_id, pend, sequence, type_counts, job_type, now, note)
  local seq = rcall("INCR", sequence)
  local f = rcall("HMGET", job_key, "priority", "group")
  local score = pending_score(f[1], seq)
  local set = pending_set(pend, job_type)
  -- A job of a paused or limited type waits in its type's lane even when it has a group:
  -- the type's pause and limits hold it; its group counts it only once it runs.
  if f[2] and pend.groups and set == pend.pending then
    group_add(pend.groups, f[2], score, job_id)
  else
    rcall("ZADD", set, score, job_id)
  end
  rcall("HSET", job_key, "state", "pending", "pending_since", now)
  count(type_counts, job_type, "pending", 1)
  timeline(job_key, "pending", now, note)
end

-- Put a job that is in no set yet where it waits: delayed until `due`, else pending, waking a
-- worker either way, and publish its state. `k` names the keys: {delayed, marker, sequence,
-- type_counts, events_prefix, events, pend}. Returns the state.
local function place_job(k, job_key, job_id, job_type, due, now, note)
  local state
  if due > now then
    state = "delayed"
    rcall("HSET", job_key, "state", state)
    rcall("ZADD", k.delayed, due, job_id)
    count(k.type_counts, job_type, state, 1)
    timeline(job_key, state, now, note)
    -- Wake one idle worker early enough to promote it; LT keeps an earlier wake-up.
    rcall("ZADD", k.marker, "LT", due, "0")
  else
    state = "pending"
    make_pending(job_key, job_id, k.pend, k.sequence, k.type_counts, job_type, now, note)
    rcall("ZADD", k.marker, 0, "0")
  end
  publish(k.events_prefix, k.events, job_id, state, now)
  return state
end

-- The new-job steps of every script that creates one (enqueue, schedule-claim): the job hash,
-- its type index entry, then `place_job`. `extra` = more hash fields, name then value ({} for
-- none); `k` as for place_job plus job_prefix and type_index_prefix. Returns the state.
-- Positional, not a table of the job: a table per job cost the enqueue 1.5 µs (10%) a job.
local function create_job(k, job_id, job_type, priority, msg, due, attempts, keep_completed,
    keep_failed, extra, now, note)
  local job_key = k.job_prefix .. job_id
  rcall("HSET", job_key, "type", job_type, "priority", priority, "msg", msg,
    "created", now, "due", math.max(due, now), "attempts", 0,
    "max_attempts", attempts, "keep_completed", keep_completed,
    "keep_failed", keep_failed, unpack(extra))
  rcall("ZADD", k.type_index_prefix .. job_type, now, job_id)
  return place_job(k, job_key, job_id, job_type, due, now, note)
end

-- Move due delayed jobs to pending. Returns how many moved.
local function promote_due(delayed, pend, sequence, type_counts, job_prefix, now, limit)
  local due = rcall("ZRANGEBYSCORE", delayed, "-inf", now, "LIMIT", 0, limit)
  for _, job_id in ipairs(due) do
    local job_key = job_prefix .. job_id
    rcall("ZREM", delayed, job_id)
    local job_type = rcall("HGET", job_key, "type")
    if job_type then
      count(type_counts, job_type, "delayed", -1)
      make_pending(job_key, job_id, pend, sequence, type_counts, job_type, now, "")
    end
  end
  return #due
end

-- Delete a job and every trace of it: hash, logs, type index, idempotency key, expiry entry.
-- `finished_set` is the state set it is in (already known to the caller).
local function remove_job(p, job_id, finished_set)
  local job_key = p.job_prefix .. job_id
  local fields = rcall("HMGET", job_key, "type", "state", "idem")
  local job_type, state, idem = fields[1], fields[2], fields[3]
  rcall("ZREM", finished_set, job_id)
  rcall("ZREM", p.expiry, job_id)
  if job_type then
    rcall("ZREM", p.type_index_prefix .. job_type, job_id)
    if state then count(p.type_counts, job_type, state, -1) end
  end
  if idem then rcall("DEL", p.idempotency_prefix .. idem) end
  rcall("DEL", job_key, p.logs_prefix .. job_id)
end

-- Keep at most `keep_count` jobs in a finished set (oldest go first), deleting at most `limit`
-- per call so a script never runs long; later finishes catch up.
local function trim_count(p, finished_set, keep_count, limit)
  if keep_count < 0 then return end
  local excess = rcall("ZCARD", finished_set) - keep_count
  if excess <= 0 then return end
  if excess > limit then excess = limit end
  local oldest = rcall("ZRANGE", finished_set, 0, excess - 1)
  for _, old_id in ipairs(oldest) do remove_job(p, old_id, finished_set) end
end

-- Parse a retention policy "count,age_seconds" (-1 = unlimited).
local function parse_policy(policy)
  local c, a = string.match(policy, "^(-?%d+),(-?%d+)$")
  return tonumber(c), tonumber(a)
end

-- An `until_done` dedupe key lets the next job in once its job ends: deleted here, only while
-- it still leads to this job. `p.dedupe_prefix` is given by the scripts that end jobs (finish,
-- cancel); one HGET per ending job.
local function release_until_done(p, job_key, job_id)
  if not p.dedupe_prefix then return end
  local key = rcall("HGET", job_key, "dedupe_until_done")
  if key and rcall("GET", p.dedupe_prefix .. key) == job_id then
    rcall("DEL", p.dedupe_prefix .. key)
  end
end

-- Finish a job into a terminal set under its retention policy. Returns false when the policy
-- removed it at once (count 0).
local function retire(p, job_key, job_id, job_type, state, finished_set, policy, now, limit)
  local keep_count, keep_age = parse_policy(policy)
  if keep_count == 0 then
    rcall("HSET", job_key, "state", state)
    release_until_done(p, job_key, job_id)
    count(p.type_counts, job_type, state, 1)
    remove_job(p, job_id, finished_set)
    return false
  end
  rcall("HSET", job_key, "state", state, "finished", now)
  release_until_done(p, job_key, job_id)
  rcall("ZADD", finished_set, now, job_id)
  count(p.type_counts, job_type, state, 1)
  timeline(job_key, state, now, "")
  if keep_age >= 0 then rcall("ZADD", p.expiry, now + keep_age * 1000, job_id) end
  trim_count(p, finished_set, keep_count, limit)
  return true
end
