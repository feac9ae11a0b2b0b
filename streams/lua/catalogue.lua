--[[
The shared catalogue's two atomic steps, in the {content} slot (streams/sources/catalog_follower.py):
its records (a hash, item -> JSON record) and the stream announcing which items changed.

KEYS[1] the change stream: the one key declared, the call's route (streams/store/lua.py).
ARGV[1] mode, then:
  read:  ARGV[2] the last entry a copy applied, ARGV[3] how many entries to read at most (0:
         none). Returns {entries added ever, last entry's id, the entries after ARGV[2] }:
         read together, so a copy knows whether entries it never read were trimmed away.
  write: ARGV[2] the records hash, ARGV[3] the stream's approximate length cap, ARGV[4] how
         many records n, then n pairs item, record; then how many items m to delete and their
         ids; then the stream entries to add (each a JSON list of item ids). Returns {entries
         added ever, last entry's id} right after: a writer whose own entries are the only new
         ones can move its copy past them.
]]

local stream, mode = KEYS[1], ARGV[1]

-- entries-added and last-generated-id of the stream (0, '0-0' when there is none).
local function state()
  if redis.call('EXISTS', stream) == 0 then return 0, '0-0' end
  local info, added, last = redis.call('XINFO', 'STREAM', stream), 0, '0-0'
  for k = 1, #info, 2 do
    if info[k] == 'entries-added' then added = info[k + 1] end
    if info[k] == 'last-generated-id' then last = info[k + 1] end
  end
  return added, last
end

if mode == 'read' then
  local added, last = state()
  local count, entries = tonumber(ARGV[3]), {}
  if count > 0 and added > 0 then
    entries = redis.call('XRANGE', stream, '(' .. ARGV[2], '+', 'COUNT', count)
  end
  return { added, last, entries }
end

local records, cap, at = ARGV[2], ARGV[3], 4
local n = tonumber(ARGV[at])
for k = at + 1, at + 2 * n, 2 do redis.call('HSET', records, ARGV[k], ARGV[k + 1]) end
at = at + 2 * n + 1
local m = tonumber(ARGV[at])
for k = at + 1, at + m do redis.call('HDEL', records, ARGV[k]) end
for k = at + m + 1, #ARGV do
  redis.call('XADD', stream, 'MAXLEN', '~', cap, '*', 'items', ARGV[k])
end
local added, last = state()
return { added, last }
