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
  !out stem payload   hand `payload` to the slot `stem` (run here if that is this slot)
  !incr key n, !hincr key field n, !zincr key member n
                      add n, and delete what is left at or below zero
An entry in a list: "<number>\t<target stem>\t<payload>".

KEYS[1] the slot's hand-off list of this kind, KEYS[2] its counters, KEYS[3] what it applied
(all in the slot); for a step KEYS[4] its marks hash (or KEYS[1] when it has none).
ARGV[1] mode, ARGV[2] the kind (e.g. "fbt"), then:
  step:  ARGV[3] JSON {expect = {field: offset, -1 for none}, marks = {field: offset},
         refuse = [["exists", key] or ["zscore", key, member], ...]}, ARGV[4] the payload. Returns {1} if the marks moved (nothing written),
         {2, [indexes of refusals that hold]} (nothing written), else {0, [entries waiting]}.
  apply: ARGV[3] the source slot's tag, ARGV[4...] its entries for this slot, in order.
         Returns {entries applied, [entries this slot handed on]}.
  trim:  ARGV[3] the last entry delivered.
]]

local mode, kind = ARGV[1], ARGV[2]
local LIST, COUNTERS, APPLIED = KEYS[1], KEYS[2], KEYS[3]
-- Counts at or below this are gone (models.shrinkage.ZERO).
local ZERO = 1e-9
local function tag_of(key) return string.match(key, '{(.-)}') end
local HERE = tag_of(LIST)

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

local handed = {}
local run
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
  ['!out'] = function(op)
    if tag_of(op[2]) == HERE then
      local ops = parse(op[3])
      run(ops, 1, #ops)
    else
      local entry = redis.call('HINCRBY', COUNTERS, kind, 1) .. '\t' .. op[2] .. '\t' .. op[3]
      redis.call('RPUSH', LIST, entry)
      handed[#handed + 1] = entry
    end
  end,
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

if mode == 'step' then
  local step, marks = cjson.decode(ARGV[3]), KEYS[4]
  for field, offset in pairs(step.expect) do
    if tonumber(redis.call('HGET', marks, field) or '-1') ~= offset then return { 1 } end
  end
  local refused = {}
  for n, r in ipairs(step.refuse) do
    local holds
    if r[1] == 'exists' then holds = redis.call('EXISTS', r[2]) == 1
    else holds = redis.call('ZSCORE', r[2], r[3]) ~= false end
    if holds then refused[#refused + 1] = n - 1 end
  end
  if #refused > 0 then return { 2, refused } end
  local ops = parse(ARGV[4])
  run(ops, 1, #ops)
  for field, offset in pairs(step.marks) do redis.call('HSET', marks, field, offset) end
  return { 0, redis.call('LRANGE', LIST, 0, -1) }
elseif mode == 'apply' then
  local field = kind .. ':' .. ARGV[3]
  local done = tonumber(redis.call('HGET', APPLIED, field) or '0')
  local applied = 0
  for k = 4, #ARGV do
    local number, stem, payload = string.match(ARGV[k], '^(%d+)\t([^\t]*)\t(.*)$')
    number = tonumber(number)
    if number > done then
      local ops = parse(payload)
      run(ops, 1, #ops)
      done, applied = number, applied + 1
    end
  end
  redis.call('HSET', APPLIED, field, done)
  return { applied, handed }
else
  trim(tonumber(ARGV[3]))
  return 0
end
