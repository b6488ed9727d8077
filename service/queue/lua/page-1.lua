--[[ One page of a sorted set (a listing or a type index) after a cursor, in O(log n) whatever
the number of entries tied with the cursor's score (a bulk enqueue gives 100,000 jobs one
creation ms). The order is (score, member), or both reversed; ties sort by member, as Redis
keeps them. The first entry after the cursor is found by rank: the tie's rank range from two
ZCOUNTs, then a binary search on the members inside it (ZRANGE by rank is O(log n)), so the
cursor need not be in this set (a merged search passes one cursor to every type's index).
Read only; no keys change.
KEYS[1] index (the sorted set)
ARGV[1] after_score ("" for the first page)   ARGV[2] after_member
ARGV[3] reverse ("1": highest score first)   ARGV[4] min_score   ARGV[5] max_score
ARGV[6] count
Returns {member1, score1, member2, ...}: up to count entries with min <= score <= max.
]]
local key, rev = KEYS[1], ARGV[3] == "1"
local min, max, count = ARGV[4], ARGV[5], tonumber(ARGV[6])
local range = rev and "ZREVRANGE" or "ZRANGE"

-- Byte order, as Redis orders tied members (Lua's own `<` follows the server's locale).
local function bytes_before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Entries before the range's near edge, in this order.
local start
if rev then
  start = max == "+inf" and 0 or rcall("ZCOUNT", key, "(" .. max, "+inf")
else
  start = min == "-inf" and 0 or rcall("ZCOUNT", key, "-inf", "(" .. min)
end

if ARGV[1] ~= "" then
  local score, member = ARGV[1], ARGV[2]
  local before = rev and rcall("ZCOUNT", key, "(" .. score, "+inf")
    or rcall("ZCOUNT", key, "-inf", "(" .. score)
  local lo
  local own = rcall("ZSCORE", key, member)
  if own and tonumber(own) == tonumber(score) then  -- the cursor's own set: its rank, directly
    lo = rcall(rev and "ZREVRANK" or "ZRANK", key, member) + 1
  else
    -- First rank in the tie whose member comes after the cursor's (a monotone predicate).
    local hi
    lo, hi = before, before + rcall("ZCOUNT", key, score, score)
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local at = rcall(range, key, mid, mid)[1]
      local after = (rev and bytes_before(at, member)) or (not rev and bytes_before(member, at))
      if after then hi = mid else lo = mid + 1 end
    end
  end
  if lo > start then start = lo end
end

local rows = rcall(range, key, start, start + count - 1, "WITHSCORES")
local out = {}
for i = 1, #rows, 2 do
  local score = tonumber(rows[i + 1])
  if (rev and min ~= "-inf" and score < tonumber(min))
    or (not rev and max ~= "+inf" and score > tonumber(max)) then
    break
  end
  out[#out + 1] = rows[i]
  out[#out + 1] = rows[i + 1]
end
return out
