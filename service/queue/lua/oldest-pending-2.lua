--[[ When the longest-waiting pending job became pending. Within a priority pending jobs are FIFO,
so the oldest is the head of one of the levels: a few O(log n) reads whatever the queue size.
KEYS[1] pending   KEYS[2] job_prefix
ARGV[1..] "min max" pending-score range of each priority level
Returns the earliest pending_since ms, or -1 when nothing is pending.
]]
local oldest = -1
for i = 1, #ARGV do
  local lo, hi = string.match(ARGV[i], "^(%d+) (%d+)$")
  local head = rcall("ZRANGEBYSCORE", KEYS[1], lo, hi, "LIMIT", 0, 1)
  if head[1] then
    local since = tonumber(rcall("HGET", KEYS[2] .. head[1], "pending_since"))
    if since and (oldest < 0 or since < oldest) then oldest = since end
  end
end
return oldest
