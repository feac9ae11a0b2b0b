"""How the learner stores a batch's progress: a shared step, then one step per partition.

The shared step runs in the ``{learner}`` slot (streams/keys.py): what the learner reports,
the learned popularity's rows, and per partition how many of the erasures' withdrawals that
popularity has taken. Each partition's step runs in its users' slot: their learnt ids, the
partition's last offset learnt, and the withdrawals its list drops. Neither reads the
other's keys, so each is one slot on Redis Cluster.

A learner that dies between the two steps restarts from the partitions' older offsets, with
a popularity that already holds the batch. It feeds the popularity only events not learnt
yet, and item-CF's own step marked the batch's item events learnt before either step ran
(streams/sources/itemcf.py), so none is fed twice. The withdrawals below ``taken`` that a
list still holds are skipped (counted from the partition's ``withdrawn``: what its steps
dropped). Offsets and counts only ever move forward, so a step applied twice, or an older
slice learnt again, changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from models.events import Event
from models.halflife import LearnedHalfLife
from models.state import POPULAR_READ
from streams.keys import Keys, decoded
from streams.sources.progress import learnt_generation, learnt_keys, learnt_member
from streams.store.lua import Arg, Lua, command, lua_text, run
from streams.store.offsets import partition_number

#: Raises hash fields to the values given, never lowers them (an older slice learnt again).
_FORWARD = """
local function forward(key, fields)
  for name, value in pairs(fields) do
    if tonumber(value) > tonumber(redis.call('HGET', key, name) or '-1') then
      redis.call('HSET', key, name, value)
    end
  end
end
"""

#: The shared step. KEYS[1]: the learner's hash (the call's route, streams/store/lua.py); ARGV:
#: the learned popularity's rows' key, the newest broker time learnt (0: none), the pools'
#: refresh interval, the learned half-life's choice (JSON, models/halflife.py) or "", the
#: popular items (JSON) or "", JSON {"taken:…": value} (only raised), how many users' pools
#: were computed since the last step (added to ``refreshed``), then item, row, ...
_SHARED = Lua(
    _FORWARD
    + """
if tonumber(ARGV[2]) > 0 then redis.call('HSET', KEYS[1], 'event_ts', ARGV[2]) end
redis.call('HSET', KEYS[1], 'refresh_s', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'half_life', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'popular', ARGV[5]) end
if tonumber(ARGV[7]) > 0 then redis.call('HINCRBY', KEYS[1], 'refreshed', ARGV[7]) end
for i = 8, #ARGV, 2 do redis.call('HSET', ARGV[1], ARGV[i], ARGV[i + 1]) end
forward(KEYS[1], cjson.decode(ARGV[6]))
return 0
"""
)

#: A partition's step. KEYS[1]: the partition's learner hash (the route); ARGV: its withdrawal
#: list, the learnt ids' generation (``learnt_generation``), JSON [[current, previous, erasure
#: mark, [id, ...]] per user] (``learnt_keys``, ``learnt_member``), JSON {"offset:…": the
#: batch's last offset} (only raised), how many withdrawals the list has dropped once this
#: step ran (-1: none taken). A user erased since the learner checked gets no key back (the
#: erasure deleted them).
_PARTITION = Lua(
    lua_text("learnt.lua")
    + _FORWARD
    + """
local generation = tonumber(ARGV[2])
for _, u in ipairs(cjson.decode(ARGV[3])) do
  if redis.call('EXISTS', u[3]) == 0 then learn_ids(u[1], u[2], generation, u[4]) end
end
forward(KEYS[1], cjson.decode(ARGV[4]))
local target = tonumber(ARGV[5])
local done = tonumber(redis.call('HGET', KEYS[1], 'withdrawn') or '0')
if target > done then
  redis.call('LTRIM', ARGV[1], target - done, -1)
  redis.call('HSET', KEYS[1], 'withdrawn', target)
end
return 0
"""
)


@dataclass(frozen=True, slots=True)
class Withdrawals:
    """Erased events to take out of the learned popularity (item, weight, ts), and per
    partition how many of its list's entries are taken once these are (counted since the
    list began): the shared step records it, the partition's step drops them."""

    entries: list[tuple[str, float, float]]
    upto: dict[int, int]

    def __bool__(self) -> bool:
        """Whether a list holds anything: to take, or taken already and still to drop."""
        return bool(self.upto)


