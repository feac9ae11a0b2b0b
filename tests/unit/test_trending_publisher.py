"""The trending publisher against the in-memory store: what it publishes, and when."""

from __future__ import annotations

import orjson

from models.content import CatalogRecord
from models.events import Event, EventType
from models.state import StateParams
from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.store import MemoryStore, TrendingParams
from streams.trending import TrendingPublisher
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


async def test_category_and_merchant_lists_wait_for_their_own_interval() -> None:
    """A live stream's and the global list go out at the next tick; the category's and the
    merchant's wait for SOCIALREC_TRENDING_SCOPE_INTERVAL_S, then go out together."""
    settings = Settings(trending_bucket_s=5.0, trending_scope_interval_s=2.0)
    store = MemoryStore(StateParams(), trending=TrendingParams(60.0, 5.0))
    await store.put_items([CatalogRecord("lipstick", category="beauty", merchant_id="m7")])
    now = [T0]
    publisher = RecordingPublisher()
    trending = TrendingPublisher(settings, store, publisher, WorkerMetrics(), clock=lambda: now[0])
    event = Event("e1", EventType.VIEW, "v1", T0, item_id="lipstick", stream_id="live-1")
    await store.process_batch([event])

    def published() -> list[bytes]:
        return [r.key or b"" for r in publisher.on("trending")]

    assert await trending.tick() == 4  # nothing published yet: every scope is due
    assert sorted(published()) == [b"category:beauty", b"global", b"merchant:m7", b"stream:live-1"]
    await store.process_batch([Event("e2", EventType.CART, "v2", T0 + 0.4, item_id="lipstick")])
    now[0] = T0 + 0.5
    assert await trending.tick() == 1  # the global list; the category's and merchant's wait
    assert published()[-1] == b"global"
    now[0] = T0 + 1.5
    assert await trending.tick() == 0
    now[0] = T0 + 2.0
    assert await trending.tick() == 2
    assert sorted(published()[-2:]) == [b"category:beauty", b"merchant:m7"]
