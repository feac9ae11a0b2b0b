--[[
Item-CF's own ops for handoff.lua (streams/sources/itemcf.py puts them before its last line).
The maths is in Python (models/cooccurrence.py): these ops add the increments Python computed,
in the slot of the item's home, and keep each row of counts under its cap, the same steps as
models.cooccurrence.Cooccurrence.apply takes for one item's row. An item's keys in this slot
follow streams/keys.py: STEM .. 'i:' .. item .. ':dot' (its row of counts), ':sim' (its
neighbour list), and the home's own STEM .. 'norm2' (its items' squared norms) and
'cf_norms' (their sum and count above zero: a share of what the learned shrinkage reads).

  !norm item amount   add to the item's norm; reports {'norm', item, new norm}
  !pair a b amount    add to a's side of the pair; reports {'pair', a, b, sum} (false: the
                      sum fell to zero, and b left a's row and a's neighbour list)
  !cap a cap          a row past its cap drops its weakest pairs (ZPOPMIN order, as
                      models.sortedset.BoundedSet.trim_to) from its counts and neighbour
                      list, and hands each dropped item the other side (!drop, in its home);
                      reports {'cap', a, [dropped items]}
  !drop b a           a leaves b's row and b's neighbour list
]]

local function dot_key(item) return STEM .. 'i:' .. item .. ':dot' end
local function sim_key(item) return STEM .. 'i:' .. item .. ':sim' end
local NORM2, NORMS = STEM .. 'norm2', STEM .. 'cf_norms'

OWN['!norm'] = function(op)
  local item = op[2]
  local old = tonumber(redis.call('ZSCORE', NORM2, item) or '0')
  local raw = redis.call('ZINCRBY', NORM2, op[3], item)
  local new = tonumber(raw)
  if new <= ZERO then
    raw = '0'
    redis.call('ZREM', NORM2, item)
  end
  -- The sum and count of the norms above zero (models.shrinkage.ShrinkageEstimator.update).
  local total, count = 0.0, 0
  if old > ZERO then total, count = total - old, count - 1 end
  if new > ZERO then total, count = total + new, count + 1 end
  if count ~= 0 then redis.call('HINCRBY', NORMS, 'count', count) end
  if total ~= 0 then redis.call('HINCRBYFLOAT', NORMS, 'total', total) end
  results[#results + 1] = { 'norm', item, raw }
end

OWN['!pair'] = function(op)
  local a, b = op[2], op[3]
  local raw = redis.call('ZINCRBY', dot_key(a), op[4], b)
  if tonumber(raw) <= ZERO then
    redis.call('ZREM', dot_key(a), b)
    redis.call('ZREM', sim_key(a), b)
    raw = false
  end
  results[#results + 1] = { 'pair', a, b, raw }
end

OWN['!cap'] = function(op)
  local a = op[2]
  local dropped = {}
  local excess = redis.call('ZCARD', dot_key(a)) - tonumber(op[3])
  if excess > 0 then
    local popped = redis.call('ZPOPMIN', dot_key(a), excess)
    for k = 1, #popped, 2 do
      local b = popped[k]
      redis.call('ZREM', sim_key(a), b)
      hand('@' .. b, encode({ { '!drop', b, a } }))
      dropped[#dropped + 1] = b
    end
  end
  results[#results + 1] = { 'cap', a, dropped }
end

OWN['!drop'] = function(op)
  redis.call('ZREM', dot_key(op[2]), op[3])
  redis.call('ZREM', sim_key(op[2]), op[3])
end
