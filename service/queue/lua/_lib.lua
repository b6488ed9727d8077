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
  -- A flow parent's children list and their results and failures go with it (its children
  -- keep their `parent` field; settle_child finds no parent and does nothing).
  if p.children_prefix then
    rcall("DEL", p.children_prefix .. job_id, p.results_prefix .. job_id,
      p.failures_prefix .. job_id)
  end
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

-- INFO is the only memory reading a script may make (CONFIG is not allowed in scripts); about
-- 5 µs for INFO memory plus a few µs of parsing, once per call whatever the number of jobs.
-- Returns {"full", used, maxmemory} above `share` of maxmemory (0 = no check of our own).
local function memory_refusal(share)
  if share <= 0 then return nil end
  local info = rcall("INFO", "memory")
  local at = string.find(info, "maxmemory:", 1, true)
  local maxmemory = at and tonumber(string.match(info, "^%d+", at + 10)) or 0
  if maxmemory == 0 then return nil end
  local used = tonumber(string.match(info, "used_memory:(%d+)"))
  if used > maxmemory * share then return {"full", used, maxmemory} end
  return nil
end

-- Flows (docs/queue.md "Flows"). A parent waits in state `waiting-children` (set `f.waiting`)
-- with `waiting` = its children not yet ended; each child has `parent`. The script that ends a
-- child (finish, cancel, sweep) settles it here, in the same step: O(1) per child, and a child
-- can end only once (a stale finish of a re-leased child is refused before it gets here), so
-- no parent is released twice. `f` names every key these helpers may touch: the keys of
-- place_job and retire (with `pend.groups`, so a released grouped parent joins its group), plus
-- waiting, active, failed, cancelled, cancel_channel and the children_prefix, results_prefix
-- and failures_prefix families.
local settle_child, cancel_tree

local CANCEL_SET_OF = {pending = "pending", delayed = "delayed", processing = "active",
  ["waiting-children"] = "waiting"}

local function leave_waiting(f, job_id, job_type)
  rcall("ZREM", f.waiting, job_id)
  count(f.type_counts, job_type, "waiting-children", -1)
end

-- The last open child ended: the parent is due (pending), or delayed until its own due time.
local function release_parent(f, parent_key, parent_id, job_type, now)
  leave_waiting(f, parent_id, job_type)
  local due = tonumber(rcall("HGET", parent_key, "due") or now)
  place_job(f, parent_key, parent_id, job_type, due, now, "children-done")
end

local function fail_parent(f, parent_key, parent_id, job_type, err, now, limit)
  leave_waiting(f, parent_id, job_type)
  local fields = rcall("HMGET", parent_key, "keep_failed", "parent")
  rcall("HSET", parent_key, "error", err)
  -- It fails like any job, so it counts in this minute's `failed` (throughput, alarms).
  rcall("HINCRBY", f.stats, "failed", 1)
  rcall("EXPIRE", f.stats, f.stats_ttl)
  retire(f, parent_key, parent_id, job_type, "failed", f.failed, fields[1] or "-1,-1", now, limit)
  publish(f.events_prefix, f.events, parent_id, "failed", now)
  -- A parent failing is a child failing for its own parent (depth <= 10 bounds the recursion).
  if fields[2] then settle_child(f, fields[2], parent_id, "failed", err, now, limit) end
end

-- Cancel one live job (its own sets only): pending, delayed, processing or waiting-children.
-- A grouped job (`group`, else nil) leaves its group's pending set and the ready bookkeeping,
-- or, processing, frees its group's running slot; `f.pend.groups` names the group keys.
local function cancel_one(f, job_key, job_id, state, job_type, keep_failed, group, now, limit)
  rcall("ZREM", f[CANCEL_SET_OF[state]] or f.pend.pending, job_id)
  -- A pending job of a lane is in its lane's set (or still in `pending`, not yet moved there).
  if state == "pending" then rcall("ZREM", f.pend.lane_prefix .. job_type, job_id) end
  if group and state == "pending" then group_remove(f.pend.groups, group, job_id) end
  count(f.type_counts, job_type, state, -1)
  if state == "processing" then
    if group then group_stopped(f.pend.groups, group) end
    rcall("PUBLISH", f.cancel_channel, job_id)
    -- Its slot is free now: a job of a limited type may be waiting for it.
    rcall("ZADD", f.marker, 0, "0")
  end
  -- Cancelled jobs follow the job's failure retention, but are always kept at least briefly
  -- so the caller can read what it cancelled.
  local policy = keep_failed or "-1,-1"
  if string.match(policy, "^0,") then policy = "-1,3600" end
  retire(f, job_key, job_id, job_type, "cancelled", f.cancelled, policy, now, limit)
  publish(f.events_prefix, f.events, job_id, "cancelled", now)
