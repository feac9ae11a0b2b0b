"""Item-CF in Redis (:class:`RedisItemCF`): the learner keeps the counts and neighbour lists.

The maths is :mod:`models.cooccurrence`; this module keeps its state where every worker can
read it:

* ``u:{user}:cf_window``: JSON of the user's window (``[[item, affinity, ts], …]``), per-user
  state written only by the learner that owns the user's partition;
* ``i:{item}:dot`` (zset other item -> Σ a_ui·a_uj) and ``norm2`` (zset item -> Σ a_ui²):
  shared sums, changed only by increments, so learners of several partitions merge;
* ``cf_norms`` (hash: total, count of the norms above zero): learned shrinkage's state;
* ``i:{item}:sim`` (zset neighbour -> cosine, top ``neighbours``): what the publish path reads
  for the user's recent items, in its batch script.

A batch: the users' windows are read (one ``MGET``), the events applied to them in Python
(:func:`models.cooccurrence.window_step`, deltas summed over the batch), and then one script
call (streams/lua/itemcf.lua) writes the windows and adds the increments atomically, so a
crash never leaves the counts and the windows disagreeing, and returns the new sums. Python
scores the changed pairs (:func:`models.cooccurrence.similarities`) and a second call stores
them in the neighbour lists: a crash between the two leaves those pairs' lists one batch old
until the pairs change again.

A retried step (its reply lost to a client timeout while Redis applied it) must not count its
events twice: the script refuses a step holding an event already learnt, and the learner drops
those events and computes the step again from the windows that now include them.

Erasure: the script refuses a batch holding a user whose erasure mark appeared after the
learner checked (the mark is set before anything is erased), and the learner drops them and
tries again; erasing withdraws the user's window from the counts and deletes it.

>>> encode_window({"a": (2.0, 10.0)})
b'[["a",2.0,10.0]]'
>>> decode_window(encode_window({"a": (2.0, 10.0)}))
{'a': (2.0, 10.0)}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from models.cooccurrence import Deltas, Window, item_events, similarities, window_step, withdraw
from models.events import Event
from models.recommend import Candidate, Source
from models.shrinkage import ShrinkageEstimator
from models.state import StateParams
from streams.keys import Keys, decoded, user_strings
from streams.sources.progress import Marks, learnt_entry, learnt_member

#: Events per atomic step at most. Redis runs one script at a time, so a long one delays the
#: publish path's batches: an event changes up to twice its window's size in pairs, each a few
#: sorted-set writes, and a step of 250 events held Redis for tens of milliseconds.
STEP_EVENTS = 20


def encode_window(window: Window) -> bytes:
    return orjson.dumps([[item, a, ts] for item, (a, ts) in window.items()])


def decode_window(raw: bytes | str | None) -> Window:
    if not raw:
        return {}
    return {item: (float(a), float(ts)) for item, a, ts in orjson.loads(raw)}


@dataclass(frozen=True, slots=True)
class Sums:
    """What the counts script returns: each changed pair's dot (None: gone), the norms of
    the items in them, and the sum and count of all norms above zero."""

    dots: dict[tuple[str, str], float | None]
    norm2: dict[str, float]
    total: float
    count: int


@dataclass(frozen=True, slots=True)
class Relearnt:
    """The counts script's refusal: these events of the step are learnt already (their
    :func:`streams.sources.progress.learnt_member`)."""

    members: frozenset[str]


class RedisItemCF:
    """Item co-occurrence and similarity, learnt by the learner, read by the publish path."""

    source = Source.ITEM_CF

    #: Records the events it learns as learnt (``u:{user}:learnt``) in the same atomic step
    #: as its counts, so the learner runs it after the other sources (streams.sources).
    commits_learnt = True

    def __init__(self, client: aioredis.Redis, keys: Keys, params: StateParams) -> None:
        self.client, self.keys, self.params = client, keys, params
        text = resources.files("streams").joinpath("lua/itemcf.lua").read_text()
        self._script = client.register_script(text)

    async def learn(self, events: Sequence[Event], learnt: Marks | None = None) -> None:
        """Learn in steps of at most :data:`STEP_EVENTS` events, each atomic with its marks."""
        found = list(item_events(events))
        for start in range(0, len(found), STEP_EVENTS):
            await self._learn_step(found[start : start + STEP_EVENTS])

    async def _learn_step(self, pending: list[Event]) -> None:
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
            sums = await self._counts(windows, deltas, learnt, refuse_erased=True)
            if isinstance(sums, Sums):
                await self._neighbours(sums)
                return
            if isinstance(sums, Relearnt):
                # Learnt already (a retried step Redis had applied): the windows read now hold
                # them, so the rest is computed again from those.
                pending = [e for e in pending if learnt_member(e.event_id) not in sums.members]
            else:
                # Erased since the learner checked: learn the others' events, theirs never.
                pending = [e for e in pending if e.user_id not in sums]

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
        deltas = Deltas()
        removed = {u: len(window) for u, window in windows.items()}
        for window in windows.values():
            for item in list(window):
                withdraw(window, item, deltas)
        sums = await self._counts(windows, deltas, {}, refuse_erased=False)
        assert isinstance(sums, Sums)
        await self._neighbours(sums)
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
                if field == "norm2":
                    found["norm2"] = scores
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
        windows: Mapping[str, Window],
        deltas: Deltas,
        learnt: Mapping[str, Sequence[Event]],
        *,
        refuse_erased: bool,
    ) -> Sums | set[str] | Relearnt:
        """Write the windows, mark ``learnt`` and add the deltas; if refused (then nothing is
        written), the users erased meanwhile or the events learnt already."""
        users = list(windows)
        pairs = [(pair, amount) for pair, amount in deltas.pairs.items() if amount != 0.0]
        items = list(dict.fromkeys(i for (a, b), _ in pairs for i in (a, b)))
        keys = self.keys
        step = [
            self.params.cooccurrence_cap,
            1 if refuse_erased else 0,
            self.params.dedupe_window,
            [
                [
                    keys.user(user, "cf_window"),
                    keys.erased(user),
                    encode_window(windows[user]).decode() if windows[user] else "",
                    keys.user(user, "learnt"),
                    [learnt_entry(e) for e in learnt.get(user, ())],
                ]
                for user in users
            ],
            [[item, amount] for item, amount in deltas.norms.items()],
            [[a, b, amount] for (a, b), amount in pairs],
            items,
        ]
        reply = await self._script(keys=[], args=["counts", keys.prefix, orjson.dumps(step)])
        if reply and reply[0] == b"learnt":
            return Relearnt(frozenset(decoded(m) for m in reply[1]))
        if reply and not isinstance(reply[0], list):
            return {users[int(n)] for n in reply}
        _, dots, norms, total, count = reply
        return Sums(
            dots={
                pair: None if dot is None else float(dot)
                for (pair, _), dot in zip(pairs, dots, strict=True)
            },
            norm2={i: float(n) for i, n in zip(items, norms, strict=True)},
            total=float(decoded(total)),
            count=int(count),
        )

    async def _neighbours(self, sums: Sums) -> None:
        # A pair that is gone left the neighbour lists in the counts script already.
        live = {pair: dot for pair, dot in sums.dots.items() if dot is not None}
        scored = similarities(live, sums.norm2, self.shrinkage(sums))
        if not scored:
            return
        lists = orjson.dumps([[a, b, s] for (a, b), s in scored.items()])
        await self._script(
            keys=[], args=["neighbours", self.keys.prefix, self.params.neighbours, lists]
        )
