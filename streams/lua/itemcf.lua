--[==[
Item-CF's counts in Redis, written by the learner (streams/sources/itemcf.py). The maths is in
Python (models/cooccurrence.py): this script only adds the increments Python computed, keeps
each row of counts under its cap and stores the neighbour lists Python scored, the same steps
in the same order as models.cooccurrence.Cooccurrence.apply.

The step comes as one JSON argument, not hundreds of ARGV strings: the client packed every
argument on its own, and that was most of the learner's time in this source.

ARGV[1] mode: "counts" or "neighbours"; ARGV[2] key prefix, e.g. "sr:"
counts:     ARGV[3] JSON [row cap, 1 to refuse users erased meanwhile, learnt-ids window,
            users, norms, pairs, asked]: users [[window key, erasure-mark key, window JSON (""
            deletes it), learnt-ids key, [[score, member], ...]], ...] (the user's events this
            batch learns: recorded in the same step, so a learner that crashes after it never
            counts them twice); norms [[item, norm2 increment], ...]; pairs [[a, b, dot
            increment], ...]; asked: items whose norm2 to return.
            Returns, having changed nothing, {erased user indexes} if any erasure mark exists
            (when refusing), or {'learnt', members} if any event is learnt already (a step
            applied here whose reply the learner never got, or another learner's); else
            {{}, dot of each pair (false: gone), norm2 of each asked item, Σ norm2, #items}.
neighbours: ARGV[3] list size, ARGV[4] JSON [[a, b, cosine (0: not neighbours)], ...].
]==]

local mode, P = ARGV[1], ARGV[2]
-- Sums at or below this are zero: every contribution was withdrawn (models.shrinkage.ZERO).
local ZERO = 1e-9
local function dot_key(item) return P .. 'i:' .. item .. ':dot' end
local function sim_key(item) return P .. 'i:' .. item .. ':sim' end
local NORM2, NORMS = P .. 'norm2', P .. 'cf_norms'

-- This batch's pairs already counted: counted[a][b] is the pair's index in the reply's dots,
-- so a pair evicted later in the batch (a row over its cap) is reported gone without a read.
local counted = {}
local dots = {}

-- popped: a's row no longer holds b (ZPOPMIN took it), so only the other side is removed.
local function forget(a, b, popped)
  if not popped then redis.call('ZREM', dot_key(a), b) end
  redis.call('ZREM', dot_key(b), a)
  redis.call('ZREM', sim_key(a), b)
  redis.call('ZREM', sim_key(b), a)
  local n = (counted[a] or {})[b] or (counted[b] or {})[a]
  if n then dots[n] = false end
end

if mode == 'neighbours' then
  local size = tonumber(ARGV[3])
  local touched = {}
  for _, pair in ipairs(cjson.decode(ARGV[4])) do
    local a, b, s = pair[1], pair[2], pair[3]
    if s > 0 then
      redis.call('ZADD', sim_key(a), s, b)
      redis.call('ZADD', sim_key(b), s, a)
      touched[a], touched[b] = true, true
    else
      redis.call('ZREM', sim_key(a), b)
      redis.call('ZREM', sim_key(b), a)
    end
  end
  -- Evict the weakest beyond the list size (ZPOPMIN order = RankedSet.trim_to).
  for item in pairs(touched) do
    redis.call('ZREMRANGEBYRANK', sim_key(item), 0, -size - 1)
  end
  return 0
end

local step = cjson.decode(ARGV[3])
local cap, refuse, learnt_window = step[1], step[2] == 1, step[3]
local users, norm_deltas, pair_deltas, asked = step[4], step[5], step[6], step[7]
if refuse then
  local erased = {}
  for u, user in ipairs(users) do
    if redis.call('EXISTS', user[2]) == 1 then erased[#erased + 1] = u - 1 end
  end
  if #erased > 0 then return erased end
end
-- The deltas were computed from windows without these events: applying them again would
-- count the events twice, so the learner drops them and computes the step again.
local again = {}
for _, user in ipairs(users) do
  for _, event in ipairs(user[5]) do
    if redis.call('ZSCORE', user[4], event[2]) then again[#again + 1] = event[2] end
  end
end
if #again > 0 then return { 'learnt', again } end
for _, user in ipairs(users) do
  local key, window, learnt = user[1], user[3], user[4]
  if window == '' then redis.call('DEL', key) else redis.call('SET', key, window) end
  for _, event in ipairs(user[5]) do
    redis.call('ZADD', learnt, event[1], event[2])
  end
  if learnt_window > 0 then redis.call('ZREMRANGEBYRANK', learnt, 0, -learnt_window - 1) end
end

local total, count = 0.0, 0
for _, norm in ipairs(norm_deltas) do
  local item = norm[1]
  local old = tonumber(redis.call('ZSCORE', NORM2, item) or '0')
  local new = tonumber(redis.call('ZINCRBY', NORM2, norm[2], item))
  if new <= ZERO then redis.call('ZREM', NORM2, item) end
  -- The sum and count of the norms above zero (models.shrinkage.ShrinkageEstimator.update).
  if old > ZERO then total, count = total - old, count - 1 end
  if new > ZERO then total, count = total + new, count + 1 end
end
if count ~= 0 then redis.call('HINCRBY', NORMS, 'count', count) end
if total ~= 0 then redis.call('HINCRBYFLOAT', NORMS, 'total', total) end

for _, pair in ipairs(pair_deltas) do
  local a, b, amount = pair[1], pair[2], pair[3]
  local raw = redis.call('ZINCRBY', dot_key(a), amount, b)
  redis.call('ZINCRBY', dot_key(b), amount, a)
  local dot = tonumber(raw)
  dots[#dots + 1] = raw
  counted[a] = counted[a] or {}
  counted[a][b] = #dots
  if dot <= ZERO then
    forget(a, b)
  elseif dot == amount then
    -- Only a new pair can push a row over its cap (existing pairs hold more than ZERO).
    for _, side in ipairs({ a, b }) do
      local excess = redis.call('ZCARD', dot_key(side)) - cap
      if excess > 0 then
        local popped = redis.call('ZPOPMIN', dot_key(side), excess)
        for k = 1, #popped, 2 do forget(side, popped[k], true) end
      end
    end
  end
end

local norms = {}
for _, item in ipairs(asked) do
  norms[#norms + 1] = redis.call('ZSCORE', NORM2, item) or '0'
end
local sums = redis.call('HMGET', NORMS, 'total', 'count')
return { {}, dots, norms, sums[1] or '0', sums[2] or '0' }
