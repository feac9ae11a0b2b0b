"""The trending publisher against the in-memory store: what it publishes, and when."""

from __future__ import annotations

import orjson

from models.events import Event, EventType
from models.state import StateParams
from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.runtime.trending import TrendingPublisher
from streams.store import MemoryStore, TrendingParams
from tests.unit.fakes import RecordingPublisher

T0 = 1_800_000_000.0


async def test_changed_scopes_are_published_then_republished_only_as_buckets_slide() -> None:
    settings = Settings(trending_bucket_s=5.0)
    store = MemoryStore(StateParams(), trending=TrendingParams(60.0, 5.0))
    now = [T0]
    publisher = RecordingPublisher()
    lists: list[list[tuple[str, float]]] = []
    trending = TrendingPublisher(
        settings, store, publisher, WorkerMetrics(), lists.append, clock=lambda: now[0]
    )
    burst = [
        Event(f"e{n}", EventType.VIEW, f"v{n}", T0, item_id="lipstick", stream_id="live-1")
        for n in range(3)
    ]
    await store.process_batch(burst)

    assert await trending.tick() == 2  # global and stream:live-1
    body = orjson.loads(publisher.on("trending")[0].value or b"")
    assert body["items"][0]["item_id"] == "lipstick"
    assert lists[-1] == [("lipstick", 3.0)]  # the ranking fallback got the global list

    now[0] = T0 + 0.5  # same bucket, nothing new: nothing to say
    assert await trending.tick() == 0
    now[0] = T0 + 5.0  # next bucket: the windows slid, both scopes are published again
    assert await trending.tick() == 2
    now[0] = T0 + 200.0  # long after: published once as empty, then quiet
    assert await trending.tick() == 2
    assert orjson.loads(publisher.on("trending")[-1].value or b"")["items"] == []
    now[0] = T0 + 205.0
    assert await trending.tick() == 0
