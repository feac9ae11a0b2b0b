"""Online matrix factorisation as a recommendation source, with its parameters in Redis.

:class:`RedisMF` wraps the pure :class:`models.mf.OnlineMF` (River SGD on the logistic loss,
implicit feedback, sampled negatives). Redis holds the truth (the rows, ledgers and sampler
of streams/sources/mf_rows.py), so a restarted or second worker continues where another
stopped; the worker's ``OnlineMF`` is a cache of it. :meth:`RedisMF.learn` costs four round
trips per run of one partition's events, whatever its length (streams/sources/mf_batch.py:
its state read, its step, the item rows it handed off applied, then dropped); erasure is
streams/sources/mf_erasure.py. Who writes which rows, how fresh the cache is, why a restart
continues bit for bit and what bounds memory: docs/sources.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final, cast

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

from models.events import DEFAULT_WEIGHTS, Event, EventType
from models.hybrid import TASTE_MATCH
from models.mf import OnlineMF, Sampling
from models.recommend import Candidate, Source
from streams.keys import Keys, decoded
from streams.sources.handoff import Handoffs
from streams.sources.mf_batch import read_batch_state, write_back
from streams.sources.mf_erasure import erase_users
from streams.sources.mf_rows import items_key, raw_row
from streams.sources.progress import Marks
from streams.sources.writes import Step, Writes, partition_runs

#: Item rows per HSCAN page when (re)loading the item table.
_SCAN_PAGE: Final = 1000


class RedisMF:
    """Online MF over Redis: learns every weighted event, proposes and scores candidates.

    Implements :class:`streams.sources.SourceModel`. ``weights`` maps event types to the
    implicit-feedback weight (default :data:`models.events.DEFAULT_WEIGHTS`; weight 0, e.g.
    follows, teaches nothing and is skipped; negative weights, hides, are explicit negatives).
    The model parameters are those of :class:`models.mf.OnlineMF`; every worker sharing a
    ``Keys`` prefix must use the same ones (a different ``factors`` makes rows undecodable).
    ``clock`` (monotonic seconds) decides when the item table is reloaded.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys | None = None,
        *,
        factors: int = 32,
        learning_rate: float = 0.05,
        regularisation: float = 0.01,
        negatives: int = 4,
        sampling: Sampling = "popularity",
        pool_size: int = 2_000,
        seed: int = 0,
        weights: Mapping[EventType, float] | None = None,
        max_contributions: int = 64,
        refresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_contributions < 1 or refresh_s < 0:
            raise ValueError("max_contributions must be >= 1 and refresh_s >= 0")
        self.client = client
        self.keys = keys or Keys()
        self.weights: dict[EventType, float] = dict(DEFAULT_WEIGHTS if weights is None else weights)
        self.max_contributions = max_contributions
        self.refresh_s = refresh_s
        self._clock = clock
        self._new_model: Callable[[], OnlineMF] = lambda: OnlineMF(
            factors,
            learning_rate,
            regularisation,
            negatives,
            sampling=sampling,
            pool_size=pool_size,
            track_contributions=True,
            seed=seed,
        )
        self.model = self._new_model()
        self._loaded_at: float | None = None
        # learn, erase, reload and scoring all use the one local model between awaits.
        self._lock = asyncio.Lock()
        self._items_key = items_key(self.keys)
        self.handoffs = Handoffs(client, self.keys, Source.MF.value)

    @property
    def source(self) -> Source:
        return Source.MF

    # ---- the item table ----------------------------------------------------------------------
    async def load(self) -> int:
        """(Re)load every item row from Redis into the local matrix; returns how many.

        Rows already known are overwritten in place (their row order is kept); new ones are
        appended in the order Redis returns them.
        """
        async with self._lock:
            return await self._load()

    async def _load(self) -> int:
        count = 0
        cursor: int = 0
        while True:
            cursor, page = await self.client.hscan(self._items_key, cursor, count=_SCAN_PAGE)
            if page:
                rows = cast(dict[bytes, bytes], page)
                self.model.import_rows("item", {decoded(k): raw_row(v) for k, v in rows.items()})
                count += len(page)
            if cursor == 0:
                break
        self._loaded_at = self._clock()
        return count

    async def _ensure_fresh(self) -> None:
        if self._loaded_at is None or self._clock() - self._loaded_at >= self.refresh_s:
            await self._load()

    # ---- learning ----------------------------------------------------------------------------
    def steps(self, events: Sequence[Event]) -> list[tuple[str, str, float]]:
        """(user, item, weight) of each event MF learns from, in order (weight 0 teaches
        nothing)."""
        return [
            (e.user_id, e.item_id, w)
            for e in events
            if e.item_id is not None and (w := self.weights.get(e.type, 0.0)) != 0.0
        ]

    async def learn(self, events: Sequence[Event], learnt: Marks | None = None) -> None:
        """Learn every item event with its weight, in order. Each run of consecutive events
        of one partition's users is a step of its own in their slot (the learner's batches
        come a partition at a time)."""
        found = [e for e in events if self.steps([e])]
        if not found:
            return
        runs = partition_runs(self.keys, found)
        last = {part: n for n, (part, _) in enumerate(runs)}  # each partition's last run
        async with self._lock:
            await self._ensure_fresh()
            try:
                for n, (part, run) in enumerate(runs):
                    marks = None if learnt is None else learnt[part]
                    upto = (
                        None
                        if marks is None or last[part] == n
                        else marks.through(run[-1].event_id)
                    )
                    step = Step(Writes(self.keys, self.keys.partition_stem(part)), marks, upto=upto)
                    await self._learn_run(run, step)
            except BaseException:
                # The local rows may now hold steps Redis never got: start the cache again from
                # Redis on the next call, so a retried batch is learnt exactly once.
                self.model = self._new_model()
                self._loaded_at = None
                raise

    async def _learn_run(self, run: Sequence[Event], step: Step) -> None:
        await self.handoffs.settle()  # item rows an earlier step handed off, before reading
        steps = self.steps(run)
        users = list(dict.fromkeys(u for u, _, _ in steps))
        items = list(dict.fromkeys(i for _, i, _ in steps))
        stored_ledgers = await read_batch_state(self.client, self.keys, self.model, users, items)
        for user_id, item_id, weight in steps:
            self.model.learn(user_id, item_id, weight)
        await write_back(
            self.handoffs, self.model, users, stored_ledgers, self.max_contributions, step
        )

    # ---- candidates and scores ---------------------------------------------------------------
    async def candidates(
        self,
        user_ids: Sequence[str],
        exclude: Mapping[str, frozenset[str]],
        k: int,
        now: float,
    ) -> dict[str, list[Candidate]]:
        """Each user's top ``k`` items over the whole local item matrix (the users' scores in
        a few matrix products: :meth:`OnlineMF.top_k_many`), scores as logits. Users without a
        stored row (no positive or negative event learnt yet) get ``[]``: their initial
        factors are noise. ``now`` is unused: MF has no notion of time (recency lives in the
        other sources)."""
        del now
        unique = list(dict.fromkeys(user_ids))
        result: dict[str, list[Candidate]] = {u: [] for u in unique}
        if not unique or k <= 0:
            return result
        async with self._lock:
            await self._ensure_fresh()
            raws = await self.client.mget([self.keys.user(u, "mf") for u in unique])
            rows = {u: raw_row(raw) for u, raw in zip(unique, raws, strict=True) if raw}
            self.model.import_rows("user", rows)
            try:
                best = self.model.top_k_many(list(rows), k, exclude)
            finally:
                for user_id in rows:
                    self.model.forget_user(user_id)
        for user_id, top in best.items():
            result[user_id] = [Candidate(item, s, TASTE_MATCH) for item, s in top]
        return result

    async def score(self, user_id: str, item_ids: Sequence[str]) -> npt.NDArray[np.float64]:
        """Logits for ``item_ids`` in order (0 for an unknown user or item): lets the assembly
        score other sources' candidates with MF. One GET and one gathered matrix product."""
        return (await self.score_many({user_id: item_ids}))[user_id]

    async def score_many(
        self, requests: Mapping[str, Sequence[str]]
    ) -> dict[str, npt.NDArray[np.float64]]:
        """:meth:`score` for several users in one round trip (MGET of their rows)."""
        users = list(requests)
        if not users:
            return {}
        async with self._lock:
            await self._ensure_fresh()
            rows = await self.client.mget([self.keys.user(u, "mf") for u in users])
            scores: dict[str, npt.NDArray[np.float64]] = {}
            for user_id, raw in zip(users, rows, strict=True):
                if raw is None:
                    scores[user_id] = np.zeros(len(requests[user_id]), dtype=np.float64)
                    continue
                self.model.import_rows("user", {user_id: raw_row(raw)})
                scores[user_id] = self.model.score(user_id, requests[user_id])
                self.model.forget_user(user_id)
        return scores

    # ---- erasure -----------------------------------------------------------------------------
    async def erase(self, user_ids: Sequence[str]) -> dict[str, int]:
        """Delete the users' rows and ledgers and subtract each ledger from the current shared
        item rows (an approximate undo, see streams/sources/mf_erasure.py). Five round trips
        per partition of the users; returns per user the stored entries removed (a row
        counts one, each ledger entry one)."""
        users = list(dict.fromkeys(user_ids))
        if not users:
            return {}
        async with self._lock:
            return await erase_users(self.handoffs, self.model, users)
