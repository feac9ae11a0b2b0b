--[[
socialrec state transitions, run atomically inside Redis: one call per micro-batch.

This is the Redis twin of models/state/memory.py (MemoryState): a user's own state, popularity,
trending counts, the follow graph and the consumed offsets. What a step decides is Python's
(models/state/plan.py: each event's verdict from the dedupe window, and the affinity an item
event leaves; models/state/steps.py: popularity's amounts): the script writes it. Every step,
and the order of every step, mirrors the Python reference so both evict the same members;
the store contract suite
(tests/integration/test_store_contract.py) feeds both the same events and compares full
snapshots. Key names follow streams/keys.py: a user's keys start with the stem Python hands
over (``Keys.user_stem``: it carries the hash tag of the user's partition, which Lua cannot
compute). Item co-occurrence and similarity are not here: the learner keeps them
(streams/sources/itemcf.py); this script only reads the neighbour lists.

ARGV[1]  mode: "plan" (read what Python needs to plan a step: models/state/plan.py),
         "process" (apply events; the caller reads the users after every partition's
         step, so a view shows what other partitions' steps wrote: "views"), "read" (read only;
         "views" too, but leaving out a user whose keys hold the wrong kind of value)
         or "erase" (remove users from every derived state; returns counts per user);
         "erase+withdraw" also hands each logged event to the learner's popularity, which
         keeps its own counts (streams/runtime/learner_state.py ``popularity_withdrawn``)
ARGV[2]  key prefix, e.g. "sr:"
ARGV[3..6]  history_size, dedupe_window, popularity_cap, trending_span (buckets per trending
            window)
ARGV[7]     recent_items (what to read back)
ARGV[8]     trending_bucket_s
ARGV[9..10] seen_window_s, seen_cap (items the user touched, excluded from their lists)
ARGV[11] n = number of events (process) or users (read, erase), then the records:
  plan: ARGV[12] JSON [[user id, key stem, digests of the user's events as an array], ...],
           ARGV[13] the partition's key stem; returns JSON [the partition's version, facts],
           facts per user: [user id, history (member, score, ...), affinities (item, value,
           ...), the dedupe window's entries of those digests and its floor (digest, entry,
           ...; the whole window if the step's events could trim it), the window's size]
  process: ARGV[12] one JSON array of n events, each 17 strings: the event id's digest
           (models/state/seen.py event_digest: the dedupe window's field), type, user_id,
           item_id|"", target_user_id|"", ts, weight, stream_id|"", arrival (broker timestamp:
           trending windows use it), the erasure mark keys of the user and of the target|""
           (streams/keys.py Keys.erased: a digest Lua cannot compute), the key stems of the
           user and of the target|"", the item's category and merchant from the catalog
           ("\31"-joined, "" for none: trending scopes), the amount it adds to its item's
           popularity, its verdict as planned (models/state/plan.py: "a" applied, "h" held,
           "t" trimmed, or the outcome "2"/"3" of a refused one) and the affinity its item is
           left with ("" unless applied). One argument, not 15 per event: the client packs each argument in
           Python (a few µs apiece); numbers stay the strings Python printed.
  read: ARGV[12] JSON [[user id, key stem], ...]
  erase: ARGV[12] JSON [[user id, key stem], ...], ARGV[13] JSON {user id: key stem} of every
           user their outbox, senders, following and followers name; returns {"missing", ids}
           having changed nothing if a set names anyone else (it changed since Python read it)
  process, after the events: m, then 6 fields per partition: its offsets key,
           "topic:partition", first offset, last offset, expected applied offset (-1 unknown),
           published offset (-1 none); then the step's partition: its key stem and the last
           relay entry already delivered (trimmed first); then its popularity's landmark as
           Python knows it ("" none), the landmark the step counts from and the factor that
           re-expresses the stored scores first ("" for either: unchanged); then the
           partition's version the plan read
  erase, after its two records: the users' partition's key stem and last entry delivered,
           the landmark as Python knows it, and JSON {event digest: [amount, at or below what the
           item's sum counts as zero]} of each logged event, to take out of popularity
  relay: ARGV[12] source partition, ARGV[13] JSON [entry, ...] as stored, ARGV[14] the
           target partition's key stem; returns {entries skipped, JSON [entry, ...] it
           appended to the target partition's relay list}
What a step does to users of another partition (a share's recipient, a follow's followee, an
erased user's counterparts) cannot be written in its slot: it is appended to the partition's
relay list, [seq, kind, target, target stem, target's erasure mark key, user, item, ts,
arrival, user stem], and the caller delivers it ("relay" mode, in the target's slot, at most
once per entry: the target's relayed hash keeps each source partition's last seq applied).
Process and erase return the list's entries not yet delivered. A target erased since the event
arrived gets nothing, and the user's sets must not name them: the delivery appends an
"unname" entry to the target partition's list (item = the user's set to take them out of),
which the caller delivers back.
Views name up to 50 followees each, not what they did, and no neighbour lists: followees sit
in other partitions' slots and lists in their items', so the caller reads both
(streams/store/redis_store.py). The script reads no item key.
Popularity and trending are kept per partition (its users' events); readers sum them.
Popularity's maths is Python's (models/popularity.py): a step is handed its landmark, the
rebase factor and each event's amount, and writes them.
Returns {outcomes, JSON [views, relay entries pending]}; outcomes per event: 1 applied, 0 duplicate,
2 rejected (a key of its own user or target has the wrong type; nothing of it written),
3 erased (its user was erased at or after its arrival; nothing of it written);
or, when a partition's stored offset is behind the expected one, {{}, '', JSON [[partition,
applied, published], ...]} having applied nothing; process and erase return {"landmark",
stored landmark} having changed nothing when the stored landmark is not the one Python knew,
and erase {"stale"} when the user logged an event Python was not given the amount of;
process returns {"replan", JSON [outcome per event: 0, or the 2 or 3 it is refused with]}
having changed nothing when the partition's version moved since the plan's facts ("" then),
an event it applies is in the window, or an event is refused that the plan applied, or the
other way round.
]]

local mode = ARGV[1]
local P = ARGV[2]
local HISTORY = tonumber(ARGV[3])
local DEDUPE = tonumber(ARGV[4])
local POP_CAP = tonumber(ARGV[5])
local TREND_SPAN = tonumber(ARGV[6])
local READ_RECENT = tonumber(ARGV[7])
local TREND_BUCKET_S = tonumber(ARGV[8])
local SEEN_WINDOW = tonumber(ARGV[9])
local SEEN_CAP = tonumber(ARGV[10])
-- The dedupe window is trimmed back to DEDUPE events past this many (seen.py trim_at).
local SEEN_TRIM_AT = DEDUPE + math.floor(DEDUPE / 8)
local N = tonumber(ARGV[11])
local FIRST = 12
-- Trending buckets live two windows (current + previous) plus slack for late readers.
local TREND_TTL = math.ceil((2 * TREND_SPAN + 2) * TREND_BUCKET_S)

-- Each user's key stem, from the records (a user without one is a bug: the concat fails loudly).
local stems = {}
local function ukey(user, field) return stems[user] .. field end
-- The step's partition's own keys (process, erase: open_partition): its relay list and
-- relayed hash, and its users' shares of what readers sum over partitions: popularity
-- (models/popularity.py merged_top) with its landmark, and trending buckets
-- (streams/store/trending_looks.py) with the scopes they changed.
local RELAY, RELAYED, HERE, POPULARITY, LANDMARK = nil, nil, nil, nil, nil
-- WITHDRAWN: anonymous (item, weight, time) of erased events, for the learner to take out of
-- its own popularity.
local PSTEM, TRENDING_CHANGED, WITHDRAWN = nil, nil, nil
local function tkey(bucket, scope) return PSTEM .. 't:' .. bucket .. ':' .. scope end
local function tnkey(bucket, scope) return PSTEM .. 'tn:' .. bucket .. ':' .. scope end
-- A bucket's scopes' versions in one hash (scope -> the counts hash's "" field), so a reader
-- checks every scope of a bucket in one command (streams/store/trending_looks.py).
local function tvkey(bucket) return PSTEM .. 'tv:' .. bucket end
local function bump_trending(counts, bucket, scope)
  local version = redis.call('HINCRBY', counts, '', 1)
  redis.call('HSET', tvkey(bucket), scope, version)
  return version
end

local UNHIDING = { like = true, share = true, cart = true, purchase = true }
local USER_FIELDS = { 'history', 'affinity', 'seen_events', 'trend_log', 'bought', 'hidden',
  'following', 'followers', 'inbox', 'outbox', 'senders', 'actions', 'seen_items',
  'recommendations' }
-- Social signals (models/state/views.py INBOX_SIZE, ACTIONS_SIZE, FOLLOWEES_READ).
local INBOX_SIZE, ACTIONS_SIZE, FOLLOWEES_READ = 50, 20, 50
local SOCIAL_ACTIONS = { like = true, purchase = true }

-- The size of each bounded sorted set this call has counted, kept up to date by every write
-- (zwrite), so trimming after each event costs a ZCARD per key and batch, not per event.
local sizes = {}
local function zwrite(key, change)
  if sizes[key] ~= nil then sizes[key] = sizes[key] + change end
end

-- Evict the lowest members until at most `size` remain (ZPOPMIN order = MemoryState.trim_to).
local function trim(key, size)
  local n = sizes[key]
  if n == nil then n = redis.call('ZCARD', key) end
  sizes[key] = math.min(n, size)
  local evicted = {}
  if n <= size then return evicted end
  local popped = redis.call('ZPOPMIN', key, n - size)
  for k = 1, #popped, 2 do evicted[#evicted + 1] = popped[k] end
  return evicted
end

-- What an event or an erasure does to another user (models/state/memory.py _to_target).
local function to_target(kind, target, user, item, ts_text)
  if kind == 'unname' then  -- the user was erased: out of the target's outbox or following
    redis.call('SREM', ukey(target, item), user)
  elseif kind == 'share' then
    local inbox = ukey(target, 'inbox')
    zwrite(inbox, redis.call('ZADD', inbox, ts_text, user .. '\t' .. item))
    trim(inbox, INBOX_SIZE)
    redis.call('SADD', ukey(target, 'senders'), user)
  elseif kind == 'follow' then
    redis.call('SADD', ukey(target, 'followers'), user)
  elseif kind == 'unfollow' then
    redis.call('SREM', ukey(target, 'followers'), user)
  else  -- forget: the user was erased (MemoryState._forget)
    for _, field in ipairs({ 'senders', 'outbox', 'followers', 'following' }) do
      redis.call('SREM', ukey(target, field), user)
    end
    local prefix = user .. '\t'
    for _, key in ipairs(redis.call('ZRANGE', ukey(target, 'inbox'), 0, -1)) do
      if string.sub(key, 1, #prefix) == prefix then redis.call('ZREM', ukey(target, 'inbox'), key) end
    end
  end
end

-- An event of a user erased at or after it reached Kafka was in flight when the erasure was
-- honoured: applying it would bring back what the receipt said was gone. Checked in the same
-- atomic step as the write, so no erasure can slip in between; a target's mark is checked in
-- the target's slot (affect, relay). streams/store/erasure.py in_flight is the Python twin.
local marks = {}
local function erased_since(mark, arrival)
  if mark == '' then return false end
  if marks[mark] == nil then marks[mark] = tonumber(redis.call('GET', mark) or '-1') end
  return marks[mark] >= arrival
end

local function tag_of(key) return string.match(key, '{(.-)}') end
-- ARGV[at]: the partition's key stem (streams/keys.py Keys.partition_stem), ARGV[at + 1]: the
-- last relay entry delivered.
local function open_partition(at)
  local stem = ARGV[at]
  RELAY, RELAYED, HERE = stem .. 'relay', stem .. 'relayed', tag_of(stem)
  POPULARITY, LANDMARK = stem .. 'popularity', stem .. 'landmark'
  PSTEM, TRENDING_CHANGED = stem, stem .. 'trending_changed'
  WITHDRAWN = stem .. 'popularity_withdrawn'
  local delivered = tonumber(ARGV[at + 1])
  while true do  -- entries delivered before are gone: nothing about a user lingers
    local head = redis.call('LINDEX', RELAY, 0)
    if not head or cjson.decode(head)[1] > delivered then break end
    redis.call('LPOP', RELAY)
  end
end
local function here(target) return tag_of(stems[target]) == HERE end
local function append(entry)
  entry[1] = redis.call('HINCRBY', RELAYED, 'seq', 1)
  local raw = cjson.encode(entry)
  redis.call('RPUSH', RELAY, raw)
  return raw
end
-- The user's set that names the target of a change of this kind: emptied of an erased target.
local NAMING = { share = 'outbox', follow = 'following' }
-- A change to the target: now if it lives in this slot, else appended to the relay list.
local function affect(kind, target, mark, user, item, ts_text, arrival)
  if not here(target) then
    return append({ 0, kind, target, stems[target], mark, user, item, ts_text, arrival,
      stems[user] })
  end
  if kind ~= 'forget' and erased_since(mark, tonumber(arrival)) then
    if NAMING[kind] then redis.call('SREM', ukey(user, NAMING[kind]), target) end
  else
    to_target(kind, target, user, item, ts_text)
  end
end

-- ARGV[at]: the partition's landmark as Python knows it; false if the stored one differs (a
-- step of another writer came between): nothing may be written with amounts worked out from
-- it. ARGV[at + 1], ARGV[at + 2] (process): the landmark the step counts from, and the factor
-- re-expressing the stored scores first.
local function open_popularity(at, moves)
  local stored = redis.call('GET', LANDMARK) or ''
  if stored ~= ARGV[at] then return false, stored end
  if moves and ARGV[at + 2] ~= '' then
    redis.call('ZUNIONSTORE', POPULARITY, 1, POPULARITY, 'WEIGHTS', ARGV[at + 2])
  end
  if moves and ARGV[at + 1] ~= '' then redis.call('SET', LANDMARK, ARGV[at + 1]) end
  return true
end

local function add_popularity(item, amount)
  redis.call('ZINCRBY', POPULARITY, amount, item)
  sizes[POPULARITY] = nil  -- ZINCRBY does not say whether the item was new
  trim(POPULARITY, POP_CAP)
end

-- Trending: per scope and time bucket, item -> weighted count (field "" = newest arrival)
-- and item -> event count (field "" = the bucket's version, bumped by each step that changes
-- it). Scopes come from the event and the item's catalog record ("category\31merchant").
local function trending_scopes(stream_id, catalog)
  local scopes = { 'global' }
  if stream_id ~= '' then scopes[#scopes + 1] = 'stream:' .. stream_id end
  local sep = string.find(catalog, '\31', 1, true)
  local category, merchant = string.sub(catalog, 1, sep - 1), string.sub(catalog, sep + 1)
  if category ~= '' then scopes[#scopes + 1] = 'category:' .. category end
  if merchant ~= '' then scopes[#scopes + 1] = 'merchant:' .. merchant end
  return scopes
end

-- What a batch's events did to trending, written once per key at the end of the batch
-- (finish_trending) rather than once per event: each bucket's newest arrival and scopes
-- changed, and each user's newest bucket (their trend_log is trimmed to it).
local trend_newest, trend_counts, trend_scopes, trend_logs = {}, {}, {}, {}
local function add_trending(user, event_id, item, weight_text, stream_id, arrival, catalog)
  local bucket = math.floor(arrival / TREND_BUCKET_S)
  local scopes = trending_scopes(stream_id, catalog)
  for _, scope in ipairs(scopes) do
    local weights, counts = tkey(bucket, scope), tnkey(bucket, scope)
    redis.call('HINCRBYFLOAT', weights, item, weight_text)
    redis.call('HINCRBY', counts, item, 1)
    trend_newest[weights] = math.max(trend_newest[weights] or arrival, arrival)
    trend_counts[counts] = { bucket, scope }
    trend_scopes[scope] = true
  end
  -- What erasure needs to undo this event while its buckets live (then it is trimmed).
  local log = ukey(user, 'trend_log')
  redis.call('ZADD', log, bucket, table.concat({ event_id, weight_text, item,
    table.concat(scopes, '\31') }, '\t'))
  trend_logs[log] = math.max(trend_logs[log] or bucket, bucket)
end

local function finish_trending()
  for weights, arrival in pairs(trend_newest) do
    local newest = tonumber(redis.call('HGET', weights, '') or '0')
    if arrival > newest then redis.call('HSET', weights, '', arrival) end
    redis.call('EXPIRE', weights, TREND_TTL)
  end
  local versioned = {}
  for counts, at in pairs(trend_counts) do
    bump_trending(counts, at[1], at[2])  -- the bucket's version: readers re-read it when it moves
    redis.call('EXPIRE', counts, TREND_TTL)
    versioned[at[1]] = true
  end
  for bucket in pairs(versioned) do redis.call('EXPIRE', tvkey(bucket), TREND_TTL) end
  for scope in pairs(trend_scopes) do redis.call('SADD', TRENDING_CHANGED, scope) end
  for log, bucket in pairs(trend_logs) do
    redis.call('ZREMRANGEBYSCORE', log, '-inf', '(' .. (bucket - 2 * TREND_SPAN - 1))
    -- Readers look at the buckets of the last two windows by the clock, and a bucket's time
    -- is its events' arrival, before this write: past TREND_TTL no reader sees them.
    redis.call('EXPIRE', log, TREND_TTL)
  end
end

local function subtract_trending(entry, bucket)
  local parts = {}
  for part in string.gmatch(entry, '[^\t]+') do parts[#parts + 1] = part end
  local weight_text, item = parts[2], parts[3]
  for scope in string.gmatch(parts[4], '[^\31]+') do
    local weights, counts = tkey(bucket, scope), tnkey(bucket, scope)
    if redis.call('EXISTS', counts) == 1 then
      if redis.call('HINCRBY', counts, item, -1) <= 0 then
        redis.call('HDEL', counts, item)
        redis.call('HDEL', weights, item)
      else
        redis.call('HINCRBYFLOAT', weights, item, '-' .. weight_text)
      end
      bump_trending(counts, bucket, scope)
      local left, versions = redis.call('PTTL', counts), tvkey(bucket)
      if redis.call('PTTL', versions) < left then redis.call('PEXPIRE', versions, left) end
      redis.call('SADD', TRENDING_CHANGED, scope)
    end
  end
end

local function apply_item_event(user, item, etype, ts, ts_text, weight, target, target_mark,
                                 arrival, amount, affinity_text)
  local history, affinity = ukey(user, 'history'), ukey(user, 'affinity')
  if etype == 'purchase' then redis.call('SADD', ukey(user, 'bought'), item) end
  if etype == 'hide' then
    redis.call('SADD', ukey(user, 'hidden'), item)
  elseif UNHIDING[etype] then
    redis.call('SREM', ukey(user, 'hidden'), item)
  end
  -- Every item the user touched lately, so lists never show it again (MemoryState mirrors).
  local seen_items = ukey(user, 'seen_items')
  local at = math.floor(ts)  -- whole seconds in the user's sorted sets (MemoryState says why)
  zwrite(seen_items, redis.call('ZADD', seen_items, 'GT', at, item))
  zwrite(seen_items, -redis.call('ZREMRANGEBYSCORE', seen_items, '-inf', '(' .. (ts - SEEN_WINDOW)))
  trim(seen_items, SEEN_CAP)
  if SOCIAL_ACTIONS[etype] then
    local actions = ukey(user, 'actions')
    zwrite(actions, redis.call('ZADD', actions, at, etype .. '\t' .. item))
    trim(actions, ACTIONS_SIZE)
  end
  if etype == 'share' and target ~= '' and target ~= user then
    redis.call('SADD', ukey(user, 'outbox'), target)
    affect('share', target, target_mark, user, item, ts_text, arrival)
  end

  -- The affinity Python planned (models/state/plan.py touch); an item at zero leaves history.
  if tonumber(affinity_text) > 0 then
    zwrite(history, redis.call('ZADD', history, 'GT', at, item))
    redis.call('HSET', affinity, item, affinity_text)
  else
    zwrite(history, -redis.call('ZREM', history, item))
    redis.call('HDEL', affinity, item)
  end
  for _, evicted in ipairs(trim(history, HISTORY)) do redis.call('HDEL', affinity, evicted) end

  if weight > 0 then
    add_popularity(item, amount)
  end
end

-- amount: [amount, at or below what the sum counts as zero] (MemoryState._subtract_popularity).
local function subtract_popularity(item, amount)
  if not redis.call('ZSCORE', POPULARITY, item) then return end
  local value = tonumber(redis.call('ZINCRBY', POPULARITY, '-' .. amount[1], item))
  if value <= tonumber(amount[2]) then redis.call('ZREM', POPULARITY, item) end
end

-- The dedupe window (models/state/seen.py SeenEvents): digest -> "ts" or, for an event that
-- added to popularity, "ts<TAB>weight<TAB>item"; field "" holds the floor, the time of the
-- latest event trimmed away. Each entry's time as a number and as the text Python printed.
local function seen_time(entry)
  local tab = string.find(entry, '\t', 1, true)
  local text = tab and string.sub(entry, 1, tab - 1) or entry
  return tonumber(text), text, tab
end

-- An event's entry: its time, and the weight and item of one that adds to popularity.
local function seen_entry(etype, item, ts_text, weight_text)
  if etype == 'follow' or etype == 'unfollow' or item == '' or tonumber(weight_text) <= 0 then
    return ts_text
  end
  return ts_text .. '\t' .. weight_text .. '\t' .. item
end

-- Back to the DEDUPE latest events (and those sharing the oldest kept time) once there are
-- more than SEEN_TRIM_AT (SeenEvents._trim); a hash has no order, so this sorts it. Returns
-- the oldest time kept, or nil if nothing was trimmed.
local function trim_seen(key)
  if redis.call('HLEN', key) <= SEEN_TRIM_AT then return end
  local flat = redis.call('HGETALL', key)
  local times = {}
  for k = 1, #flat, 2 do
    if flat[k] ~= '' then times[#times + 1] = seen_time(flat[k + 1]) end
  end
  if #times <= SEEN_TRIM_AT then return end
  table.sort(times)
  local cutoff = times[#times - DEDUPE + 1]
  local gone, floor, floor_text = {}, nil, nil
  for k = 1, #flat, 2 do
    if flat[k] ~= '' then
      local ts, text = seen_time(flat[k + 1])
      if ts < cutoff then
        gone[#gone + 1] = flat[k]
        if floor == nil or ts > floor then floor, floor_text = ts, text end
      end
    end
  end
  for first = 1, #gone, 1000 do  -- (unpack's stack is limited)
    redis.call('HDEL', key, unpack(gone, first, math.min(first + 999, #gone)))
  end
  if floor_text then redis.call('HSET', key, '', floor_text) end
end

-- Records an event in its user's window (SeenEvents.add; whether it is news was planned).
local function record_seen(key, digest, entry)
  redis.call('HSET', key, digest, entry)
  trim_seen(key)
end

-- The user's logged events (SeenEvents.logged): oldest first, ties in the hash's order, each
-- {digest, ts text, "weight<TAB>item"}.
local function logged_events(user)
  local flat = redis.call('HGETALL', ukey(user, 'seen_events'))
  local found = {}
  for k = 1, #flat, 2 do
    local ts, ts_text, tab = seen_time(flat[k + 1])
    if tab and flat[k] ~= '' then
      found[#found + 1] = { flat[k], ts_text, string.sub(flat[k + 1], tab + 1), ts = ts,
        n = #found }
    end
  end
  table.sort(found, function(a, b) return a.ts < b.ts or (a.ts == b.ts and a.n < b.n) end)
  return found
end

-- Remove a user from every derived state (MemoryState.erase); returns counts only.
local function erase(user, withdraw, amounts)
  local items = redis.call('ZRANGE', ukey(user, 'history'), 0, -1)
  local logged = 0
  for _, event in ipairs(logged_events(user)) do
    local entry = event[3]
    local tab = string.find(entry, '\t', 1, true)
    if amounts then subtract_popularity(string.sub(entry, tab + 1), amounts[event[1]]) end
    if withdraw then
      redis.call('RPUSH', WITHDRAWN, string.sub(entry, tab + 1) .. '\t' ..
        string.sub(entry, 1, tab - 1) .. '\t' .. event[2])
    end
    logged = logged + 1
  end
  -- Only buckets that still exist are touched (they expire two windows after their writes).
  local trend_log = redis.call('ZRANGE', ukey(user, 'trend_log'), 0, -1, 'WITHSCORES')
  for k = 1, #trend_log, 2 do subtract_trending(trend_log[k], tonumber(trend_log[k + 1])) end
  local following = redis.call('SMEMBERS', ukey(user, 'following'))
  local followers = redis.call('SMEMBERS', ukey(user, 'followers'))
  local edges, others = {}, {}
  for _, u in ipairs(following) do edges[u] = true end
  for _, u in ipairs(followers) do edges[u] = true end
  local edge_count = 0
  for _ in pairs(edges) do edge_count = edge_count + 1 end
  for _, field in ipairs({ 'outbox', 'senders', 'following', 'followers' }) do
    for _, other in ipairs(redis.call('SMEMBERS', ukey(user, field))) do others[other] = true end
  end
  local sorted = {}  -- a fixed order, so the relay list does not depend on Lua's hashing
  for other in pairs(others) do sorted[#sorted + 1] = other end
  table.sort(sorted)
  for _, other in ipairs(sorted) do affect('forget', other, '', user, '', '', '') end
  for _, field in ipairs(USER_FIELDS) do redis.call('DEL', ukey(user, field)) end
  return { #items, logged, edge_count }
end

-- READ_RECENT 0 reads only what excludes items (seen, bought, hidden): the learner's read.
-- A read of a key of the wrong type (the user of a refused poison event) marks the view
-- broken instead of failing the call: "views" leaves such a user out, "read" fails.
local broken = false
local function get(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then
    broken = true
    return {}
  end
  return reply
end
local function read_view(user)
  broken = false
  local recent, affinities, inbox, followees = {}, {}, {}, {}
  if READ_RECENT > 0 then
    recent = get('ZREVRANGE', ukey(user, 'history'), 0, READ_RECENT - 1)
    inbox = get('ZREVRANGE', ukey(user, 'inbox'), 0, READ_RECENT - 1, 'WITHSCORES')
    -- Social proof: shares received, and (some of) the people the user follows, whose
    -- recent actions the caller reads from their own slots.
    followees = get('SRANDMEMBER', ukey(user, 'following'), FOLLOWEES_READ)
  end
  if #recent > 0 then affinities = get('HMGET', ukey(user, 'affinity'), unpack(recent)) end
  local view = { user, recent, affinities, get('ZRANGE', ukey(user, 'seen_items'), 0, -1),
    get('SMEMBERS', ukey(user, 'bought')), get('SMEMBERS', ukey(user, 'hidden')), inbox,
    followees }
  if broken then return nil end
  return view
end

local outcomes = {}
-- A key of the event's own user or target holding another type than the script writes would
-- fail the script half way through the event (Redis does not roll a script back), so such an
-- event is refused before anything of it is written. Checked once per batch per key.
local USER_KEY_TYPES = { history = 'zset', affinity = 'hash', seen_events = 'hash',
  trend_log = 'zset', bought = 'set', hidden = 'set', following = 'set', followers = 'set',
  inbox = 'zset', outbox = 'set', senders = 'set', actions = 'zset', seen_items = 'zset' }
local checked = {}
local function wrong_types(name, types)
  if checked[name] == nil then
    checked[name] = false
    for field, kind in pairs(types) do
      local found = redis.call('TYPE', name .. field).ok
      if found ~= 'none' and found ~= kind then checked[name] = true end
    end
  end
  return checked[name]
end
-- A target in another slot is checked when its change is delivered ("relay").
local function corrupt(user, target)
  return wrong_types(stems[user], USER_KEY_TYPES)
    or (target ~= '' and here(target) and wrong_types(stems[target], USER_KEY_TYPES))
end

local to_read = {}
local ranges = {}
if mode == 'process' then
  -- Offsets ride with the state they produce (streams/store/offsets.py OffsetRange): first check that
  -- no partition's stored offset is behind what the consumer expected (Redis lost writes), in
  -- which case nothing is applied and the consumer goes back; the new offsets are written
  -- after the events, in this same atomic script.
  local off = FIRST + 1
  local behind = {}
  for r = 0, (tonumber(ARGV[off] or '0') or 0) - 1 do
    local b = off + 1 + r * 6
    local offsets, part, expected = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 4])
    ranges[#ranges + 1] = { offsets, part, tonumber(ARGV[b + 3]), tonumber(ARGV[b + 5]) }
    local stored = redis.call('HMGET', offsets, part, part .. ':published')
    local applied = tonumber(stored[1] or '-1')
    if expected >= 0 and applied < expected then
      behind[#behind + 1] = { part, applied, tonumber(stored[2] or '-1') }
    end
  end
  if #behind > 0 then return { {}, '', cjson.encode(behind) } end
  local at = off + 1 + (tonumber(ARGV[off] or '0') or 0) * 6
  local events = N > 0 and cjson.decode(ARGV[FIRST]) or {}
  for _, ev in ipairs(events) do
    stems[ev[3]] = ev[12]
    if ev[5] ~= '' then stems[ev[5]] = ev[13] end
  end
  -- The plan holds while nothing changed what it read (every step bumps the version), no
  -- event it applies is in the window, and those it applies are not refused here, nor the
  -- other way round.
  local version = ARGV[at] .. 'version'
  if N > 0 and (redis.call('GET', version) or '0') ~= ARGV[at + 5] then
    return { 'replan', '' }
  end
  local gates, moved = {}, false
  for e, ev in ipairs(events) do
    -- Refused whatever the window says: an erased user's event (3), or one whose keys hold
    -- the wrong type (2, USER_KEY_TYPES above).
    local gate = erased_since(ev[10], tonumber(ev[9])) and 3 or (corrupt(ev[3], ev[5]) and 2 or 0)
    local applies = ev[16] == 'a' or ev[16] == 't'
    if (gate ~= 0 and applies) or (gate == 0 and not applies and ev[16] ~= 'h') then moved = true end
    -- A plan from facts the store kept knows the window's floor, not its entries.
    if gate == 0 and applies and redis.call('HEXISTS', ukey(ev[3], 'seen_events'), ev[1]) == 1 then
      moved = true
    end
    gates[e] = gate
  end
  if moved then return { 'replan', cjson.encode(gates) } end
  open_partition(at)
  local known, stored = open_popularity(at + 2, true)
  if not known then return { 'landmark', stored } end
  for e = 0, N - 1 do
    local ev = events[e + 1]
    local event_id, etype, user = ev[1], ev[2], ev[3]
    local item, target = ev[4], ev[5]
    local ts_text, weight_text = ev[6], ev[7]
    local ts, weight = tonumber(ts_text), tonumber(weight_text)
    local verdict = ev[16]
    if gates[e + 1] ~= 0 then
      outcomes[#outcomes + 1] = gates[e + 1]  -- the pipeline dead-letters a refused one (2)
    elseif verdict == 'h' then
      outcomes[#outcomes + 1] = 0  -- applied already: a replay, not news
    else
      record_seen(ukey(user, 'seen_events'), event_id, seen_entry(etype, item, ts_text, weight_text))
      local fresh = verdict == 'a'  -- else older than the user's whole window: not news
      if not fresh then
        outcomes[#outcomes + 1] = 0
      elseif etype == 'follow' then
        redis.call('SADD', ukey(user, 'following'), target)
        affect('follow', target, ev[11], user, '', ts_text, ev[9])
      elseif etype == 'unfollow' then
        redis.call('SREM', ukey(user, 'following'), target)
        affect('unfollow', target, ev[11], user, '', ts_text, ev[9])
      elseif item ~= '' then
        apply_item_event(user, item, etype, ts, ts_text, weight, target, ev[11], ev[9], ev[15],
          ev[17])
        if weight > 0 then
          add_trending(user, event_id, item, weight_text, ev[8], tonumber(ev[9]), ev[14])
        end
      end
      if fresh then outcomes[#outcomes + 1] = 1 end
    end
  end
  finish_trending()
  if N > 0 then redis.call('INCR', version) end
  for _, r in ipairs(ranges) do
    local offsets, part, last, published = r[1], r[2], r[3], r[4]
    if last > tonumber(redis.call('HGET', offsets, part) or '-1') then
      redis.call('HSET', offsets, part, last)
    end
    local field = part .. ':published'
    if published > tonumber(redis.call('HGET', offsets, field) or '-1') then
      redis.call('HSET', offsets, field, published)
    end
  end
elseif mode == 'plan' then
  -- What models/state/plan.py needs of the step's users, and the version the step checks.
  -- A user whose keys hold the wrong type gets empty facts: the step refuses their events.
  local facts = {}
  for _, u in ipairs(cjson.decode(ARGV[FIRST])) do
    local user, digests = u[1], u[3]
    stems[user] = u[2]
    local seen = ukey(user, 'seen_events')
    local window = {}
    -- A trim within the step needs every entry's time; otherwise those of its events suffice.
    local size = redis.pcall('HLEN', seen)
    if type(size) ~= 'number' then size = 0 end
    if size + #digests > SEEN_TRIM_AT then
      window = get('HGETALL', seen)
    else
      digests[#digests + 1] = ''
      local found = get('HMGET', seen, unpack(digests))
      for k, digest in ipairs(digests) do
        if found[k] then
          window[#window + 1] = digest
          window[#window + 1] = found[k]
        end
      end
    end
    facts[#facts + 1] = { user, get('ZRANGE', ukey(user, 'history'), 0, -1, 'WITHSCORES'),
      get('HGETALL', ukey(user, 'affinity')), window, size }
  end
  return cjson.encode({ redis.call('GET', ARGV[FIRST + 1] .. 'version') or '0', facts })
elseif mode == 'erase' or mode == 'erase+withdraw' then
  local users = cjson.decode(ARGV[FIRST])
  for _, u in ipairs(users) do stems[u[1]] = u[2] end
  for other, stem in pairs(cjson.decode(ARGV[FIRST + 1])) do stems[other] = stem end
  -- Everyone the users' sets name must have a stem before anything is written.
  local missing = {}
  for _, u in ipairs(users) do
    for _, field in ipairs({ 'outbox', 'senders', 'following', 'followers' }) do
      for _, other in ipairs(redis.call('SMEMBERS', ukey(u[1], field))) do
        if stems[other] == nil then missing[#missing + 1] = other end
      end
    end
  end
  if #missing > 0 then return { 'missing', missing } end
  open_partition(FIRST + 2)
  local known, stored = open_popularity(FIRST + 4, false)
  if not known then return { 'landmark', stored } end
  -- No landmark stored: popularity holds nothing to take out (no amounts are handed over).
  local amounts = ARGV[FIRST + 4] ~= '' and cjson.decode(ARGV[FIRST + 5]) or nil
  for _, u in ipairs(users) do
    for _, event in ipairs(amounts and logged_events(u[1]) or {}) do
      if amounts[event[1]] == nil then return { 'stale' } end
    end
  end
  local reports = {}
  for _, u in ipairs(users) do
    reports[#reports + 1] = erase(u[1], mode == 'erase+withdraw', amounts)
  end
  redis.call('INCR', PSTEM .. 'version')  -- a plan read before this is void
  return { reports, cjson.encode(redis.call('LRANGE', RELAY, 0, -1)) }
elseif mode == 'relay' then
  local source, stem = ARGV[FIRST], ARGV[FIRST + 2]
  RELAY, RELAYED = stem .. 'relay', stem .. 'relayed'
  local done = tonumber(redis.call('HGET', RELAYED, source) or '0')
  local skipped, appended = 0, {}
  for _, raw in ipairs(cjson.decode(ARGV[FIRST + 1])) do
    local e = cjson.decode(raw)
    if e[1] > done then
      done = e[1]
      stems[e[3]] = e[4]
      -- A target erased since the event arrived, or whose keys hold the wrong kind of value
      -- (like a poison event's user), gets nothing; an erased one is taken back out of the
      -- user's set that names them, in the user's slot.
      if e[2] ~= 'forget' and e[2] ~= 'unname' and erased_since(e[5], tonumber(e[9])) then
        skipped = skipped + 1
        if NAMING[e[2]] and e[10] then  -- (entries written before the user's stem had none)
          appended[#appended + 1] = append({ 0, 'unname', e[6], e[10], '', e[3], NAMING[e[2]],
            '', '', e[4] })
        end
      elseif wrong_types(e[4], USER_KEY_TYPES) then
        skipped = skipped + 1
      else
        to_target(e[2], e[3], e[6], e[7], e[8])
      end
    end
  end
  redis.call('HSET', RELAYED, source, done)
  return { skipped, cjson.encode(appended) }
else
  for _, u in ipairs(cjson.decode(ARGV[FIRST])) do
    stems[u[1]] = u[2]
    to_read[#to_read + 1] = u[1]
  end
end

local views = {}
for _, user in ipairs(to_read) do
  local view = read_view(user)
  if view then
    views[#views + 1] = view
  elseif mode == 'read' then
    return redis.error_reply('WRONGTYPE a key of a read user holds the wrong kind of value')
  end
end
-- One JSON string instead of nested replies: the client decodes it in one C call (orjson)
-- where a RESP tree of ~1,000 elements per user costs far more to parse. Scores stay the
-- exact strings Redis printed. (cjson writes an empty array as {}: the reader allows it.)
local pending = RELAY and redis.call('LRANGE', RELAY, 0, -1) or {}
return { outcomes, cjson.encode({ views, pending }) }
