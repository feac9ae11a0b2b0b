--[[
A user's learnt ids (streams/sources/progress.py): event id digests in two generations, each a
set, which Redis keeps as an intset while it holds integers only (8 bytes an id, up to
`set-max-intset-entries`). Ids go to the current set; once it holds `generation` ids it
becomes the previous one, and the one before is dropped: the user's latest `generation` to
2 * `generation` ids are remembered. Both scripts that write them start with this file:
handoff.lua (item-CF's step) and the learner's partition step (streams/runtime/learner_steps.py).
]]
local function learn_ids(current, previous, generation, ids)
  redis.call('SADD', current, unpack(ids))
  if generation > 0 and redis.call('SCARD', current) >= generation then
    redis.call('RENAME', current, previous)
  end
end

local function learnt_holds(current, previous, id)
  return redis.call('SISMEMBER', current, id) == 1 or redis.call('SISMEMBER', previous, id) == 1
end

