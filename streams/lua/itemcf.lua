--[[
Item-CF's own ops for handoff.lua (streams/sources/itemcf.py puts them before its last line).
The maths is in Python (models/cooccurrence.py): these ops add the increments Python computed,
in the slot of the item's home, and keep each row of counts under its cap, the same steps as
models.cooccurrence.Cooccurrence.apply takes for one item's row. An item's keys in this slot
follow streams/keys.py: STEM .. 'i:' .. item .. ':dot' (its row of counts), ':sim' (its
neighbour list), and the home's own STEM .. 'norm2' (its items' squared norms) and
'cf_norms' (their sum and count above zero: a share of what the learned shrinkage reads).

  !norms item amount...
                      add to each item's norm; reports {'norm', item, new norm} for each
  !row a b amount...  add to a's side of each pair (a row's removals in one ZREM of its
                      counts and one of its list); reports {'row', a, b, sum, ...} (false:
                      the sum fell to zero, and b left a's row and neighbour list)
  !cap a cap          a row past its cap drops its weakest pairs (ZPOPMIN order, as
                      models.sortedset.BoundedSet.trim_to) from its counts and neighbour
                      list, and hands each dropped item the other side (!drop, in its home);
                      reports {'cap', a, [dropped items]}
  !drop b a           a leaves b's row and b's neighbour list
]]

local function dot_key(item) return STEM .. 'i:' .. item .. ':dot' end
local function sim_key(item) return STEM .. 'i:' .. item .. ':sim' end
local NORM2, NORMS = STEM .. 'norm2', STEM .. 'cf_norms'

-- The home's sum and count of its norms above zero change once an op, by what each item's
-- change did to them (models.shrinkage.ShrinkageEstimator.update).
OWN['!norms'] = function(op)
  local total, count = 0.0, 0
  for k = 2, #op, 2 do
    local item = op[k]
    local raw = redis.call('ZSCORE', NORM2, item) or '0'
    local old = tonumber(raw)
    if tonumber(op[k + 1]) ~= 0 then raw = redis.call('ZINCRBY', NORM2, op[k + 1], item) end
    local new = tonumber(raw)
    if new <= ZERO then
      raw = '0'
      redis.call('ZREM', NORM2, item)
    end
    if old > ZERO then total, count = total - old, count - 1 end
    if new > ZERO then total, count = total + new, count + 1 end
    results[#results + 1] = { 'norm', item, raw }
  end
  if count ~= 0 then redis.call('HINCRBY', NORMS, 'count', count) end
  if total ~= 0 then redis.call('HINCRBYFLOAT', NORMS, 'total', total) end
end

OWN['!row'] = function(op)
  local a = op[2]
  local dot, gone, report = dot_key(a), {}, { 'row', a }
  for k = 3, #op, 2 do
    local raw = redis.call('ZINCRBY', dot, op[k + 1], op[k])
    if tonumber(raw) <= ZERO then
      gone[#gone + 1] = op[k]
      raw = false
    end
    report[#report + 1] = op[k]
    report[#report + 1] = raw
  end
  if #gone > 0 then  -- Python keeps an op's members few enough for unpack's stack
    redis.call('ZREM', dot, unpack(gone))
    redis.call('ZREM', sim_key(a), unpack(gone))
  end
  results[#results + 1] = report
end

-- One item or pair an op: entries handed on before these ops took many.
OWN['!norm'], OWN['!pair'] = OWN['!norms'], OWN['!row']

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
