--[[
The learner's atomic steps, each in one Redis Cluster slot (streams/sources/handoff.py).

A "step" writes in one slot (a partition's: its users' keys, its items' keys) with the
source's marks there, and hands what it changes in other slots to the slot's hand-off list,
in the same atomic step. "apply" runs entries of another slot's list here, each once: this
slot keeps the number of the last entry applied from each source slot. "trim" drops from a
list the entries applied. The writes are Redis commands plus the few below: no
recommendation maths, which stays in Python (models/).

Ops come as a payload "<JSON header>\n<arguments>": the header holds each op's arguments'
byte lengths ([[3, 11, 5], ...]), so arguments may be any bytes (MF's rows are float32).
Besides Redis commands:
  !live mark yes no   the next `yes` ops run if `mark` does not exist, else the `no` after them
  !out stem payload   hand `payload` to the slot `stem` (run here if that is this slot), or
                      to the slot of an item's home for "@<item id>" (Python knows it)
  !incr key n, !hincr key field n, !zincr key member n
                      add n, and delete what is left at or below zero
  !learnt current previous generation id...
                      remember a user's learnt ids (learnt.lua, which this script follows)
An entry in a list: "<number>\t<target stem>\t<payload>". A kind may add ops of its own
(streams/sources/handoff.py puts them before the last line): item-CF's, in itemcf.lua.

KEYS[1] the slot's hand-off list of this kind: the one key declared, the call's route
(streams/store/lua.py); the other keys, all in the slot, come as arguments.
ARGV[1] mode, ARGV[2] the kind (e.g. "fbt"), ARGV[3] the slot's counters, ARGV[4] what it
applied, then:
  step:  ARGV[5] its marks hash ("": none), ARGV[6] JSON {expect = {field: offset, -1 for
         none}, marks = {field: offset}, refuse = [["exists", key] or ["learnt", current,
         previous, id], ...]}, ARGV[7] the payload. Returns {1} if the marks moved (nothing
         written), {2, [indexes of refusals that hold]} (nothing written), else {0, [entries
         waiting], [what the ops reported]}.
  apply: ARGV[5] the source slot's tag, ARGV[6...] its entries for this slot, in order.
         Returns {entries applied, [entries this slot handed on], [what the ops reported]}.
  trim:  ARGV[5] the last entry delivered.
]]

local mode, kind = ARGV[1], ARGV[2]
local LIST, COUNTERS, APPLIED = KEYS[1], ARGV[3], ARGV[4]
-- Counts at or below this are gone (models.shrinkage.ZERO).
local ZERO = 1e-9
local function tag_of(key) return string.match(key, '{(.-)}') end
local HERE = tag_of(LIST)
-- What every key of this slot starts with (streams/keys.py Keys.stem_of).
local STEM = string.match(LIST, '^(.-})')
-- What ops report (item-CF's sums), in the order they ran.
local results = {}

local function parse(payload)
  local newline = string.find(payload, '\n', 1, true)
  local at, ops = newline + 1, {}
  for _, lengths in ipairs(cjson.decode(string.sub(payload, 1, newline - 1))) do
    local op = {}
    for _, n in ipairs(lengths) do
      op[#op + 1] = string.sub(payload, at, at + n - 1)
      at = at + n
    end
    ops[#ops + 1] = op
  end
  return ops
end

-- The inverse of parse (streams/sources/writes.py payload), for what an op hands on.
local function encode(ops)
  local header, body = {}, {}
  for _, op in ipairs(ops) do
    local lengths = {}
    for _, arg in ipairs(op) do
      lengths[#lengths + 1] = #arg
      body[#body + 1] = arg
    end
    header[#header + 1] = lengths
  end
  return cjson.encode(header) .. '\n' .. table.concat(body)
end

local handed = {}
local run

-- Hand `payload` to the slot `target`; ops for this slot run now.
local function hand(target, payload)
  if tag_of(target) == HERE then  -- nil for "@<item>": handed on whatever its home
    local ops = parse(payload)
    run(ops, 1, #ops)
    return
  end
  local entry = redis.call('HINCRBY', COUNTERS, kind, 1) .. '\t' .. target .. '\t' .. payload
  redis.call('RPUSH', LIST, entry)
  handed[#handed + 1] = entry
end

local OWN = {
  ['!incr'] = function(op)
    if redis.call('INCRBY', op[2], op[3]) <= 0 then redis.call('DEL', op[2]) end
  end,
  ['!hincr'] = function(op)
    if redis.call('HINCRBY', op[2], op[3], op[4]) <= 0 then redis.call('HDEL', op[2], op[3]) end
  end,
  ['!zincr'] = function(op)
    if tonumber(redis.call('ZINCRBY', op[2], op[4], op[3])) <= ZERO then
      redis.call('ZREM', op[2], op[3])
    end
  end,
  ['!out'] = function(op) hand(op[2], op[3]) end,
  ['!learnt'] = function(op) learn_ids(op[2], op[3], tonumber(op[4]), { unpack(op, 5) }) end,
}

run = function(ops, first, last)
  local n = first
  while n <= last do
    local op = ops[n]
    if op[1] == '!live' then
      local yes, no = tonumber(op[3]), tonumber(op[4])
      if redis.call('EXISTS', op[2]) == 0 then run(ops, n + 1, n + yes)
      else run(ops, n + yes + 1, n + yes + no) end
      n = n + yes + no + 1
    else
      local own = OWN[op[1]]
      if own then own(op) else redis.call(unpack(op)) end
      n = n + 1
    end
  end
end

-- Drop the head entries numbered up to `done` (delivered everywhere).
local function trim(done)
  while true do
    local head = redis.call('LINDEX', LIST, 0)
    if not head or tonumber(string.match(head, '^(%d+)\t')) > done then return end
    redis.call('LPOP', LIST)
  end
end

local function step()
  local marks, control = ARGV[5], cjson.decode(ARGV[6])
  for field, offset in pairs(control.expect) do
    if tonumber(redis.call('HGET', marks, field) or '-1') ~= offset then return { 1 } end
  end
  local refused = {}
  for n, r in ipairs(control.refuse) do
    local holds
    if r[1] == 'exists' then holds = redis.call('EXISTS', r[2]) == 1
    else holds = learnt_holds(r[2], r[3], r[4]) end
    if holds then refused[#refused + 1] = n - 1 end
  end
  if #refused > 0 then return { 2, refused } end
  local ops = parse(ARGV[7])
  run(ops, 1, #ops)
  for field, offset in pairs(control.marks) do redis.call('HSET', marks, field, offset) end
  return { 0, redis.call('LRANGE', LIST, 0, -1), results }
end

local function apply()
  local field = kind .. ':' .. ARGV[5]
  local done = tonumber(redis.call('HGET', APPLIED, field) or '0')
  local applied = 0
  for k = 6, #ARGV do
    local number, _, payload = string.match(ARGV[k], '^(%d+)\t([^\t]*)\t(.*)$')
    number = tonumber(number)
    if number > done then
      local ops = parse(payload)
      run(ops, 1, #ops)
      done, applied = number, applied + 1
    end
  end
  redis.call('HSET', APPLIED, field, done)
  return { applied, handed, results }
end

local function main()
  if mode == 'step' then return step() end
  if mode == 'apply' then return apply() end
  trim(tonumber(ARGV[5]))
  return 0
end

return main()
