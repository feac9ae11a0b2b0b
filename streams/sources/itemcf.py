"""Item-CF in Redis (:class:`RedisItemCF`): the learner keeps the counts and neighbour lists.

The maths is :mod:`models.cooccurrence`; this module keeps its state where every worker can
read it:

* ``u:{user}:cf_window``: JSON of the user's window (``[[item, affinity, ts], …]``), per-user
  state written only by the learner that owns the user's partition;
* ``i:{item}:dot`` (zset other item -> Σ a_ui·a_uj), in the slot of the item's home
  (streams/keys.py), and per home ``norm2`` (zset of its items -> Σ a_ui²) and ``cf_norms``
  (hash: total, count of their norms above zero; the learned shrinkage sums every home's):
  shared sums, changed only by increments, so learners of several partitions merge;
* ``i:{item}:sim`` (zset neighbour -> cosine, top ``neighbours``), in the item's home too:
  what the publish path reads for the user's recent items.

A step (:func:`steps`: consecutive events of one partition's users, at most
:data:`STEP_EVENTS`): the users' windows are read (one ``MGET``), the events applied to them
in Python (:func:`models.cooccurrence.window_step`, deltas summed over the step), and one step
in the users' slot writes the windows and records the events learnt, handing each item's home
its increments, applied there once (streams/sources/itemcf_step.py): a crash never leaves the
counts and the windows disagreeing. Python scores the changed pairs
(:func:`models.cooccurrence.similarities`) from the sums the homes report and stores them in
the neighbour lists, a step per home.

A retried step (its reply lost to a client timeout while Redis applied it) must not count its
events twice: the step is refused if it holds an event already learnt, and the learner drops
those events and computes the step again from the windows that now include them.

Erasure: a step is refused if it holds a user whose erasure mark appeared after the learner
checked (the mark is set before anything is erased), and the learner drops them and tries
again; erasing withdraws the user's window from the counts and deletes it.

>>> encode_window({"a": (2.0, 10.0)})
b'[["a",2.0,10.0]]'
>>> decode_window(encode_window({"a": (2.0, 10.0)}))
{'a': (2.0, 10.0)}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from models.cooccurrence import Deltas, Window, item_events, similarities, window_step, withdraw
from models.events import Event
from models.recommend import Candidate, Source
from models.shrinkage import ShrinkageEstimator
from models.state import StateParams
from streams.keys import Keys, decoded, user_strings
from streams.sources.handoff import Handoffs, Refused
from streams.sources.itemcf_step import Sums, count_writes, encode_window, neighbour_writes, sums
from streams.sources.progress import Marks, learnt_keys, learnt_member
from streams.sources.writes import Step, partition_runs

#: Events per step at most. Redis runs one script at a time, so a long one delays the publish
#: path's batches: an event changes up to twice its window's size in pairs, each a few
#: sorted-set writes, spread over the items' homes. A step costs about six round trips
#: whatever its length: in the bench's stage profile, steps of 20 events took 0.30 ms an event
#: and of 100 0.22 ms, with Redis's longest script 2-4 ms either way.
STEP_EVENTS = 100

__all__ = ["STEP_EVENTS", "RedisItemCF", "Sums", "decode_window", "encode_window", "steps"]


def decode_window(raw: bytes | str | None) -> Window:
    if not raw:
        return {}
    return {item: (float(a), float(ts)) for item, a, ts in orjson.loads(raw)}


def steps(keys: Keys, events: Iterable[Event]) -> list[list[Event]]:
    """The steps the learner cuts a batch into: its item events, in runs of consecutive events
    of one partition's users (a step is in their slot; the learner's batches come a partition
    at a time), each run in steps of at most :data:`STEP_EVENTS`."""
    return [
        run[n : n + STEP_EVENTS]
        for _, run in partition_runs(keys, list(item_events(events)))
        for n in range(0, len(run), STEP_EVENTS)
    ]


class RedisItemCF:
    """Item co-occurrence and similarity, learnt by the learner, read by the publish path."""

    source = Source.ITEM_CF

    #: Records the events it learns as learnt (``u:{user}:learnt``) in the same atomic step
    #: as its counts, so the learner runs it after the other sources (streams.sources).
    commits_learnt = True

    def __init__(self, client: aioredis.Redis, keys: Keys, params: StateParams) -> None:
        self.client, self.keys, self.params = client, keys, params
        self.handoffs = Handoffs(client, keys, self.source.value, extension="itemcf.lua")

    async def learn(self, events: Sequence[Event], learnt: Marks | None = None) -> None:
        """Learn in :func:`steps`, each recording its events as learnt with the windows."""
        for step in steps(self.keys, events):
            await self._learn_step(step)

    async def _learn_step(self, pending: list[Event]) -> None:
        part = self.keys.partition_of(pending[0].user_id)
        while pending:
            users = list(dict.fromkeys(e.user_id for e in pending))
            windows = await self._windows(users)
            deltas = Deltas()
            for e in pending:
                assert e.item_id is not None
                weight = self.params.weight(e.type)
                window_step(windows[e.user_id], e.item_id, weight, e.ts, self.params, deltas)
            learnt: dict[str, list[Event]] = {}
            for e in pending:
                learnt.setdefault(e.user_id, []).append(e)
            refuse = [["exists", self.keys.erased(u)] for u in users] + [
                ["learnt", *learnt_keys(self.keys, e.user_id), learnt_member(e.event_id)]
                for e in pending
            ]
            try:
                await self._counts(part, windows, deltas, learnt, refuse)
                return
            except Refused as refused:
                # Erased since the learner checked: learn the others' events, theirs never.
                # Learnt already (a retried step Redis had applied): the windows read now hold
                # them, so the rest is computed again from those.
                erased = {users[n] for n in refused.held if n < len(users)}
                again = {n - len(users) for n in refused.held if n >= len(users)}
                pending = [
                    e for n, e in enumerate(pending) if n not in again and e.user_id not in erased
                ]

    async def candidates(
        self,
        user_ids: Sequence[str],
        exclude: Mapping[str, frozenset[str]],
        k: int,
        now: float,
    ) -> dict[str, list[Candidate]]:
        """None: the publish path builds item-CF's candidates from the user's fresh recent
        items and these neighbour lists, so the user's latest event counts at once."""
        return {}

    async def erase(self, user_ids: Sequence[str]) -> dict[str, int]:
        windows = await self._windows(list(dict.fromkeys(user_ids)))
        removed = {u: len(window) for u, window in windows.items()}
        for part, users in self.keys.by_partition(windows).items():
            deltas = Deltas()
            for user in users:
                for item in list(windows[user]):
                    withdraw(windows[user], item, deltas)
            await self._counts(part, {u: windows[u] for u in users}, deltas, {}, [])
        return removed

    async def snapshot(self) -> dict[str, Any]:
        """The counts, lists and windows in the shape of ``Cooccurrence.snapshot`` (tests)."""
        found: dict[str, Any] = {"dot": {}, "sim": {}, "norm2": {}, "windows": {}}
        async for raw in self.client.scan_iter(match=f"{self.keys.prefix}*", count=1000):
            key = decoded(raw)
            _scope, entity, field = self.keys.parse(key)
            if field in ("dot", "sim", "norm2"):
                rows = await self.client.zrange(key, 0, -1, withscores=True)
                scores = {decoded(m): float(s) for m, s in cast(list[tuple[bytes, float]], rows)}
                if field == "norm2":  # each home's items
                    found["norm2"].update(scores)
                else:
                    found[field][entity] = scores
            elif field == "cf_window":
                found["windows"][entity] = decode_window(await self.client.get(key))
        return found

    def shrinkage(self, sums: Sums) -> float:
        """λ: the configured one, or learnt from the norms (``shrinkage_scale > 0``)."""
        if self.params.shrinkage_scale <= 0:
            return self.params.shrinkage
        estimator = ShrinkageEstimator(self.params.shrinkage_scale)
        estimator.total, estimator.count = sums.total, sums.count
        return estimator.value

    async def _windows(self, users: Sequence[str]) -> dict[str, Window]:
        return await user_strings(self.client, self.keys, users, "cf_window", decode_window)

    async def _counts(
        self,
        part: int,
        windows: Mapping[str, Window],
        deltas: Deltas,
        learnt: Mapping[str, Sequence[Event]],
        refuse: list[list[str]],
    ) -> None:
        """The step of partition ``part``'s users and its counts in the items' homes, then
        the neighbour lists of the pairs it changed; raises :class:`Refused` (nothing written)
        if one of ``refuse`` holds."""
        writes = count_writes(self.keys, self.params, part, windows, deltas, learnt)
        reported = await self.handoffs.run([Step(writes, refuse=refuse)])
        found = await sums(self.client, self.keys, deltas, reported)
        # A pair that is gone left the neighbour lists in its home already.
        live = {pair: dot for pair, dot in found.dots.items() if dot is not None}
        scored = similarities(live, found.norm2, self.shrinkage(found))
        if scored:
            lists = neighbour_writes(self.keys, self.params, scored)
            await self.handoffs.run([Step(writes) for writes in lists])
