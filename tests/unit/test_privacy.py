"""Erasure requests against the in-memory store: state gone, tombstone, receipt, DLQ."""

from __future__ import annotations

import orjson

from models.events import Event, EventType
from models.state import StateParams
from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.pipeline import BatchProcessor, InboundRecord
from streams.runtime.privacy import ErasureProcessor
from streams.store import MemoryStore
from tests.unit.fakes import RecordingPublisher


def _request(body: object, offset: int) -> InboundRecord:
    return InboundRecord(orjson.dumps(body), b"k", "privacy.requests", 0, offset, 1e9)


async def test_erasure_removes_state_publishes_tombstone_then_receipt() -> None:
    store = MemoryStore(StateParams())
    await store.process_batch(
        [
            Event("e1", EventType.VIEW, "ann", 1e9, item_id="a"),
            Event("e2", EventType.CART, "ann", 1e9, item_id="b"),
            Event("e3", EventType.FOLLOW, "bob", 1e9, target_user_id="ann"),
        ]
    )
    await store.cache_recommendations({"ann": b"{}"})
    publisher = RecordingPublisher()
    processor = ErasureProcessor(Settings(), store, publisher, WorkerMetrics())
    erased = await processor.process(
        [
            _request({"request_id": "r1", "type": "erase", "user_id": "ann"}, 0),
            _request({"request_id": "r2", "type": "export", "user_id": "ann"}, 1),
        ]
    )
    assert erased == 1
    snapshot = await store.snapshot()
    assert "ann" not in orjson.dumps(snapshot, default=sorted).decode()
    assert "ann" not in store.recommendations

    topics = [r.topic for r in publisher.sent]
    assert topics == ["events.dlq", "recommendations", "privacy.forget", "privacy.receipts"]
    tombstone = publisher.on("recommendations")[0]
    assert (tombstone.key, tombstone.value) == (b"ann", None)
    receipt = orjson.loads(publisher.on("privacy.receipts")[0].value or b"")
    assert receipt["request_id"] == "r1"
    assert receipt["status"] == "erased"
    assert receipt["removed"] == {
        "history_items": 2,
        "logged_events": 2,
        "follow_edges": 1,
        "source_entries": 0,  # no sources here; tests/e2e erases from all of them
    }
    assert "ann" not in orjson.dumps(receipt).decode()
    assert publisher.on("events.dlq")[0].headers["socialrec.dlq.reason"] == b"unknown_type"


async def test_lists_that_named_the_erased_user_are_republished_without_them() -> None:
    store = MemoryStore(StateParams())
    publisher = RecordingPublisher()
    metrics = WorkerMetrics()
    settings = Settings()
    lists = BatchProcessor(settings, store, publisher, metrics, clock=lambda: 1e9 + 5)
    events = [
        Event("f1", EventType.FOLLOW, "bob", 1e9, target_user_id="ann"),
        Event("p1", EventType.PURCHASE, "ann", 1e9 + 1, item_id="boots"),
        Event("v1", EventType.VIEW, "bob", 1e9 + 2, item_id="hat"),
    ]
    await lists.process(
        [
            InboundRecord(_event_json(e), e.user_id.encode(), "events", 0, n, 1e9 + 3)
            for n, e in enumerate(events)
        ]
    )
    assert b"ann" in (
        publisher.on("recommendations")[-1].value or b""
    )  # bob's list: ann bought boots

    erasures = ErasureProcessor(settings, store, publisher, metrics, refresh=lists.refresh_users)
    await erasures.process([_request({"request_id": "r9", "type": "erase", "user_id": "ann"}, 0)])
    bob = [r for r in publisher.on("recommendations") if r.key == b"bob"][-1]
    assert b"ann" not in (bob.value or b"")
    assert orjson.loads(bob.value or b"")["trigger"]["event_id"] == "r9"
    assert b"ann" not in store.recommendations["bob"]
    topics = [r.topic for r in publisher.sent]
    assert topics.index("privacy.receipts") > len(topics) - 1 - topics[::-1].index(
        "recommendations"
    )


def _event_json(event: Event) -> bytes:
    return orjson.dumps(
        {
            "event_id": event.event_id,
            "type": event.type.value,
            "user_id": event.user_id,
            "ts": event.ts,
            **({"item_id": event.item_id} if event.item_id else {}),
            **({"target_user_id": event.target_user_id} if event.target_user_id else {}),
        }
    )


async def test_events_in_flight_when_the_user_was_erased_are_dropped_not_applied() -> None:
    store = MemoryStore(StateParams())
    publisher = RecordingPublisher()
    metrics = WorkerMetrics()
    lists = BatchProcessor(Settings(), store, publisher, metrics, clock=lambda: 1e9 + 30)
    erasures = ErasureProcessor(Settings(), store, publisher, metrics)
    request = InboundRecord(
        orjson.dumps({"request_id": "r1", "type": "erase", "user_id": "ann"}),
        b"ann",
        "privacy.requests",
        0,
        0,
        1e9 + 10,  # broker time of the request
    )
    await erasures.process([request])

    def record(event: Event, appended: float) -> InboundRecord:
        return InboundRecord(_event_json(event), event.user_id.encode(), "events", 0, 0, appended)

    summary = await lists.process(
        [
            # Appended before the request, consumed after it: the user's data, dropped.
            record(Event("e1", EventType.VIEW, "ann", 1e9 + 1, item_id="a"), 1e9 + 5),
            record(
                Event("s1", EventType.SHARE, "bob", 1e9 + 2, item_id="b", target_user_id="ann"),
                1e9 + 6,
            ),
            # Appended after it: new data of a user who came back, applied.
            record(Event("e2", EventType.VIEW, "ann", 1e9 + 20, item_id="c"), 1e9 + 20),
        ]
    )
    assert summary.dropped_erased == 1
    assert summary.applied == 2  # bob's share is his: applied, without ann
    ann, bob = store.state.users["ann"], store.state.users["bob"]
    assert set(ann.history.scores) == {"c"}
    assert not ann.inbox.scores
    assert not ann.senders
    assert set(bob.history.scores) == {"b"}
    assert not bob.outbox
    assert metrics.registry.get_sample_value("socialrec_events_dropped_after_erasure_total") == 1
    assert "ann" not in orjson.dumps(sorted(store.erased)).decode()  # the mark is anonymous
