--[[ Move up to N of the best due jobs to active under this worker's lease, in one step.
Due delayed jobs are promoted first, so delays need no scheduler process. With flow control
(docs/queue.md "Flow control") a paused queue starts nothing, and each lane (a paused or
limited job type, with its own pending set) competes with the main pending set by the score of
its head only while it is ready: not paused, under its concurrency and under its rate.
Fair-share groups (docs/queue.md "Groups") compete through `groups_ready`, whose first member
is the group whose turn comes first; serving it moves it to the back of its priority level.
KEYS[1] pending    KEYS[2] delayed      KEYS[3] active        KEYS[4] marker
KEYS[5] sequence   KEYS[6] type_counts  KEYS[7] type_limits   KEYS[8] job_prefix
KEYS[9] events_prefix                   KEYS[10] events
KEYS[11] flow      KEYS[12] lanes       KEYS[13] lane_prefix  KEYS[14] lane_starts_prefix
KEYS[15] group_prefix   KEYS[16] groups  KEYS[17] groups_ready  KEYS[18] groups_held
KEYS[19] group_state    KEYS[20] groups_pending                KEYS[21] group_starts_prefix
ARGV[1] now_ms, or -1 for the server's clock (the call was queued behind a blocking pop, so
        the time it was sent at is stale by however long the pop waited)
ARGV[2] lease_ms   ARGV[3] worker_id   ARGV[4] max_jobs   ARGV[5] promote_limit
Returns {ms when more may become startable (next delayed due, or a rate-held lane's next
slot, or a rate-held group's) or -1, id1, msg1, attempt1, pending_since1, id2, ...}.
]]
local now, lease, worker, max_jobs = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local pending, type_counts, type_limits, job_prefix = KEYS[1], KEYS[6], KEYS[7], KEYS[8]
local flow, lanes_key, lane_prefix, starts_prefix = KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local g = group_keys(15, KEYS[5])
local group_starts = KEYS[21]
local has_lanes = rcall("SCARD", lanes_key) > 0
-- Rate logs compare start times across workers, so they need one clock: the server's.
local function server_now()
  local t = rcall("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if now < 0 or has_lanes then now = server_now() end
local pend = {pending = pending, lanes = lanes_key, lane_prefix = lane_prefix, groups = g}

promote_due(KEYS[2], pend, KEYS[5], type_counts, job_prefix, now, tonumber(ARGV[5]))
-- After promotion, which may have made a group ready. One O(1) call is all that groups cost
-- a queue that has none ready or rate-held.
local has_groups = rcall("EXISTS", g.ready, g.held) > 0
if has_groups and not has_lanes and tonumber(ARGV[1]) >= 0 then now = server_now() end

local chosen = {}
local served = {}
local rate_wake = nil

-- A lane's settings; a concurrency set through the API ("none" = no limit) overrides the
-- default the job type declares in code (type_limits).
local function load_lane(name)
  local lane = {name = name, set = lane_prefix .. name, starts = starts_prefix .. name}
  local f = rcall("HMGET", flow, "paused|" .. name, "rate|" .. name, "concurrency|" .. name)
  lane.paused = f[1] ~= false
  if f[2] then
    local limit, per = string.match(f[2], "^(%d+),(%d+)$")
    lane.rate, lane.per = tonumber(limit), tonumber(per)
  end
  local concurrency = f[3] or rcall("HGET", type_limits, name)
  if concurrency and concurrency ~= "none" then
    lane.concurrency = tonumber(concurrency)
    lane.busy = tonumber(rcall("HGET", type_counts, name .. "|processing") or "0")
  end
  return lane
end

-- True when the lane may start a job now. A lane held by its rate records when its oldest
-- start leaves the window, so this worker wakes then instead of polling.
local function ready(lane)
  if lane.paused then return false end
  if lane.concurrency and lane.busy >= lane.concurrency then return false end
  if lane.rate then
    -- Starts at or after now - per are inside the window that a start now would close.
    rcall("ZREMRANGEBYSCORE", lane.starts, "-inf", "(" .. (now - lane.per))
    if rcall("ZCARD", lane.starts) >= lane.rate then
      local oldest = rcall("ZRANGE", lane.starts, 0, 0, "WITHSCORES")
      local at = tonumber(oldest[2]) + lane.per + 1
      if not rate_wake or at < rate_wake then rate_wake = at end
      return false
    end
  end
  return true
end

-- Rate-held groups whose window has moved on may compete again.
local function wake_groups()
  for _, group in ipairs(rcall("ZRANGEBYSCORE", g.held, "-inf", now)) do
    rcall("ZREM", g.held, group)
    group_refresh(g, group)
  end
end

-- Whether `group` may start a job now; a group that may not leaves `ready` (a rate-held one
-- for `held`, until its oldest start leaves the window; a paused one or one at its
-- concurrency until resume or a finish of one of its jobs puts it back).
local function group_ready(group, f)
  if f[1] or (f[3] and tonumber(f[4] or "0") >= tonumber(f[3])) then
    rcall("ZREM", g.ready, group)
    return false
  end
  if f[2] then
    local limit, per = string.match(f[2], "^(%d+),(%d+)$")
    limit, per = tonumber(limit), tonumber(per)
    local starts = group_starts .. group
    rcall("ZREMRANGEBYSCORE", starts, "-inf", "(" .. (now - per))
    if rcall("ZCARD", starts) >= limit then
      local oldest = rcall("ZRANGE", starts, 0, 0, "WITHSCORES")
      local at = tonumber(oldest[2]) + per + 1
      rcall("ZREM", g.ready, group)
      rcall("ZADD", g.held, at, group)
      if not rate_wake or at < rate_wake then rate_wake = at end
      return false
    end
    f.per = per
  end
  return true
end

-- Serve the group whose turn is first: take its head job and give the group its next turn
-- (the back of its head's priority level). Returns the job id, or nil when the group could
-- not start one (it left `ready`, or its head belonged to a type lane and moved there).
local function serve_group(group)
  local f = rcall("HMGET", g.state, "paused|" .. group, "rate|" .. group,
    "concurrency|" .. group, "running|" .. group)
  if not group_ready(group, f) then return nil end
  local set = g.prefix .. group
  local popped = rcall("ZPOPMIN", set)
  local job_id, score = popped[1], popped[2]
  local head = rcall("ZRANGE", set, 0, 0, "WITHSCORES")
  if head[1] then
    rcall("ZADD", g.ready, group_turn(g, head[2]), group)
  else
    rcall("ZREM", g.ready, group)
  end
  if not job_id then return nil end
  rcall("ZREM", g.all, job_id)
  rcall("ZINCRBY", g.index, -1, group)
  -- Only while some type is paused or limited can its lane claim a grouped job.
  local job_type = has_lanes and rcall("HGET", job_prefix .. job_id, "type")
  if job_type and rcall("SISMEMBER", lanes_key, job_type) == 1 then
    -- Its type was paused or limited after it was filed here: the type's lane holds it now.
    rcall("ZADD", lane_prefix .. job_type, score, job_id)
    group_forget(g, group)
    return nil, job_type
  end
  rcall("HINCRBY", g.state, "running|" .. group, 1)
  if f.per then
    local starts = group_starts .. group
    rcall("ZADD", starts, now, job_id .. "@" .. now)
    rcall("PEXPIRE", starts, f.per + 1000)
  end
  return job_id
end

if rcall("HEXISTS", flow, "queue_paused") == 1 then
  -- Paused queue: nothing starts; resume marks work.
elseif not has_lanes and not has_groups then
  local popped = rcall("ZPOPMIN", pending, max_jobs)
  for i = 1, #popped, 2 do chosen[#chosen + 1] = popped[i] end
else
  local lanes = {}
  if has_lanes then
    for _, name in ipairs(rcall("SMEMBERS", lanes_key)) do lanes[#lanes + 1] = load_lane(name) end
  end
  if has_groups then wake_groups() end
  while #chosen < max_jobs do
    local best, best_score, best_lane = nil, nil, nil
    local head = rcall("ZRANGE", pending, 0, 0, "WITHSCORES")
    if head[1] then best, best_score = head[1], tonumber(head[2]) end
    for _, lane in ipairs(lanes) do
      if not lane.held then
        local lane_head = rcall("ZRANGE", lane.set, 0, 0, "WITHSCORES")
        if not lane_head[1] or not ready(lane) then
          lane.held = true
        elseif not best_score or tonumber(lane_head[2]) < best_score then
          best, best_score, best_lane = lane_head[1], tonumber(lane_head[2]), lane
        end
      end
    end
    local turn = has_groups and rcall("ZRANGE", g.ready, 0, 0, "WITHSCORES") or {}
    if turn[1] and (not best_score or tonumber(turn[2]) < best_score) then
      local job_id, moved_to = serve_group(turn[1])
      if job_id then
        chosen[#chosen + 1] = job_id
        served[job_id] = true
      elseif moved_to then
        for _, lane in ipairs(lanes) do
          if lane.name == moved_to then lane.held = false end
        end
      end
    elseif not best then
      break
    elseif best_lane then
      rcall("ZREM", best_lane.set, best)
      if best_lane.concurrency then best_lane.busy = best_lane.busy + 1 end
      if best_lane.rate then
        rcall("ZADD", best_lane.starts, now, best .. "@" .. now)
        rcall("PEXPIRE", best_lane.starts, best_lane.per + 1000)
      end
      chosen[#chosen + 1] = best
    else
      rcall("ZREM", pending, best)
      local job_type = rcall("HGET", job_prefix .. best, "type")
      if job_type and rcall("SISMEMBER", lanes_key, job_type) == 1 then
        -- Its type became a lane while its jobs were being moved (lane-sync): file it there.
        rcall("ZADD", lane_prefix .. job_type, best_score, best)
        for _, lane in ipairs(lanes) do
          if lane.name == job_type then lane.held = false end
        end
      else
        chosen[#chosen + 1] = best
      end
    end
  end
end

local out = {-1}
for _, job_id in ipairs(chosen) do
  local job_key = job_prefix .. job_id
  local fields = rcall("HMGET", job_key, "type", "msg", "pending_since", "group")
  -- A grouped job started from a type lane counts in its group's running jobs all the same.
  if fields[4] and not served[job_id] then
    rcall("HINCRBY", g.state, "running|" .. fields[4], 1)
    rcall("ZADD", g.index, "NX", 0, fields[4])
  end
  local attempt = rcall("HINCRBY", job_key, "attempts", 1)
  rcall("HSET", job_key, "state", "processing", "worker", worker)
  -- No start time: the job may wait in the worker (prefetched) before its code runs; the
  -- worker sends the real one with its next renewal or its finish. A previous attempt's goes.
  rcall("HDEL", job_key, "attempt_started")
  rcall("ZADD", KEYS[3], now + lease, job_id)
  count(type_counts, fields[1], "pending", -1)
  count(type_counts, fields[1], "processing", 1)
  timeline(job_key, "processing", now, worker)
  publish(KEYS[9], KEYS[10], job_id, "processing", now)
  out[#out + 1] = job_id
  out[#out + 1] = fields[2]
  out[#out + 1] = attempt
  out[#out + 1] = fields[3] or now
end

-- A full batch may have left work behind: pass the wake-up on to the next idle worker.
if #chosen == max_jobs and (rcall("ZCARD", pending) > 0 or has_lanes or has_groups) then
  rcall("ZADD", KEYS[4], 0, "0")
end
local next_due = rcall("ZRANGE", KEYS[2], 0, 0, "WITHSCORES")
if next_due[2] then out[1] = tonumber(next_due[2]) end
if has_groups then
  local held = rcall("ZRANGE", g.held, 0, 0, "WITHSCORES")
  if held[2] and (not rate_wake or tonumber(held[2]) < rate_wake) then rate_wake = tonumber(held[2]) end
end
if rate_wake and (out[1] < 0 or rate_wake < out[1]) then out[1] = rate_wake end
return out