end

-- Cancel a live job and, for a waiting parent, its live children (recursively); with
-- `not_started_only`, jobs already processing are left to run (on_child_failure "cancel").
-- Returns the state it was in, or nil when it was not live (or left running).
cancel_tree = function(f, job_id, now, limit, not_started_only)
  local job_key = f.job_prefix .. job_id
  local fields = rcall("HMGET", job_key, "state", "type", "keep_failed", "parent", "group")
  local state = fields[1]
  if not state or not CANCEL_SET_OF[state] then return nil end
  if not_started_only and state == "processing" then return nil end
  cancel_one(f, job_key, job_id, state, fields[2], fields[3], fields[5], now, limit)
  if state == "waiting-children" then
    for _, child in ipairs(rcall("LRANGE", f.children_prefix .. job_id, 0, -1)) do
      cancel_tree(f, child, now, limit, not_started_only)
    end
  end
  if fields[4] then settle_child(f, fields[4], job_id, "cancelled", "cancelled", now, limit) end
  return state
end

-- Child `child_id` of `parent_id` ended for good: "completed" (payload = its result JSON),
-- "failed" (payload = its error) or "cancelled". Counted against the parent, recorded, and the
-- parent's on_child_failure applied while it still waits.
settle_child = function(f, parent_id, child_id, outcome, payload, now, limit)
  local parent_key = f.job_prefix .. parent_id
  local fields = rcall("HMGET", parent_key, "state", "type", "on_child_failure")
  local state, job_type, mode = fields[1], fields[2], fields[3] or "fail"
  if not state then return end -- the parent was deleted: nothing waits for this child
  local left = rcall("HINCRBY", parent_key, "waiting", -1)
  local waiting = state == "waiting-children"
  if outcome == "completed" then
    rcall("HSET", f.results_prefix .. parent_id, child_id, payload)
  else
    rcall("HSET", f.failures_prefix .. parent_id, child_id, payload)
    if mode ~= "ignore" then
      -- Counted whatever the parent's state, so a retry re-arms it only once none is left.
      rcall("HINCRBY", parent_key, "failed_children", 1)
      if waiting then
        local err = "child " .. child_id .. " " .. outcome .. ": " .. payload
        if mode == "cancel" then
          rcall("HSET", parent_key, "error", err)
          cancel_tree(f, parent_id, now, limit, true)
        else
          fail_parent(f, parent_key, parent_id, job_type, err, now, limit)
        end
        return
      end
    end
  end
  if left <= 0 and waiting then release_parent(f, parent_key, parent_id, job_type, now) end
end

-- A retried child is open again: its parent counts it, forgets its failure, and a parent that
-- failed for its children ("fail" mode) waits again once no failed child is left; that parent
-- is in turn a retried child of its own parent.
local function rearm_parent(f, parent_id, child_id, now)
  local parent_key = f.job_prefix .. parent_id
  local fields = rcall("HMGET", parent_key, "state", "type", "on_child_failure", "parent")
  local state, job_type, mode = fields[1], fields[2], fields[3] or "fail"
  if not state then return end
  rcall("HINCRBY", parent_key, "waiting", 1)
  if rcall("HDEL", f.failures_prefix .. parent_id, child_id) == 0 or mode == "ignore" then
    return
  end
  local failed_left = rcall("HINCRBY", parent_key, "failed_children", -1)
  if state ~= "failed" or mode ~= "fail" or failed_left > 0 then return end
  rcall("ZREM", f.failed, parent_id)
  rcall("ZREM", f.expiry, parent_id)
  count(f.type_counts, job_type, "failed", -1)
  rcall("HDEL", parent_key, "error", "traceback", "finished")
  rcall("HSET", parent_key, "state", "waiting-children")
  rcall("ZADD", f.waiting, now, parent_id)
  count(f.type_counts, job_type, "waiting-children", 1)
  timeline(parent_key, "waiting-children", now, "child-retried")
  publish(f.events_prefix, f.events, parent_id, "waiting-children", now)
  if fields[4] then rearm_parent(f, fields[4], parent_id, now) end
end
