"""Recommendation sources kept beside the core state: MF, content, user-CF, FBT, followees.

Each wraps a pure model from ``models/`` and keeps its state in Redis, so a restarted or second
worker continues where another stopped. They share one shape (:class:`SourceModel`): learn from
a batch of applied events, propose candidates for some users, erase users.

Who writes what, with several workers: per-user state (``{prefix}u:{user}:…``) is written only
by the worker that owns the user's partition (events are keyed by user id), so a
read-modify-write of it is safe; shared tables are changed only by commutative increments
(counts), or are last-writer-wins where the algorithm tolerates it (MF item rows: concurrent SGD
steps on a shared row, as in Hogwild!).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Protocol, TypeVar

from models.events import Event
from models.hybrid import CANDIDATES_PER_SOURCE  # per user and request, as eval's sources
from models.recommend import Candidate, Pool, Source, source_pools
from streams.metrics import WorkerMetrics
from streams.runtime.outage import wait_out
from streams.sources.handoff import Handoffs
from streams.sources.progress import Marks, Progress, Stale, WentBack, Written
from streams.sources.writes import Step, Writes

log = logging.getLogger(__name__)
T = TypeVar("T")


class SourceModel(Protocol):
    """A recommendation source with its state in Redis."""

    @property
    def source(self) -> Source: ...

    async def learn(self, events: Sequence[Event], learnt: Marks | None = None) -> None:
        """Learn from applied, deduplicated events (in order); one call per batch. ``learnt``:
        per partition of the users, marks to write in the same atomic step as what the batch
        taught their slot (streams/sources/progress.py)."""
        ...

    async def candidates(
        self,
        user_ids: Sequence[str],
        exclude: Mapping[str, frozenset[str]],
        k: int,
        now: float,
    ) -> dict[str, list[Candidate]]:
        """Up to ``k`` candidates per user, best first, none in ``exclude[user]``."""
        ...

    async def erase(self, user_ids: Sequence[str]) -> dict[str, int]:
        """Remove the users from this source's state (their rows and their contributions to
        shared tables); returns, per user, how many stored entries were removed."""
        ...


@dataclass
class SourceSet:
    """The worker's sources, called together, each call timed and isolated.

    A Redis outage is waited out (streams/runtime/outage.py). Any other failure of a source to learn
    or to propose (a bug, a corrupt entry) costs that source for this batch only: the error is
    logged (without ids) and counted, and the lists are published from the other sources.
    Only erasure lets an error through, because the erasure must be retried until every source
    has forgotten the user.
    """

    models: Sequence[SourceModel]
    metrics: WorkerMetrics
    k: int = CANDIDATES_PER_SOURCE
    _marks_only: dict[str, Handoffs] = field(default_factory=dict, init=False, repr=False)
    #: The marks the sources wrote (a Redis that came back older holds less: WentBack).
    written: Written = field(default_factory=Written, init=False, repr=False)

    def forget_written(self) -> None:
        """Forget the marks the sources wrote: Redis went back, and the learner with it."""
        self.written = Written()

    def use_half_life(self, half_life_s: float) -> None:
        """The stream's learned half-life, for the sources that decay by it (a
        ``half_life_s`` attribute: the followees source)."""
        for model in self.models:
            if hasattr(model, "half_life_s"):
                model.half_life_s = half_life_s

    async def learn(self, events: Sequence[Event], progress: Progress | None = None) -> None:
        """Every source learns the batch; those that record it as learnt in their own
        atomic step (``commits_learnt``: item-CF) go last, so a crash after them teaches none
        of it twice. With ``progress`` (the learner), each other source learns only the events
        past its own marks and writes its new marks with its state, so a crash before item-CF
        does not teach them twice either (streams/sources/progress.py)."""
        if not events:
            return
        committing = self.committing
        for wave in ([m for m in self.models if m not in committing], committing):
            calls = []
            for m in wave:
                if progress is None or m in committing:
                    calls.append(self._call(m, "learn", partial(m.learn, events)))
                else:
                    learn = partial(self._learn_new, m, events, progress)
                    calls.append(self._call(m, "learn", learn))
            # Each source finishes its batch before a WentBack is raised (none left running).
            for outcome in await asyncio.gather(*calls, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    self.forget_written()  # the learner reads again from what Redis holds
                    raise outcome

    @cached_property
    def committing(self) -> list[SourceModel]:
        """The sources that record what they learn as learnt in their own atomic step
        (``commits_learnt``: item-CF)."""
        return [m for m in self.models if getattr(m, "commits_learnt", False)]

    def records_learnt(self, event: Event) -> bool:
        """Whether a source records the event as learnt in its own atomic step (item-CF, every
        event on an item): the learner's own mark then leaves it alone."""
        return event.item_id is not None and bool(self.committing)

    async def _learn_new(
        self, model: SourceModel, events: Sequence[Event], progress: Progress
    ) -> None:
        """Learn the events past the source's marks, read at every attempt: a write whose
        reply was lost, or another learner, may have moved them (then :class:`Stale`)."""
        name = model.source.value
        handoffs: Handoffs | None = getattr(model, "handoffs", None)
        while True:
            if handoffs is not None:
                await handoffs.settle()  # a step applied whose reply was lost: its hand-offs
            marks = await progress.marks(name)
            self.written.check(name, marks)
            new = progress.unlearnt(events, marks)
            if not new:
                return
            learnt = progress.learnt(name, marks)
            try:
                await model.learn(new, learnt)
                # Nothing in these events for this source in some partitions (FBT without a
                # cart): their marks move on alone, so where they stand does not depend on how
                # the stream was cut into batches.
                keys = progress.keys
                alone = [
                    Step(Writes(keys, keys.partition_stem(p)), marks)
                    for p, marks in learnt.items()
                    if not marks.committed
                ]
                if alone:
                    await self._handoffs(progress, name).run(alone)
                self.written.remember(name, learnt)
                return
            except Stale:
                continue

    def _handoffs(self, progress: Progress, name: str) -> Handoffs:
        """Steps of the source's kind, for its marks alone."""
        assert progress.client is not None
        if name not in self._marks_only:
            self._marks_only[name] = Handoffs(progress.client, progress.keys, name)
        return self._marks_only[name]

    async def candidates(
        self, exclude: Mapping[str, frozenset[str]], now: float
    ) -> dict[str, dict[Source, Pool]]:
        """Per user in ``exclude``: each source's candidates as a pool
        (:func:`models.recommend.source_pools`; sources with none left out)."""
        users = list(exclude)
        if not users or not self.models:
            return {}
        answers = await asyncio.gather(
            *(
                self._call(m, "candidates", partial(m.candidates, users, exclude, self.k, now))
                for m in self.models
            )
        )
        per_user: dict[str, dict[Source, list[Candidate]]] = {u: {} for u in users}
        for model, answer in zip(self.models, answers, strict=True):
            for user, found in (answer or {}).items():
                if found and user in per_user:
                    per_user[user][model.source] = found
        return {user: source_pools(found) for user, found in per_user.items()}

    async def erase(self, user_ids: Sequence[str]) -> list[int]:
        """Erase the users from every source; per user, how many stored entries went.

        Each source erases the whole batch at once (a few round trips per source, not per
        user), and says what it removed per user, so each receipt can say it for its user.
        """
        removed = [0] * len(user_ids)
        for model in self.models:
            started = time.perf_counter()
            per_user = await model.erase(user_ids)
            for n, user_id in enumerate(user_ids):
                removed[n] += per_user.get(user_id, 0)
            self.metrics.source_seconds.labels(model.source.value, "erase").observe(
                time.perf_counter() - started
            )
        return removed

    async def _call(
        self, model: SourceModel, call: str, work: Callable[[], Awaitable[T]]
    ) -> T | None:
        started = time.perf_counter()
        try:
            # An outage is waited out: skipping it would lose what this batch teaches.
            return await wait_out(work, self.metrics, f"{model.source.value} {call}")
        except (asyncio.CancelledError, WentBack):
            raise
        except Exception as exc:
            self.metrics.source_errors.labels(model.source.value, call).inc()
            log.warning("source %s failed to %s (%s)", model.source.value, call, type(exc).__name__)
            return None
        finally:
            self.metrics.source_seconds.labels(model.source.value, call).observe(
                time.perf_counter() - started
            )
