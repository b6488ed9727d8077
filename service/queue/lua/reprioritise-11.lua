--[[ Give a pending or delayed job another priority. A pending job keeps its place among the
jobs of its new level by the sequence it was first given (FIFO by enqueue order); a grouped
one also in its group, whose turn follows its head's new level.
KEYS[1] job_prefix   KEYS[2] pending   KEYS[3] lanes   KEYS[4] lane_prefix   KEYS[5] sequence
KEYS[6] group_prefix KEYS[7] groups    KEYS[8] groups_ready                  KEYS[9] groups_held
KEYS[10] group_state KEYS[11] groups_pending
ARGV[1] job_id   ARGV[2] priority
Returns {"missing"} | {state it is in, when neither pending nor delayed} | {"ok"}.
]]
local job_id, priority = ARGV[1], ARGV[2]
local job_key = KEYS[1] .. job_id
local fields = rcall("HMGET", job_key, "state", "type", "group")
local state, job_type, group = fields[1], fields[2], fields[3]
if not state then return {"missing"} end
if state ~= "pending" and state ~= "delayed" then return {state} end
rcall("HSET", job_key, "priority", priority)
if state == "pending" then
  local groups = group_keys(6, KEYS[5])
  local sets = {pending_set({pending = KEYS[2], lanes = KEYS[3], lane_prefix = KEYS[4]}, job_type),
    KEYS[2]}
  -- Its lane was just set and dequeue has not yet moved it: it is still in `pending` (or its
  -- group's set).
  if group then sets = {sets[1], groups.prefix .. group, KEYS[2]} end
  for _, set in ipairs(sets) do
    local score = rcall("ZSCORE", set, job_id)
    if score then
      local new_score = pending_score(priority, tonumber(score) % SEQUENCE_SPAN)
      rcall("ZADD", set, new_score, job_id)
      if group and set == groups.prefix .. group then
        rcall("ZADD", groups.all, new_score, job_id)
        group_refresh(groups, group)
      end
      break
    end
  end
end
return {"ok"}
