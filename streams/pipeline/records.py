"""What one micro-batch carries between its steps: the consumed record, where records go,
the batch's summary, a batch between its two halves, and the time spent per stage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from models.events import Event
from streams.metrics import PROCESSING_REASONS, WorkerMetrics
from streams.store import BatchResult, Position

#: Reason labels for events that validated but could not be processed.
PROCESSING_ERROR, WORKER_ERROR = PROCESSING_REASONS


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """A consumed Kafka record, independent of the client library that read it."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: float  # broker timestamp (LogAppendTime on the events topic), Unix seconds


class Publisher(Protocol):
    """Sends one record; awaiting the call enqueues it, awaiting the result confirms delivery."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> Awaitable[Any]: ...


@dataclass
class BatchSummary:
    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    published: int = 0
    dropped_erased: int = 0  # in flight when their user was erased
    #: Partitions whose stored state was behind (see streams.store.OffsetRange): nothing of
    #: the batch was applied or published; the consumer goes back to each one's position.
    rewinds: dict[str, Position] = field(default_factory=dict)


@dataclass
class Applied:
    """A batch past its state step whose lists are not ranked yet (:meth:`BatchProcessor.apply`)."""

    summary: BatchSummary
    result: BatchResult
    #: Per user to publish for: the event that triggers the list, and its record.
    triggers: dict[str, tuple[str, InboundRecord]]
    published_events: list[InboundRecord]  # whose event-to-publish time is observed
    fresh: list[Event]  # applied now, not before: scored against the lists shown until now
    pending: list[Awaitable[Any]]  # dead letters, forwarded shares, analytics, knobs' save
    stages: StageTimer
    started: float  # time.perf_counter() at the batch's start
    now: float
    ahead: asyncio.Future[Any] | None  # the learner's pools, read beside the state step
    learning: asyncio.Future[None] | None  # inline sources learning the batch's fresh events


class StageTimer:
    """Wall time per stage of one batch, summed over the stage's pieces and observed once, so
    ``socialrec_stage_seconds`` has one observation per stage per batch.

    >>> stages = StageTimer()
    >>> with stages("validate"):
    ...     pass
    >>> list(stages.seconds)
    ['validate']
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed

    def observe(self, metrics: WorkerMetrics) -> None:
        for stage, seconds in self.seconds.items():
            metrics.stage_seconds.labels(stage).observe(seconds)
