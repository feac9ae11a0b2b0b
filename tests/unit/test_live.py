"""The live page's broadcaster and event feed, without a web server or Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import orjson
import pytest

from models.trending import TrendingItem, TrendingList
from streams.http.live.broadcast import Subscription, TrendingBroadcaster
from streams.http.live.feed import LiveFeed
from streams.http.live.page import render_page

SCOPE = "stream:live-7"


def _list(*items: tuple[str, float], newest: float | None = 100.0) -> TrendingList:
    return TrendingList(
        SCOPE, 60.0, 100.0, newest, tuple(TrendingItem(i, c, 0.1, int(c)) for i, c in items)
    )


class FakeStore:
    """What the store would return for the scope now; counts the reads."""

    def __init__(self, result: TrendingList) -> None:
        self.result = result
        self.reads = 0

    async def read(self, scope: str, now: float) -> TrendingList:
        assert scope == SCOPE
        self.reads += 1
        return self.result


async def _titles(ids: Sequence[str]) -> Mapping[str, str]:
    return {"lipstick": "Red lipstick"}


def _body(chunk: bytes) -> dict[str, object]:
    assert chunk.startswith(b"event: trending\ndata: ")
    body: dict[str, object] = orjson.loads(chunk.split(b"data: ", 1)[1])
    return body


def _ids(chunk: bytes) -> list[tuple[str, str, float]]:
    items = _body(chunk)["items"]
    assert isinstance(items, list)
    return [(i["item_id"], i["title"], i["count"]) for i in items]


def _subscribe(b: TrendingBroadcaster, scope: str) -> Subscription:
    sub = b.subscribe(scope)
    assert sub is not None
    return sub


def test_connections_beyond_the_limit_are_refused_until_one_closes() -> None:
    b = TrendingBroadcaster(max_subscribers=2)
    first, second = _subscribe(b, SCOPE), _subscribe(b, "stream:other")
    assert b.subscribe(SCOPE) is None
    b.unsubscribe(first)
    b.unsubscribe(first)  # twice (dropped, then closed by the page): one slot, not two
    third = _subscribe(b, SCOPE)
    assert b.subscribe(SCOPE) is None
    # A subscriber cut off for being slow frees its slot too.
    for n in range(b.queue_size + 1):
        b.publish(TrendingList(SCOPE, 60.0, float(n), None, ()), float(n))
    assert third.dropped
    assert b.subscribe(SCOPE) is not None
    assert second.queue.qsize() == 0


def test_page_is_self_contained_and_escapes_the_id() -> None:
    page = render_page('a"<b')
    assert 'a"<b' not in page
    assert "a&quot;&lt;b" in page
    assert "http://" not in page
    assert "https://" not in page
    assert "src=" not in page


async def test_a_slow_subscriber_is_dropped_and_never_blocks_the_publisher() -> None:
    b = TrendingBroadcaster(queue_size=2)
    slow, other = _subscribe(b, SCOPE), _subscribe(b, "stream:other")
    for n in range(3):
        b.publish(_list(("lipstick", float(n))), 1.0)
    assert slow.dropped
    assert b.subscribers(SCOPE) == 0
    assert not other.dropped
    assert other.queue.empty()
    last = b.last(SCOPE)
    assert last is not None
    assert last.items[0].count == 2.0


async def test_feed_sends_the_last_list_at_connect_then_each_local_update() -> None:
    b = TrendingBroadcaster()
    b.publish(_list(("lipstick", 3.0)), 1.0)
    store = FakeStore(_list())
    feed = LiveFeed(b, store.read, _titles, poll_s=10.0)
    sub = _subscribe(b, SCOPE)
    chunks = feed.stream("live-7", sub)
    assert (await anext(chunks)).startswith(b"retry: ")
    assert _ids(await anext(chunks)) == [("lipstick", "Red lipstick", 3.0)]
    assert store.reads == 0  # the published list was used, not a store read
    started = time.monotonic()
    b.publish(_list(("mascara", 8.0), ("lipstick", 3.0)), 2.0)
    assert _ids(await anext(chunks)) == [
        ("mascara", "mascara", 8.0),
        ("lipstick", "Red lipstick", 3.0),
    ]
    assert time.monotonic() - started < 0.1  # pushed, not polled
    b.close()
    assert [c async for c in chunks] == []


async def test_feed_falls_back_to_the_store_when_another_worker_publishes() -> None:
    b = TrendingBroadcaster()
    store = FakeStore(_list(newest=None))
    feed = LiveFeed(b, store.read, _titles, poll_s=0.05)
    sub = _subscribe(b, SCOPE)
    chunks = feed.stream("live-7", sub)
    await anext(chunks)
    first = _body(await anext(chunks))
    assert first["items"] == []
    assert first["age_s"] is None
    store.result = _list(("lipstick", 5.0))  # published elsewhere: nothing arrives locally
    started = time.monotonic()
    assert _ids(await asyncio.wait_for(anext(chunks), 1.0)) == [("lipstick", "Red lipstick", 5.0)]
    assert time.monotonic() - started < 0.5
    b.close()


async def test_feed_sends_heartbeats_and_only_changed_lists() -> None:
    b = TrendingBroadcaster()
    store = FakeStore(_list(("lipstick", 1.0)))
    feed = LiveFeed(b, store.read, _titles, poll_s=0.02, heartbeat_s=0.1)
    chunks = feed.stream("live-7", _subscribe(b, SCOPE))
    await anext(chunks)
    await anext(chunks)
    b.publish(_list(("lipstick", 1.0)), 1.0)  # same list again: not re-sent
    assert await asyncio.wait_for(anext(chunks), 1.0) == b": keep-alive\n\n"
    b.close()


async def test_a_failing_store_read_keeps_the_stream_open() -> None:
    b = TrendingBroadcaster()
    calls = 0

    async def flaky(scope: str, now: float) -> TrendingList:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise ConnectionError("redis down")
        return _list()

    feed = LiveFeed(b, flaky, _titles, poll_s=0.02, heartbeat_s=0.1)
    chunks = feed.stream("live-7", _subscribe(b, SCOPE))
    await anext(chunks)
    await anext(chunks)
    assert await asyncio.wait_for(anext(chunks), 1.0) == b": keep-alive\n\n"
    b.publish(_list(("lipstick", 2.0)), 1.0)
    assert _ids(await asyncio.wait_for(anext(chunks), 1.0)) == [("lipstick", "Red lipstick", 2.0)]
    b.close()


async def test_a_page_that_went_away_ends_its_stream_within_a_poll() -> None:
    # A quiet stream writes nothing for up to a heartbeat; without asking whether the client
    # is still there, a closed page would hold its connection slot (and poll Redis) that long.
    b = TrendingBroadcaster()
    store = FakeStore(_list())
    feed = LiveFeed(b, store.read, _titles, poll_s=0.02, heartbeat_s=60.0)
    gone = False
    chunks = feed.stream("live-7", _subscribe(b, SCOPE), lambda: gone)
    await anext(chunks)
    await anext(chunks)
    gone = True
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(chunks), 1.0)
