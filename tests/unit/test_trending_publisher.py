"""The trending publisher against the in-memory store: what it publishes, and when."""

from __future__ import annotations

import logging

import orjson
import pytest
import redis.exceptions

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


async def test_lists_taken_before_an_outage_are_published_once_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis fails after the changed scopes were taken: they are not lost (the next tick
    publishes them), and the outage is logged once, without a traceback, and its end once."""
    store = MemoryStore(StateParams(), trending=TrendingParams(60.0, 5.0))
    publisher = RecordingPublisher()
    trending = TrendingPublisher(Settings(), store, publisher, WorkerMetrics(), clock=lambda: T0)
    view = Event("e1", EventType.VIEW, "v1", T0, item_id="lipstick", stream_id="live-1")
    await store.process_batch([view])
    counted = store.trending

    async def down(*args: object) -> object:
        raise redis.exceptions.ConnectionError("refused")

    store.trending = down  # type: ignore[method-assign,assignment]
    with caplog.at_level(logging.WARNING):
        await trending.run_tick()
        await trending.run_tick()
        store.trending = counted  # type: ignore[method-assign]
        await trending.run_tick()
    scopes = {r.key for r in publisher.on("trending")}
    assert scopes == {b"global", b"stream:live-1"}
    assert [r.getMessage() for r in caplog.records] == [
        "trending publish waits for redis (ConnectionError)",
        "trending publish resumed: redis is back",
    ]
    assert all(r.exc_info is None for r in caplog.records)
