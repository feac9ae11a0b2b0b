"""What the learner keeps in Redis besides the sources' own state.

- ``u:{user}:learnt``: the ids of the user's events learnt, a window as long as the worker's
  dedupe window, so a redelivery teaches nothing twice;
- the learner's hash (``learner``): the newest broker time learnt and the pools' refresh
  interval (what the worker reports as the learner's lag), the stream's learned half-life
  (``half_life``: the estimator's choice, which social proof decays by, and the scores it
  resumes from: models/halflife.py), and per partition of ``events`` the last offset learnt
  (``offset:{topic}:{partition}``).

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
from typing import Any, NamedTuple

import orjson
import redis.asyncio as aioredis

from models.events import Event
from models.halflife import LearnedHalfLife, chosen_half_life
from streams.keys import Keys
from streams.runtime.pools import PoolStore

#: KEYS: the learner's hash, then per user their learnt-ids key and erasure mark; ARGV: the
#: newest broker time learnt (0: none), the window, JSON [[ts, id, ts, id, ...] per user], the
#: pools' refresh interval in force, JSON {partition: the batch's last offset in it}, the
#: learned half-life's choice (JSON, models/halflife.py) or an empty string.
#: A user erased since the learner checked gets no key back (their erasure deleted it).
_MARK_UNLESS_ERASED = """
for u, flat in ipairs(cjson.decode(ARGV[3])) do
  local learnt, erased = KEYS[2 * u], KEYS[2 * u + 1]
  if redis.call('EXISTS', erased) == 0 then
    for i = 1, #flat, 2 do redis.call('ZADD', learnt, flat[i], flat[i + 1]) end
    redis.call('ZREMRANGEBYRANK', learnt, 0, -tonumber(ARGV[2]) - 1)
  end
end
if tonumber(ARGV[1]) > 0 then redis.call('HSET', KEYS[1], 'event_ts', ARGV[1]) end
redis.call('HSET', KEYS[1], 'refresh_s', ARGV[4])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'half_life', ARGV[6]) end
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
            per_user.setdefault(event.user_id, []).append(event.event_id)
        async with self.client.pipeline(transaction=False) as pipe:
            for user_id, ids in per_user.items():  # one command per user, not per event
                pipe.zmscore(self.keys.user(user_id, "learnt"), ids)
            replies = await pipe.execute()
        learnt = {
            (user_id, event_id)
            for (user_id, ids), scores in zip(per_user.items(), replies, strict=True)
            for event_id, score in zip(ids, scores, strict=True)
            if score is not None
        }
        seen: set[str] = set()
        fresh = []
        for event in events:
            if (event.user_id, event.event_id) not in learnt and event.event_id not in seen:
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
    ) -> None:
        """Remember the events as learnt (each user's window trimmed, users erased meanwhile
        left out, as their pools are) and the progress, with ``ends`` (partition -> the
        batch's last offset in it) and the learned ``half_life``, in one atomic step."""
        per_user: dict[str, list[Any]] = {}
        for event in events:
            per_user.setdefault(event.user_id, []).extend((event.ts, event.event_id))
        users = list(per_user)
        keys = [k for u in users for k in (self.keys.user(u, "learnt"), self.keys.erased(u))]
        await self._mark(
            keys=[self.keys.global_("learner"), *keys],
            args=[
                repr(newest_arrival),
                self.dedupe_window,
                orjson.dumps(list(per_user.values())),
                repr(refresh_s),
                orjson.dumps(dict(ends)),
                "" if half_life is None else orjson.dumps(half_life.choice()),
            ],
        )

    async def resume_points(self, partitions: Sequence[str]) -> dict[str, int]:
        """Per partition (``topic:partition``), the offset after the last one learnt, as
        stored with the progress; partitions never learnt are left out."""
        raw = await self.client.hmget(
            self.keys.global_("learner"), [f"offset:{p}" for p in partitions]
        )
        return {p: int(v) + 1 for p, v in zip(partitions, raw, strict=True) if v is not None}

    async def progress(self) -> LearnerProgress | None:
        """How far the learner is, or None before its first batch."""
        learnt, refresh, half_life = await self.client.hmget(
            self.keys.global_("learner"), "event_ts", "refresh_s", "half_life"
        )
        if learnt is None:
            return None
        return LearnerProgress(
            float(learnt),
            None if refresh is None else float(refresh),
            None if half_life is None else chosen_half_life(orjson.loads(half_life)),
        )

    async def half_life(self, start_s: float) -> LearnedHalfLife:
        """The half-life estimator to go on with: the stored choice, or a new one at
        ``start_s``. Several learners share it (last writer wins): each learns from its own
        partitions, a sample of the same stream."""
        stored = await self.client.hget(self.keys.global_("learner"), "half_life")
        if stored is None:
            return LearnedHalfLife(start_s)
        return LearnedHalfLife.resume(orjson.loads(stored))

    async def erase(self, user_ids: Sequence[str]) -> int:
        """Forget the users' pools and learnt ids; returns how many keys went."""
        if not user_ids:
            return 0
        removed = await self.pools.erase(user_ids)
        learnt = [self.keys.user(u, "learnt") for u in user_ids]
        return removed + int(await self.client.delete(*learnt))
