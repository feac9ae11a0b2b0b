"""A poison event on real Redis: a corrupt key of its own user makes the store refuse it before
writing any of it; it goes to the DLQ and the rest of its batch is applied and published once."""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from models.state.seen import event_digest
from streams.config import Settings
from streams.keys import Keys
from streams.metrics import WorkerMetrics
from streams.pipeline import BatchProcessor, InboundRecord
from streams.runtime.worker import state_params
from streams.store import OffsetRange, RedisStore
from tests.unit.fakes import RecordingPublisher

NOW = 1_800_000_000.0


def _record(n: int, user: str, item: str) -> InboundRecord:
    body = {"event_id": f"p{n}", "type": "purchase", "user_id": user, "item_id": item,
            "ts": NOW - 5}  # fmt: skip
    return InboundRecord(orjson.dumps(body), user.encode(), "events", 0, n, NOW - 1)


async def test_a_poison_event_is_refused_whole_and_the_rest_applied(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    # What the script cannot SADD to:
    await redis_client.set(Keys().user("mallory", "bought"), "not a set")
    store = RedisStore(redis_client, state_params(settings))
    publisher = RecordingPublisher()
    processor = BatchProcessor(settings, store, publisher, WorkerMetrics(), clock=lambda: NOW)
    batch = [_record(0, "ann", "phone"), _record(1, "mallory", "phone"), _record(2, "bob", "case")]

    summary = await processor.process(batch)

    assert (summary.applied, summary.dead_lettered) == (2, 1)
    dead = publisher.on(settings.topic("events.dlq"))
    assert [d.headers["__connect.errors.offset"] for d in dead] == [b"1"]
    assert dead[0].headers["socialrec.dlq.reason"] == b"processing_error"
    lists = publisher.on(settings.topic("recommendations"))
    assert sorted(r.key or b"" for r in lists) == [b"ann", b"bob"]  # each once: nothing replayed
    # Nothing of mallory's event was written: no id, no history, no popularity from it.
    assert not await redis_client.hexists(Keys().user("mallory", "seen_events"), event_digest("p1"))
    assert not await redis_client.exists(Keys().user("mallory", "history"))
    ann = Keys().partition(Keys().partition_of("ann"), "popularity")
    assert await redis_client.zscore(ann, "phone") is not None  # ann's purchase


async def test_a_batch_in_rounds_stores_its_offsets_and_isolates_a_poison_event(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """Rounds of two events a partition on real Redis: the offsets stored end where the batch
    does, the poison event of a later round goes to the DLQ, everyone else gets one list."""
    await redis_client.set(Keys().user("mallory", "bought"), "not a set")
    store = RedisStore(redis_client, state_params(settings))
    publisher = RecordingPublisher()
    processor = BatchProcessor(
        settings.model_copy(update={"step_max": 2}), store, publisher, WorkerMetrics(),
        clock=lambda: NOW,
    )  # fmt: skip
    users = ["ann", "bob", "ann", "mallory", "cy", "bob"]
    batch = [_record(n, user, f"i{n}") for n, user in enumerate(users)]

    summary = await processor.process(batch, [OffsetRange("events:0", 0, 6, -1, -1)])

    assert (summary.applied, summary.dead_lettered) == (5, 1)
    dead = publisher.on(settings.topic("events.dlq"))
    assert [d.headers["__connect.errors.offset"] for d in dead] == [b"3"]
    lists = publisher.on(settings.topic("recommendations"))
    assert sorted(r.key or b"" for r in lists) == [b"ann", b"bob", b"cy"]
    assert (await store.positions(["events:0"]))["events:0"].applied == 6
    assert await redis_client.zscore(Keys().user("bob", "history"), "i5") is not None
