"""What the learner keeps in Redis besides the sources' own state, one slot per step.

In each partition's slot (its users', streams/keys.py):

- ``u:{user}:learnt`` and ``learnt_prev``: the user's events learnt (their ids' digests, two
  generations: streams/sources/progress.py), a window as long as the worker's dedupe
  window, so a redelivery teaches nothing twice;
- the partition's ``learner`` hash: the last offset learnt of the partition
  (``offset:{topic}:{partition}``, where a restarted learner resumes) and how many entries of
  its ``popularity_withdrawn`` list have been dropped since the list began (``withdrawn``);
- ``popularity_withdrawn``: an erasure's anonymous ``item<TAB>weight<TAB>ts`` entries
  (streams/lua/state.lua), taken out of the learned popularity.

In the ``{learner}`` slot, shared by every partition:

- ``learner``: the newest broker time learnt and the pools' refresh interval (what the worker
  reports as the learner's lag), the stream's learned half-life (``half_life``: the
  estimator's choice, which social proof decays by, and the scores it resumes from:
  models/halflife.py), the most popular items under it (``popular``: JSON ``[at, [[item,
  score], ...]]``, the scores at ``at``, event time: the worker's popular fallback and
  source), and per partition how many withdrawals it has taken (``taken:{partition}``);
- ``popularity_learnt``: each item's decayed popularity under every half-life the estimator
  compares (models/halflife.py ``take_rows``), so a restarted learner goes on from it.

A batch's progress is stored in two steps, the shared one first
(streams/runtime/learner_steps.py, which says how neither counts anything twice). The offsets
are stored after every source has learnt the batch, so Redis holding an offset means it holds
all that was learnt up to it: Redis keeps its writes in order, and a crash loses only the last
of them (AOF fsynced once a second). A learner whose consumer stands past those offsets (Redis
came back older than the learner last saw it, or the group committed further) goes back to them
(:meth:`streams.runtime.learner.Learner.run`), as the worker goes back to the offsets stored
with its state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, cast

import orjson
import redis.asyncio as aioredis

from models.events import Event
from models.halflife import LearnedHalfLife, chosen_half_life
from models.state import PopularView
from streams.keys import Keys, decoded
from streams.runtime.learner_steps import ProgressSteps, Withdrawals
from streams.runtime.pools import PoolStore
from streams.sources.progress import learnt_keys, learnt_member
from streams.store.offsets import partition_number


class LearnerProgress(NamedTuple):
    """What the learner reports with its state: the newest broker time it has learnt, the
    interval its pools are refreshed at (streams/runtime/refresh.py paces it to the lag), and
    the half-life it learned from the stream."""

    event_ts: float
    refresh_s: float | None
    half_life_s: float | None = None
    #: The most popular items under that half-life, their scores at its landmark.
    popular: PopularView | None = None
    #: Users whose pools the learners have computed since the state began: a measure of
    #: work, not state (a step retried after its reply was lost counts its users again).
    refreshed: int = 0


@dataclass
class LearnerState:
    """What the learner keeps in Redis besides the sources' own state."""

    client: aioredis.Redis
    keys: Keys = field(default_factory=Keys)
    dedupe_window: int = 10_000

    def __post_init__(self) -> None:
        self.pools = PoolStore(self.client, self.keys)
        self.steps = ProgressSteps(self.client, self.keys, self.dedupe_window)

    async def unlearnt(self, events: Sequence[Event]) -> list[Event]:
        """The events not learnt yet, in order (one round trip)."""
        if not events:
            return []
        per_user: dict[str, list[str]] = {}
        for event in events:
            per_user.setdefault(event.user_id, []).append(learnt_member(event.event_id))
        async with self.client.pipeline(transaction=False) as pipe:
            for user_id, ids in per_user.items():  # a command per generation and user
                for key in learnt_keys(self.keys, user_id):
                    pipe.smismember(key, ids)
            replies = await pipe.execute()
        learnt = {
            (user_id, member)
            for (user_id, members), current, previous in zip(
                per_user.items(), replies[0::2], replies[1::2], strict=True
            )
            for member, now, before in zip(members, current, previous, strict=True)
            if now or before
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
        refreshed: int = 0,
    ) -> None:
        """Remember the events as learnt (each user's window trimmed, users erased meanwhile
        left out, as their pools are) and the progress: ``ends`` (partition -> the batch's
        last offset in it), the learned ``half_life`` with its changed rows and popular
        items, the ``withdrawn`` taken, and how many users' pools were ``refreshed`` since the
        last mark (streams/runtime/learner_steps.py: the shared step, then each
        partition's)."""
        upto = withdrawn.upto if withdrawn is not None else {}
        await self.steps.shared(newest_arrival, refresh_s, half_life, upto, refreshed)
        await self.steps.partitions(events, ends, upto)

    async def withdrawals(self) -> Withdrawals:
        """The erasures' withdrawals not yet taken out of the learned popularity."""
        return await self.steps.withdrawals()

    async def resume_points(self, partitions: Sequence[str]) -> dict[str, int]:
        """Per partition (``topic:partition``), the offset after the last one learnt, as
        stored with the progress; partitions never learnt are left out."""
        async with self.client.pipeline(transaction=False) as pipe:
            for part in partitions:
                pipe.hget(self.keys.partition(partition_number(part), "learner"), f"offset:{part}")
            raw = await pipe.execute()
        return {p: int(v) + 1 for p, v in zip(partitions, raw, strict=True) if v is not None}

    async def go_back(self, resume: Mapping[str, int]) -> None:
        """Store ``resume`` (partition -> offset) as where to resume: a source found Redis
        older than it wrote (streams/sources/progress.py ``WentBack``), so the learner, or
        whichever learns the partition after a restart, reads those events again (what a
        source holds already, it skips)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for part, offset in resume.items():
                key = self.keys.partition(partition_number(part), "learner")
                pipe.hset(key, f"offset:{part}", offset - 1)
            await pipe.execute()

    async def progress(self) -> LearnerProgress | None:
        """How far the learner is, or None before its first batch."""
        learnt, refresh, half_life, popular, refreshed = await self.client.hmget(
            self.keys.global_("learner"),
            "event_ts",
            "refresh_s",
            "half_life",
            "popular",
            "refreshed",
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
            int(refreshed or 0),
        )

    async def half_life(self, start_s: float) -> LearnedHalfLife:
        """The half-life estimator to go on with: the stored choice and items' popularity,
        or a new one at ``start_s``. Several learners share it (last writer wins): each learns
        from its own partitions, a sample of the same stream."""
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
        learnt = [key for u in user_ids for key in learnt_keys(self.keys, u)]
        return removed + int(await self.client.delete(*learnt))
