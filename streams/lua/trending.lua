--[[
A trending look's read of one partition's shares (streams/store/trending_looks.py): ARGV
names hashes in the partition's slot; the reply is each one's fields and values, in order.
One call a partition instead of a command a hash: for hashes this small, redis-py spends more
on a command than Redis does reading it. Reads only.
]]
local replies = {}
for n, key in ipairs(ARGV) do replies[n] = redis.call('HGETALL', key) end
return replies
