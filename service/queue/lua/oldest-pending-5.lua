--[[ When the longest-waiting pending job became pending. Within a priority pending jobs are FIFO,
so the oldest is the head of one of the levels of `pending` or of a lane (docs/queue.md "Flow
control"), or of `groups_pending`, which holds every grouped pending job (docs/queue.md
"Groups"): a few O(log n) reads per set whatever the queue size.
KEYS[1] pending   KEYS[2] job_prefix   KEYS[3] lanes   KEYS[4] lane_prefix   KEYS[5] groups_pending
ARGV[1..] "min max" pending-score range of each priority level
Returns the earliest pending_since ms, or -1 when nothing is pending.
]]
local oldest = -1
local sets = {KEYS[1], KEYS[5]}
for _, lane in ipairs(rcall("SMEMBERS", KEYS[3])) do sets[#sets + 1] = KEYS[4] .. lane end
for _, set in ipairs(sets) do
  for i = 1, #ARGV do
    local lo, hi = string.match(ARGV[i], "^(%d+) (%d+)$")
    local head = rcall("ZRANGEBYSCORE", set, lo, hi, "LIMIT", 0, 1)
    if head[1] then
      local since = tonumber(rcall("HGET", KEYS[2] .. head[1], "pending_since"))
      if since and (oldest < 0 or since < oldest) then oldest = since end
    end
  end
end
return oldest
