"""What the learner keeps in Redis besides the sources' own state.

- ``u:{user}:learnt``: the user's events learnt (their ids' digests:
  :func:`streams.sources.progress.learnt_entry`), a window as long as the worker's dedupe
  window, so a redelivery teaches nothing twice;
- the learner's hash (``learner``): the newest broker time learnt and the pools' refresh
  interval (what the worker reports as the learner's lag), the stream's learned half-life
  (``half_life``: the estimator's choice, which social proof decays by, and the scores it
  resumes from: models/halflife.py), and per partition of ``events`` the last offset learnt
  (``offset:{topic}:{partition}``), and the most popular items under that half-life
  (``popular``: JSON ``[at, [[item, score], ...]]``, the scores at ``at``, event time): the
  worker's popular fallback and source;
- ``popularity_learnt``: each item's decayed popularity under every half-life the estimator
  compares (models/halflife.py ``take_rows``), so a restarted learner goes on from it;
- ``popularity_withdrawn``: an erasure's anonymous ``item<TAB>weight<TAB>ts`` entries
  (streams/lua/state.lua), taken out of that popularity by the next step that stores it.

The offsets are written after every source has learnt the batch, so Redis holding an offset
means it holds all that was learnt up to it: Redis keeps its writes in order, and a crash loses
only the last of them (AOF fsynced once a second). A learner whose consumer stands past those
offsets (Redis came back older than the learner last saw it, or the group committed further)
goes back to them (:meth:`streams.runtime.learner.Learner.run`), as the worker goes back to the
offsets stored with its state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import orjson
import redis.asyncio as aioredis

from models.events import Event
from models.halflife import LearnedHalfLife, chosen_half_life
from models.state import POPULAR_READ, PopularView
from streams.keys import Keys, decoded
from streams.runtime.pools import PoolStore
from streams.sources.progress import learnt_entry, learnt_member

#: KEYS: the learner's hash, the learned popularity's rows, then per user their learnt-ids key
#: and erasure mark, then the partitions' withdrawal lists applied from; ARGV: the newest broker
#: time learnt (0: none), the window, JSON [[score, member, score, member, ...] per user]
#: (``learnt_entry``), the pools' refresh interval in force, JSON {partition: the batch's last
#: offset in it}, the learned half-life's choice (JSON, models/halflife.py) or an empty string,
#: the popular items (JSON) or an empty string, JSON [how many withdrawals were applied from
#: the head of each of those lists], then item, row, item, row...
#: A user erased since the learner checked gets no key back (their erasure deleted it).
_MARK_UNLESS_ERASED = """
local users = cjson.decode(ARGV[3])
for u, flat in ipairs(users) do
  local learnt, erased = KEYS[2 * u + 1], KEYS[2 * u + 2]
  if redis.call('EXISTS', erased) == 0 then
    for i = 1, #flat, 2 do redis.call('ZADD', learnt, flat[i], flat[i + 1]) end
    redis.call('ZREMRANGEBYRANK', learnt, 0, -tonumber(ARGV[2]) - 1)
  end
