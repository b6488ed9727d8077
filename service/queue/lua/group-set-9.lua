--[[ Change one setting (pause, rate, concurrency) of a fair-share group (docs/queue.md
"Groups") and keep the group's place in `groups_ready` in step: a paused group leaves it, a
resumed or raised one rejoins at the back of its priority level when it has pending work and
may start it. O(log groups) whatever the group's backlog.
KEYS[1] sequence   KEYS[2] marker   KEYS[3] group_prefix   KEYS[4] groups   KEYS[5] groups_ready
KEYS[6] groups_held   KEYS[7] group_state   KEYS[8] groups_pending   KEYS[9] groups_paused
ARGV[1] group   ARGV[2] setting ("paused", "rate" = "limit,window ms", "concurrency" = N)
ARGV[3] value, "" to delete the setting
Returns 1 when the group may start a job now, else 0.
]]
local group, setting, value = ARGV[1], ARGV[2], ARGV[3]
local g = group_keys(3, KEYS[1])
local field = setting .. "|" .. group
if value == "" then
  rcall("HDEL", g.state, field)
else
  rcall("HSET", g.state, field, value)
  -- Tracked from its first setting, so GET /groups lists it before it has work.
  rcall("ZADD", g.index, "NX", 0, group)
end
-- The paused groups, so the scaling backlog can leave their jobs out without a scan.
if setting == "paused" then
  if value ~= "" then
    rcall("SADD", KEYS[9], group)
    rcall("ZREM", g.ready, group)
  else
    rcall("SREM", KEYS[9], group)
  end
end
-- A rate removed or changed: whether the group is held is decided again at its next turn.
if setting == "rate" then rcall("ZREM", g.held, group) end
group_refresh(g, group)
group_forget(g, group)
-- Any change may let work start (resume, a raised or removed limit): wake an idle worker.
rcall("ZADD", KEYS[2], 0, "0")
if rcall("ZSCORE", g.ready, group) then return 1 end
return 0
