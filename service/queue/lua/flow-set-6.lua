--[[ Change one flow setting (pause, rate, concurrency) of the queue or of a lane, and give the
lane its own pending set exactly while it is paused or limited (docs/queue.md "Flow control").
A lane that stops being paused or limited merges its set back into `pending` (scores kept, so
priority and FIFO order are unchanged). Jobs of a new lane still in `pending` move to the lane
when dequeue reaches them, so setting a limit is O(1) whatever the backlog.
KEYS[1] flow   KEYS[2] lanes   KEYS[3] lane_prefix   KEYS[4] pending   KEYS[5] type_limits
KEYS[6] marker
ARGV[1] field ("queue_paused", "paused|<lane>", "rate|<lane>", "concurrency|<lane>", or "" to
        re-check the lane after its code default in type_limits changed)
ARGV[2] value, "" to delete the field   ARGV[3] lane ("" for the whole queue)
Returns 1 if the lane has its own set now, else 0.
]]
local flow, lanes, lane = KEYS[1], KEYS[2], ARGV[3]
if ARGV[1] ~= "" then
  if ARGV[2] == "" then rcall("HDEL", flow, ARGV[1]) else rcall("HSET", flow, ARGV[1], ARGV[2]) end
end
-- Any change may let work start (resume, a raised or removed limit): wake an idle worker.
rcall("ZADD", KEYS[6], 0, "0")
if lane == "" then return 0 end

local f = rcall("HMGET", flow, "paused|" .. lane, "rate|" .. lane, "concurrency|" .. lane)
local concurrency = f[3] or rcall("HGET", KEYS[5], lane)
local limited = f[1] or f[2] or (concurrency and concurrency ~= "none")
if limited then
  rcall("SADD", lanes, lane)
  return 1
end
if rcall("SREM", lanes, lane) == 1 then
  local lane_set = KEYS[3] .. lane
  rcall("ZUNIONSTORE", KEYS[4], 2, KEYS[4], lane_set)
  rcall("DEL", lane_set)
end
return 0