#: One partition's step: its users' learnt entries, its offsets, the withdrawals it drops.
_Step = tuple[dict[str, list[Any]], dict[str, int], int]


class ProgressSteps:
    """The two kinds of step, and the withdrawals they take."""

    def __init__(self, client: aioredis.Redis, keys: Keys, dedupe_window: int) -> None:
        self.client, self.keys, self.dedupe_window = client, keys, dedupe_window

    async def shared(
        self,
        newest_arrival: float,
        refresh_s: float,
        half_life: LearnedHalfLife | None,
        upto: Mapping[int, int],
        refreshed: int = 0,
    ) -> None:
        """What the learner reports (``refreshed``: users whose pools it computed since its
        last report), and the learned popularity with the withdrawals it has taken."""
        choice: bytes | str = ""
        popular: bytes | str = ""
        rows: list[str | bytes] = []
        raised: dict[str, int] = {f"taken:{p}": n for p, n in upto.items()}
        if half_life is not None:
            choice = orjson.dumps(half_life.choice())
            at = half_life.newest_ts
            if at is not None:
                popular = orjson.dumps([at, half_life.top(POPULAR_READ, at)])
            rows = [x for item, row in half_life.take_rows().items() for x in (item, row)]
        await _SHARED(
            self.client,
            self.keys.global_("learner"),
            [
                self.keys.global_("popularity_learnt"),
                repr(newest_arrival),
                repr(refresh_s),
                choice,
                popular,
                orjson.dumps(raised),
                refreshed,
                *rows,
            ],
        )

    async def partitions(
        self, events: Sequence[Event], ends: Mapping[str, int], upto: Mapping[int, int]
    ) -> None:
        """Each partition's step, in one round trip: its users' events as learnt, its last
        offset, and the withdrawals taken from its list."""
        steps: dict[int, _Step] = {}

        def step(partition: int) -> _Step:
            return steps.setdefault(partition, ({}, {}, upto.get(partition, -1)))

        for event in events:
            users = step(self.keys.partition_of(event.user_id))[0]
            users.setdefault(event.user_id, []).append(learnt_member(event.event_id))
        for part, last in ends.items():
            step(partition_number(part))[1][f"offset:{part}"] = last
        for partition in upto:
            step(partition)
        # Steps storing no offset first: an event whose record came on another partition than
        # its user's is marked learnt before that offset is stored.
        calls = []
        for partition in sorted(steps, key=lambda p: bool(steps[p][1])):
            users, offsets, taken = steps[partition]
            learnt = [
                [*learnt_keys(self.keys, u), self.keys.erased(u), ids] for u, ids in users.items()
            ]
            args: list[Arg] = [
                self._withdrawn_key(partition),
                learnt_generation(self.dedupe_window),
                orjson.dumps(learnt),
                orjson.dumps(offsets),
                taken,
            ]
            calls.append(_PARTITION.call(self.keys.partition(partition, "learner"), args))
        await run(self.client, calls)

    def _withdrawn_key(self, partition: int) -> str:
        return self.keys.partition(partition, "popularity_withdrawn")

    async def withdrawals(self) -> Withdrawals:
        """The erasures' withdrawals not yet taken: every partition's list, each oldest
        first (each erasure writes to its user's partition's), past what the shared step
        recorded as taken."""
        parts = range(self.keys.partitions)
        reads = [
            read
            for p in parts
            for read in (
                command("LRANGE", self._withdrawn_key(p), 0, -1),
                command("HGET", self.keys.partition(p, "learner"), "withdrawn"),
            )
        ]
        taken_of = [f"taken:{p}" for p in parts]
        replies = await run(
            self.client, [*reads, command("HMGET", self.keys.global_("learner"), *taken_of)]
        )
        taken = replies[-1]
        found, upto = [], {}
        for p in parts:
            raw, dropped = replies[2 * p], int(replies[2 * p + 1] or 0)
            # Taken by a shared step whose partition step did not run: still in the list.
            skip = max(int(taken[p] or 0) - dropped, 0)
            if raw:
                upto[p] = dropped + len(raw)
            for entry in raw[skip:]:
                item, weight, ts = decoded(entry).split("\t")
                found.append((item, float(weight), float(ts)))
        return Withdrawals(found, upto)
