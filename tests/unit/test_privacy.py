"""Erasure requests against the in-memory store: state gone, tombstone, receipt, DLQ."""

from __future__ import annotations

import orjson

from models.events import Event, EventType
from models.state import StateParams
from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.pipeline import InboundRecord
from streams.privacy import ErasureProcessor
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
    assert topics == ["events.dlq", "recommendations", "privacy.receipts"]
    tombstone = publisher.on("recommendations")[0]
    assert (tombstone.key, tombstone.value) == (b"ann", None)
    receipt = orjson.loads(publisher.on("privacy.receipts")[0].value or b"")
    assert receipt["request_id"] == "r1"
    assert receipt["status"] == "erased"
    assert receipt["removed"] == {"history_items": 2, "logged_events": 2, "follow_edges": 1}
    assert "ann" not in orjson.dumps(receipt).decode()
    assert publisher.on("events.dlq")[0].headers["socialrec.dlq.reason"] == b"unknown_type"
