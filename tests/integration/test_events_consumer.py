"""The ``events`` consumer on a real broker and Redis: in a backlog (full batches) a batch's
state step runs while the batch before it is being ranked, otherwise each batch is ranked
before the next is fetched; lists go out in consumption order either way, and a stop leaves
the stored positions at the last published offset."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TypeVar

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.pipeline import Applied, BatchProcessor, InboundRecord
from streams.runtime import consumer as consumer_module
from streams.runtime.consumer import EventsConsumer
from streams.runtime.worker import state_params
from streams.security import kafka_client_kwargs
from streams.store import OffsetRange, RedisStore
from streams.tools.bench.readback import partitions_of
from tests.e2e.conftest import wait_for
from tests.unit.fakes import RecordingPublisher

#: How long the first batch's ranking waits for the second batch's state step to begin.
OVERLAP_WAIT_S = 30.0


class Gated(BatchProcessor):
    """Holds the first batch's ranking until the next batch's state step has begun: with
    batches taken one at a time, the wait would time out and the batch be dead-lettered."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.applying = 0
        self.next_began = asyncio.Event()
        self.first_applied = asyncio.Event()

    async def apply(
        self, records: Sequence[InboundRecord], offsets: Sequence[OffsetRange] = ()
    ) -> Applied:
        self.applying += 1
        if self.applying > 1:
            self.next_began.set()
        applied = await super().apply(records, offsets)
        self.first_applied.set()
        return applied

    async def send(self, applied: Applied) -> tuple[object, object]:  # type: ignore[override]
        await asyncio.wait_for(self.next_began.wait(), OVERLAP_WAIT_S)
        return await super().send(applied)


async def _produce(settings: Settings, users: list[str]) -> None:
    producer = AIOKafkaProducer(**kafka_client_kwargs(settings))
    await producer.start()
    try:
        for n, user in enumerate(users):
            body = {"event_id": f"{user}{n}", "type": "view", "user_id": user, "item_id": "i",
                    "ts": 1_800_000_000.0}  # fmt: skip
            await producer.send_and_wait(
                settings.topic("events"), orjson.dumps(body), user.encode()
            )
    finally:
        await producer.stop()


class Traced(BatchProcessor):
    """Notes when each batch's state step begins and when its lists are handed over; the
    first batch's lists wait for ``release``."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.steps: list[str] = []
        self.release = asyncio.Event()
        self.held = asyncio.Event()  # a batch's lists are waiting for release

    async def apply(
        self, records: Sequence[InboundRecord], offsets: Sequence[OffsetRange] = ()
    ) -> Applied:
        self.steps.append("apply")
        return await super().apply(records, offsets)

    async def send(self, applied: Applied) -> tuple[object, object]:  # type: ignore[override]
        self.held.set()
        await self.release.wait()
        sent = await super().send(applied)
        self.steps.append("sent")
        return sent


P = TypeVar("P", bound=BatchProcessor)


def _consumer(
    settings: Settings, redis_client: aioredis.Redis, kind: type[P]
) -> tuple[EventsConsumer, P, RecordingPublisher, RedisStore]:
    """An events consumer over real Redis whose processor is a ``kind``, lists recorded."""
    store = RedisStore(redis_client, state_params(settings))
    publisher, metrics = RecordingPublisher(), WorkerMetrics()
    processor = kind(settings, store, publisher, metrics, clock=lambda: 1_800_000_000.0)
    return EventsConsumer(settings, processor, store, metrics), processor, publisher, store


async def test_a_backlog_is_applied_while_the_batch_before_is_ranked(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    settings = settings.model_copy(update={"batch_max": 1})  # every batch full: a backlog
    consumer, processor, publisher, store = _consumer(settings, redis_client, Gated)
    await consumer.start()
    try:
        await _produce(settings, ["ann"])
        await asyncio.wait_for(processor.first_applied.wait(), OVERLAP_WAIT_S)
        await _produce(settings, ["bob"])  # its batch is applied while ann's is held

        def published() -> list[bytes | None]:
            return [r.key for r in publisher.on(settings.topic("recommendations"))]

        async def both() -> bool:
            return len(published()) == 2

        await wait_for(both, what="both lists")
        assert published() == [b"ann", b"bob"]  # in consumption order
        assert publisher.on(settings.topic("events.dlq")) == []
    finally:
        await consumer.stop()
    stored = await store.positions(
        [f"events:{p}" for p in range(partitions_of(settings, "events"))]
    )
    assert sum(p.published + 1 for p in stored.values()) == 2  # handed over on stop


async def test_a_batch_that_is_not_full_is_ranked_before_the_next_is_taken_in(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """The consumer's loop takes the next batch once ``_batch`` returns: for a batch that is
    not full, that is only after its lists are out."""
    consumer, processor, publisher, _ = _consumer(settings, redis_client, Traced)
    body = {"event_id": "a1", "type": "view", "user_id": "ann", "item_id": "i",
            "ts": 1_800_000_000.0}  # fmt: skip
    record = InboundRecord(orjson.dumps(body), b"ann", "events", 0, 0, 1_800_000_000.0)
    batch = asyncio.create_task(consumer._batch([record]))
    await processor.held.wait()  # its lists are being ranked
    assert not batch.done()  # so the loop cannot fetch the next batch yet
    processor.release.set()
    await batch
    assert processor.steps == ["apply", "sent"]
    await consumer._drained()
    assert [r.key for r in publisher.on(settings.topic("recommendations"))] == [b"ann"]


async def test_a_stop_is_not_held_by_a_batch_that_cannot_be_ranked(
    settings: Settings, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its lists never go out (an outage, say): the stop gives up after the grace, and the
    batch's partition keeps no published position, so its next owner publishes again."""
    monkeypatch.setattr(consumer_module, "STOP_GRACE_S", 0.5)
    consumer, processor, publisher, store = _consumer(settings, redis_client, Traced)
    await consumer.start()
    await _produce(settings, ["ann"])

    async def applied() -> bool:
        return processor.steps == ["apply"]

    await wait_for(applied, what="ann's batch applied")
    await asyncio.wait_for(consumer.stop(), 60.0)
    assert publisher.on(settings.topic("recommendations")) == []
    partitions = [f"events:{p}" for p in range(partitions_of(settings, "events"))]
    stored = await store.positions(partitions)
    assert [p.applied for p in stored.values()] == [0]
    assert [p.published for p in stored.values()] == [-1]