end
if tonumber(ARGV[1]) > 0 then redis.call('HSET', KEYS[1], 'event_ts', ARGV[1]) end
redis.call('HSET', KEYS[1], 'refresh_s', ARGV[4])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'half_life', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'popular', ARGV[7]) end
for k, taken in ipairs(cjson.decode(ARGV[8])) do
  if taken > 0 then redis.call('LTRIM', KEYS[2 * #users + 2 + k], taken, -1) end
end
for i = 9, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
for part, last in pairs(cjson.decode(ARGV[5])) do
  local field = 'offset:' .. part
  if tonumber(last) > tonumber(redis.call('HGET', KEYS[1], field) or '-1') then
    redis.call('HSET', KEYS[1], field, last)
  end
end
return 0
"""


class LearnerProgress(NamedTuple):
    """What the learner reports with its state: the newest broker time it has learnt, the
    interval its pools are refreshed at (streams/runtime/refresh.py paces it to the lag), and
    the half-life it learned from the stream."""

    event_ts: float
    refresh_s: float | None
    half_life_s: float | None = None
    #: The most popular items under that half-life, their scores at its landmark.
    popular: PopularView | None = None


@dataclass(frozen=True, slots=True)
class Withdrawals:
    """Erased events to take out of the learned popularity (item, weight, ts), and how many
    were read from the head of each partition's list (the step that stores them drops those)."""

    entries: list[tuple[str, float, float]]
    taken: dict[int, int]

    def __bool__(self) -> bool:
        return bool(self.entries)


@dataclass
class LearnerState:
    """What the learner keeps in Redis besides the sources' own state."""

    client: aioredis.Redis
    keys: Keys = field(default_factory=Keys)
    dedupe_window: int = 10_000

    def __post_init__(self) -> None:
        self.pools = PoolStore(self.client, self.keys)
        self._mark = self.client.register_script(_MARK_UNLESS_ERASED)

    async def unlearnt(self, events: Sequence[Event]) -> list[Event]:
        """The events not learnt yet, in order (one round trip)."""
        if not events:
            return []
        per_user: dict[str, list[str]] = {}
        for event in events:
            per_user.setdefault(event.user_id, []).append(learnt_member(event.event_id))
        async with self.client.pipeline(transaction=False) as pipe:
            for user_id, ids in per_user.items():  # one command per user, not per event
                pipe.zmscore(self.keys.user(user_id, "learnt"), ids)
            replies = await pipe.execute()
        learnt = {
            (user_id, member)
            for (user_id, members), scores in zip(per_user.items(), replies, strict=True)
            for member, score in zip(members, scores, strict=True)
            if score is not None
        }
        seen: set[str] = set()
        fresh = []
        for event in events:
            member = learnt_member(event.event_id)
            if (event.user_id, member) not in learnt and event.event_id not in seen:
                seen.add(event.event_id)  # in-batch repeats count once
                fresh.append(event)
        return fresh

    async def mark(
        self,
        events: Sequence[Event],
        newest_arrival: float,
        refresh_s: float,
        ends: Mapping[str, int],
        half_life: LearnedHalfLife | None = None,
        withdrawn: Withdrawals | None = None,
    ) -> None:
        """Remember the events as learnt (each user's window trimmed, users erased meanwhile
        left out, as their pools are) and the progress, with ``ends`` (partition -> the
        batch's last offset in it), the learned ``half_life`` with its changed rows and
        popular items, and that the ``withdrawn`` are applied, in one atomic step."""
        per_user: dict[str, list[Any]] = {}
        for event in events:
            per_user.setdefault(event.user_id, []).extend(learnt_entry(event))
        users = list(per_user)
        keys = [k for u in users for k in (self.keys.user(u, "learnt"), self.keys.erased(u))]
        choice: bytes | str = ""
        popular: bytes | str = ""
        rows: list[str | bytes] = []
        if half_life is not None:
            choice = orjson.dumps(half_life.choice())
            at = half_life.newest_ts
            if at is not None:
                popular = orjson.dumps([at, half_life.top(POPULAR_READ, at)])
            rows = [x for item, row in half_life.take_rows().items() for x in (item, row)]
        taken = withdrawn.taken if withdrawn is not None else {}
        await self._mark(
            keys=[
                self.keys.global_("learner"),
                self.keys.global_("popularity_learnt"),
                *keys,
                *(self._withdrawn_key(p) for p in taken),
            ],
            args=[
                repr(newest_arrival),
                self.dedupe_window,
                orjson.dumps(list(per_user.values())),
                repr(refresh_s),
                orjson.dumps(dict(ends)),
                choice,
                popular,
                orjson.dumps(list(taken.values())),
                *rows,
            ],
        )

    def _withdrawn_key(self, partition: int) -> str:
        return self.keys.partition(partition, "popularity_withdrawn")

    async def withdrawals(self) -> Withdrawals:
        """The erasures' withdrawals not yet applied: every partition's list, each oldest
        first (each erasure writes to its user's partition's)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for p in range(self.keys.partitions):
                pipe.lrange(self._withdrawn_key(p), 0, -1)
            lists = await pipe.execute()
        found, taken = [], {}
        for p, raw in enumerate(lists):
            if raw:
                taken[p] = len(raw)
            for entry in raw:
                item, weight, ts = decoded(entry).split("\t")
                found.append((item, float(weight), float(ts)))
        return Withdrawals(found, taken)

    async def resume_points(self, partitions: Sequence[str]) -> dict[str, int]:
        """Per partition (``topic:partition``), the offset after the last one learnt, as
        stored with the progress; partitions never learnt are left out."""
        raw = await self.client.hmget(
            self.keys.global_("learner"), [f"offset:{p}" for p in partitions]
        )
        return {p: int(v) + 1 for p, v in zip(partitions, raw, strict=True) if v is not None}

    async def progress(self) -> LearnerProgress | None:
        """How far the learner is, or None before its first batch."""
        learnt, refresh, half_life, popular = await self.client.hmget(
            self.keys.global_("learner"), "event_ts", "refresh_s", "half_life", "popular"
        )
        if learnt is None:
            return None
        view = None
        if popular is not None:
            at, items = orjson.loads(popular)
            view = PopularView(tuple((str(i), float(s)) for i, s in items), float(at))
        return LearnerProgress(
            float(learnt),
            None if refresh is None else float(refresh),
            None if half_life is None else chosen_half_life(orjson.loads(half_life)),
            view,
        )

    async def half_life(self, start_s: float) -> LearnedHalfLife:
        """The half-life estimator to go on with: the stored choice and items' popularity,
        or a new one at ``start_s``. Several learners share it (last writer wins): each
        learns from its own partitions, a sample of the same stream."""
        stored = await self.client.hget(self.keys.global_("learner"), "half_life")
        if stored is None:
            return LearnedHalfLife(start_s)
        estimator = LearnedHalfLife.resume(orjson.loads(stored))
        rows = await self.client.hgetall(self.keys.global_("popularity_learnt"))
        estimator.put_rows({decoded(item): cast(bytes, row) for item, row in rows.items()})
        return estimator

    async def erase(self, user_ids: Sequence[str]) -> int:
        """Forget the users' pools and learnt ids; returns how many keys went."""
        if not user_ids:
            return 0
        removed = await self.pools.erase(user_ids)
        learnt = [self.keys.user(u, "learnt") for u in user_ids]
        return removed + int(await self.client.delete(*learnt))
