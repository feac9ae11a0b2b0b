"""The ``events`` topic's consumer: an aiokafka consumer run as a service of the Faust app.

Why not a Faust agent: the agent's per-event stream machinery capped a forwarding agent at a
fraction of raw aiokafka on this machine (``socialrec bench`` measures both), its ``take``
buffer holds each event up to the batch window, and it cannot go back to an earlier offset.
This consumer reads batches with ``getmany`` and keeps its positions **in Redis, with the state
they produced** (streams/store/offsets.py ``OffsetRange``):

* each batch's script checks that the stored applied offset of every partition is the one this
  consumer last saw; if Redis lost writes (a restart without its last second) nothing is
  applied and the consumer goes back to the last published offset + 1, so state and offsets
  roll back together and the events are consumed again;
* when a partition is assigned, consuming starts after its stored *published* offset: events
  applied but not yet published are delivered again, found to be duplicates, and their users'
  lists are published (every applied event gets its publish). A batch's step stores the
  published offset of the batch before it, so a consumer giving a partition up (a rebalance,
  a stop) stores its own last one first, and its successor publishes nothing twice;
* offsets are also committed to Kafka, at most once a second (for lag and for a fresh store).

Every other topic (catalog, shares, privacy requests) stays a Faust agent. The service shares
the app's lifecycle, web server and metrics; ``SOCIALREC_EVENTS_CONSUMER=faust`` runs the agent
instead (without the guarantees above), for comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from mode import Service

from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.pipeline import WORKER_ERROR, Applied, BatchProcessor, InboundRecord
from streams.runtime.heap import Collector
from streams.runtime.outage import wait_out
from streams.runtime.publisher import KafkaPublisher
from streams.security import kafka_client_kwargs
from streams.store import OffsetRange, Position, Store, partition_number

log = logging.getLogger(__name__)


#: How long a stop waits for the batch in hand to be applied, and again for the batches still
#: ranking or waiting for the broker to be acknowledged.
STOP_GRACE_S = 10.0
#: How long a fetch waits for records when none are buffered. It returns as soon as some are
#: (so this adds no latency), and an empty fetch every batch window (5 ms) was part of what an
#: idle worker spent.
IDLE_POLL_MS = 100
#: Kafka's copy of the consumed offsets is committed at most this often (Redis holds the ones
#: that count); the offsets of every batch in between go in one commit.
COMMIT_INTERVAL_S = 1.0


def events_group(settings: Settings) -> str:
    """The consumer group of ``events`` (Faust's agents use ``app_id`` for the other topics)."""
    return f"{settings.app_id}-events"


def offset_ranges(
    records: Sequence[InboundRecord], known: dict[int, Position]
) -> list[OffsetRange]:
    """One range per partition of the batch, with what this consumer knows of it.

    >>> recs = [InboundRecord(b"{}", b"k", "events", 1, o, 0.0) for o in (7, 8, 9)]
    >>> offset_ranges(recs, {1: Position(6, 4)})
    [OffsetRange(partition='events:1', first=7, last=9, expected=6, published=4)]
    """
    spans: dict[int, tuple[int, int]] = {}
    for r in records:
        first, last = spans.get(r.partition, (r.offset, r.offset))
        spans[r.partition] = (min(first, r.offset), max(last, r.offset))
    ranges = []
    for p, (first, last) in sorted(spans.items()):
        position = known.get(p, Position(-1, -1))
        ranges.append(OffsetRange(f"events:{p}", first, last, position.applied, position.published))
    return ranges


class EventsConsumer(Service):
    """Consume ``events`` in batches into the pipeline, positions kept with the state."""

    def __init__(
        self,
        settings: Settings,
        processor: BatchProcessor,
        store: Store,
        metrics: WorkerMetrics,
        publisher: KafkaPublisher | None = None,
        **kwargs: Any,
    ) -> None:
        """``publisher``: the processor's own producer, if it has one, stopped with this."""
        super().__init__(**kwargs)
        self.settings = settings
        self.processor = processor
        self.store = store
        self.metrics = metrics
        self.publisher = publisher
        #: Offsets to commit to Kafka, and the commit in flight (see :meth:`_commit`).
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committing: asyncio.Future[None] | None = None
        self._last_commit = 0.0  # time.monotonic() of the last commit to Kafka
        self._owned: set[TopicPartition] = set()  # for the partitions-owned gauge
        #: The previous batch while its lists are ranked (_send), and the one before it until
        #: the broker has acknowledged its lists (_settle).
        self._sending: asyncio.Future[None] | None = None
        self._settling: asyncio.Future[None] | None = None
        self._running: asyncio.Future[None] | None = None  # the consuming loop
        self.topic = settings.topic("events")
        self.consumer: AIOKafkaConsumer | None = None
        #: Per partition: the applied and published offsets as this consumer knows them.
        self.known: dict[int, Position] = {}
        self._collector = Collector()

    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment()) if self.consumer is not None else set()

    async def on_start(self) -> None:
        s = self.settings
        self.consumer = AIOKafkaConsumer(
            **kafka_client_kwargs(s),
            group_id=events_group(s),
            client_id=events_group(s),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.session_timeout_s * 1000 / 3),
            max_poll_records=s.batch_max,
        )
        self.consumer.subscribe([self.topic], listener=_Positions(self))
        await self.consumer.start()
        self._running = self.add_future(self._run())

    async def on_stop(self) -> None:
        if self.consumer is not None:
            if self._running is not None:
                # The loop ends after the batch in hand (should_stop is set); the service
                # cancels it later anyway, so an outage inside that batch cannot hold the stop.
                await asyncio.wait([self._running], timeout=STOP_GRACE_S)
            try:  # the same grace for the batches in hand, ranking or waiting for acks
                await asyncio.wait_for(self._drained(), STOP_GRACE_S)
            except TimeoutError:  # an outage: their partitions' next owner publishes again
                log.warning("stopped with lists not yet acknowledged")
            await self._hand_over(self._owned)
            if self._committing is not None:
                self._committing.cancel()  # its wait for the interval, or a commit repeated below
                with contextlib.suppress(asyncio.CancelledError):
                    await self._committing
            await self._commit(now=True)  # what the last batches left
            await self.consumer.stop()
        if self.publisher is not None:
            await self.publisher.stop()

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Start each partition after its stored published offset (if the store has one)."""
        assert self.consumer is not None
        self.metrics.rebalances.labels("assigned").inc(len(partitions))
        self._owned |= partitions
        self.metrics.partitions_owned.set(len(self._owned))
        names = {tp: f"events:{tp.partition}" for tp in partitions}
        stored = await wait_out(
            lambda: self.store.positions(list(names.values())), self.metrics, "positions"
        )
        for tp, name in names.items():
            position = stored.get(name)
            if position is None:
                self.known.pop(tp.partition, None)  # Kafka's committed offset, or the earliest
                continue
            self.known[tp.partition] = position
            self.consumer.seek(tp, position.published + 1)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        self.metrics.rebalances.labels("revoked").inc(len(partitions))
        await self._drained()
        await self._hand_over(partitions)
        self._owned -= partitions
        self.metrics.partitions_owned.set(len(self._owned))
        for tp in partitions:
            self.known.pop(tp.partition, None)
            self._uncommitted.pop(tp, None)

    async def _hand_over(self, partitions: set[TopicPartition]) -> None:
        """Store the published offsets of partitions this consumer gives up: each batch's
        step stores only the batch before it, so the next owner would publish the last
        batch's lists again. One attempt: in an outage the next owner publishes them again,
        which is what it would have done anyway."""
        published = {
            f"events:{tp.partition}": known.published
            for tp in partitions
            if (known := self.known.get(tp.partition)) is not None and known.published >= 0
        }
        try:
            await self.store.mark_published(published)
        except Exception as exc:  # an outage (or a bug): lists published twice, nothing lost
            log.warning("could not store the published offsets (%s)", type(exc).__name__)

    async def _run(self) -> None:
        assert self.consumer is not None
        consumer = self.consumer
        while not self.should_stop:
            found = await consumer.getmany(
                timeout_ms=IDLE_POLL_MS, max_records=self.settings.batch_max
            )
            records = [
                InboundRecord(r.value, r.key, r.topic, r.partition, r.offset, r.timestamp / 1e3)
                for batch in found.values()
                for r in batch
            ]
            if records:
                await self._batch(records)

    async def _batch(self, records: list[InboundRecord]) -> None:
        """Apply a batch to the state, rank its lists (:meth:`_send`) and let the broker
        acknowledge them while the next batch is taken in.

        A full batch means more is waiting: then its ranking runs while the next batch is
        fetched and applied, so a backlog keeps Redis and the worker's CPU busy at once
        (three batches in hand at most: one in its state step, one ranking, one waiting for
        the broker). A batch that is not full is ranked before the next fetch: overlapping
        then only splits the stream into more, smaller batches, each paying the per-batch
        cost, and the tail latency at 1,000 events/s rose with it (docs/benchmarks.md).
        Either way state steps run one at a time in consumption order, lists are handed to
        the producer and acknowledged batch by batch in that order, and a partition's
        published offset moves only once its lists are acknowledged (a restart consumes
        again from there: duplicates, published again)."""
        ranges = offset_ranges(records, self.known)
        applied: Applied | None = None
        try:
            applied = await self.processor.apply(records, ranges)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug, not an outage (those are waited out inside): keep every record in the
            # DLQ with the reason, move on, and keep the stored offsets in step.
            log.exception("batch processing failed; dead-lettering %d events", len(records))
            await self.processor.dead_letter_all(records, WORKER_ERROR)
        if applied is not None and applied.summary.rewinds:
            await self._drained()  # the earlier batches' lists and positions first
            await self._rewind(records, applied.summary.rewinds)
            return
        for r in ranges:
            partition = partition_number(r.partition)
            if TopicPartition(self.topic, partition) not in self._owned:
                continue  # revoked meanwhile: its next owner starts from the stored offsets
            published = self.known.get(partition, Position(-1, -1)).published
            self.known[partition] = Position(r.last, published)
        if self._sending is not None:  # lists go to the producer in consumption order
            await self._sending
        self._sending = asyncio.ensure_future(self._send(records, ranges, applied))
        if len(records) < self.settings.batch_max:  # no backlog to overlap with
            await self._sending

    async def _send(
        self, records: list[InboundRecord], ranges: list[OffsetRange], applied: Applied | None
    ) -> None:
        """Rank the batch's lists and hand them to the producer, then settle the batch once
        the one before it has. Its rankings are gone by then, so the collector's passes run
        here (streams/runtime/heap.py)."""
        settle: Awaitable[None] | None = None
        if applied is not None:
            try:
                _summary, settle = await self.processor.send(applied)
            except asyncio.CancelledError:
                raise
            except Exception:  # as in _batch: a bug, never an outage
                log.exception("ranking a batch failed; dead-lettering %d events", len(records))
                await self.processor.dead_letter_all(records, WORKER_ERROR)
        self._collector.between_batches()
        await self._settled()
        self._settling = asyncio.ensure_future(self._settle(records, ranges, settle))

    async def _drained(self) -> None:
        """Wait until every batch taken in is ranked, handed over and acknowledged (a
        rebalance waits here while the loop may hand in the next one: wait for that too)."""
        while (sending := self._sending) is not None:
            await sending
            if self._sending is sending:
                self._sending = None
        await self._settled()

    async def _settled(self) -> None:
        """Wait for the batches on their way to the broker, if any."""
        while (settling := self._settling) is not None:
            await settling
            if self._settling is settling:
                self._settling = None

    async def _settle(
        self,
        records: list[InboundRecord],
        ranges: list[OffsetRange],
        settle: Awaitable[None] | None,
    ) -> None:
        if settle is not None:
            try:
                await settle
            except asyncio.CancelledError:
                raise
            except Exception:  # as in _batch: a bug, never an outage
                log.exception("publishing a batch failed; dead-lettering %d events", len(records))
                await self.processor.dead_letter_all(records, WORKER_ERROR)
        for r in ranges:
            partition = partition_number(r.partition)
            known = self.known.get(partition)
            if known is None:
                continue  # revoked meanwhile: its next owner starts from the stored offsets
            self.known[partition] = Position(known.applied, max(known.published, r.last))
            self._uncommitted[TopicPartition(self.topic, partition)] = r.last + 1
        if self._committing is None or self._committing.done():
            self._committing = asyncio.ensure_future(self._commit())

    async def _commit(self, now: bool = False) -> None:
        """Commit the newest offsets to Kafka, beside the next batches rather than before
        them, and at most once per :data:`COMMIT_INTERVAL_S`: the positions that count are
        stored with the state in Redis (a partition starts from there), so Kafka's copy only
        saves a new group member a longer replay. Waiting for the broker's reply cost every
        batch a round trip, and a commit per batch cost the worker and the broker CPU at every
        small batch."""
        assert self.consumer is not None
        while self._uncommitted:
            if not now:
                await asyncio.sleep(self._last_commit + COMMIT_INTERVAL_S - time.monotonic())
            self._last_commit = time.monotonic()
            offsets, self._uncommitted = self._uncommitted, {}
            try:
                await self.consumer.commit(offsets)
            except asyncio.CancelledError:
                self._uncommitted = {**offsets, **self._uncommitted}  # for the last commit
                raise
            except (CommitFailedError, IllegalStateError, KafkaError) as exc:
                # A rebalance or a broker outage: the next commit covers these offsets too.
                log.info("offset commit to Kafka skipped (%s)", type(exc).__name__)
                return

    async def _rewind(self, records: list[InboundRecord], rewinds: dict[str, Position]) -> None:
        """Go back: rewound partitions to their stored published offset + 1, the batch's other
        partitions to where the batch began (none of it was applied)."""
        assert self.consumer is not None
        starts: dict[int, int] = {}
        for r in records:
            starts[r.partition] = min(starts.get(r.partition, r.offset), r.offset)
        for partition, first in starts.items():
            position = rewinds.get(f"events:{partition}")
            tp = TopicPartition(self.topic, partition)
            if position is None:
                self.consumer.seek(tp, first)
                continue
            log.warning("stored state of partition %d is behind; consuming again", partition)
            self.known[partition] = position
            if position.published >= 0:
                self.consumer.seek(tp, position.published + 1)
            else:
                self.known.pop(partition, None)
                await self.consumer.seek_to_beginning(tp)


class _Positions(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: EventsConsumer) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.service.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.service.assigned(assigned)
