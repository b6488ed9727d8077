--[[ Give a pending or delayed job another priority. A pending job keeps its place among the
jobs of its new level by the sequence it was first given (FIFO by enqueue order).
KEYS[1] job_prefix   KEYS[2] pending   KEYS[3] lanes   KEYS[4] lane_prefix
ARGV[1] job_id   ARGV[2] priority
Returns {"missing"} | {state it is in, when neither pending nor delayed} | {"ok"}.
]]
local job_id, priority = ARGV[1], ARGV[2]
local job_key = KEYS[1] .. job_id
local fields = rcall("HMGET", job_key, "state", "type")
local state, job_type = fields[1], fields[2]
if not state then return {"missing"} end
if state ~= "pending" and state ~= "delayed" then return {state} end
rcall("HSET", job_key, "priority", priority)
if state == "pending" then
  local set = pending_set({pending = KEYS[2], lanes = KEYS[3], lane_prefix = KEYS[4]}, job_type)
  local score = rcall("ZSCORE", set, job_id)
  if not score then
    -- Its lane was just set and dequeue has not yet moved it: it is still in `pending`.
    set = KEYS[2]
    score = rcall("ZSCORE", set, job_id)
  end
  local seq = tonumber(score) % SEQUENCE_SPAN
  rcall("ZADD", set, pending_score(priority, seq), job_id)
end
return {"ok"}
