"""One live page's events: the current list at once, pushed lists, fallback reads, titles."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from models.trending import TrendingList
from streams.http.live.broadcast import Subscription, TrendingBroadcaster
from streams.keys import Keys

log = logging.getLogger(__name__)

#: SSE comment sent when nothing else was, so proxies and phones keep the connection open.
HEARTBEAT_S: Final = 15.0
#: Reconnect delay the browser is told to use after a dropped connection (ms).
RETRY_MS: Final = 1000
#: Titles are cached this long; an unknown item is asked again sooner (its record may come).
TITLE_TTL_S: Final = 30.0
MISSING_TITLE_TTL_S: Final = 2.0
TITLE_CACHE_SIZE: Final = 10_000


class TitleCache:
    """Item titles from the catalog records in Redis (``sr:i:<item>:meta``), cached briefly."""

    def __init__(self, client: Any, keys: Keys, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.keys = keys
        self.clock = clock
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def titles(self, item_ids: Sequence[str]) -> dict[str, str]:
        """item id -> title ("" when the catalog has none): one round trip for the misses."""
        now = self.clock()
        found: dict[str, str] = {}
        missing = []
        for item_id in item_ids:
            cached = self._cache.get(item_id)
            if cached is not None and cached[1] > now:
                found[item_id] = cached[0]
            else:
                missing.append(item_id)
        if missing:
            async with self.client.pipeline(transaction=False) as pipe:
                for item_id in missing:
                    pipe.hget(self.keys.item(item_id, "meta"), "title")
                replies = await pipe.execute()
            for item_id, raw in zip(missing, replies, strict=True):
                title = "" if raw is None else bytes(raw).decode("utf-8", "replace")
                ttl = TITLE_TTL_S if title else MISSING_TITLE_TTL_S
                found[item_id] = title
                self._cache[item_id] = (title, now + ttl)
                self._cache.move_to_end(item_id)
            while len(self._cache) > TITLE_CACHE_SIZE:
                self._cache.popitem(last=False)
        return found


def _signature(result: TrendingList) -> tuple[tuple[str, float, float, int], ...]:
    """What the page shows of a list: a list equal to the last one sent is not sent again."""
    return tuple(
        (i.item_id, round(i.count, 6), round(i.velocity, 6), i.events) for i in result.items
    )


def live_message(
    result: TrendingList, titles: Mapping[str, str], stream_id: str, sent_at: float
) -> bytes:
    """One SSE message: the list, with titles, as the page renders it.

    ``age_s`` (time since the newest counted event, by the server's clock) lets the page say
    "updated x s ago" without trusting the phone's clock.

    >>> from models.trending import TrendingItem
    >>> r = TrendingList("stream:s1", 60.0, 10.0, 9.5, (TrendingItem("i1", 3.0, 0.05, 2),))
    >>> msg = live_message(r, {"i1": "Red lipstick"}, "s1", 10.0)
    >>> msg.startswith(b"event: trending\\ndata: "), msg.endswith(b"\\n\\n")
    (True, True)
    >>> body = orjson.loads(msg.split(b"data: ", 1)[1])
    >>> body["items"][0]["title"], body["items"][0]["rank"], body["age_s"]
    ('Red lipstick', 1, 0.5)
    """
    newest = result.newest_ts
    body = {
        "stream_id": stream_id,
        "scope": result.scope,
        "window_s": result.window_s,
        "items": [
            {
                "rank": rank,
                "item_id": i.item_id,
                "title": titles.get(i.item_id) or i.item_id,
                "count": round(i.count, 6),
                "velocity": round(i.velocity, 6),
                "events": i.events,
            }
            for rank, i in enumerate(result.items, start=1)
        ],
        "as_of": result.as_of,
        "newest_event_at": newest,
        "age_s": None if newest is None else round(max(0.0, sent_at - newest), 3),
    }
    return b"event: trending\ndata: " + orjson.dumps(body) + b"\n\n"


@dataclass
class LiveFeed:
    """The events of one stream's page, independent of the web framework (so it is testable).

    ``read`` returns the scope's current list from the store; ``titles`` maps item ids to
    catalog titles.
    """

    broadcaster: TrendingBroadcaster
    read: Callable[[str, float], Awaitable[TrendingList]]
    titles: Callable[[Sequence[str]], Awaitable[Mapping[str, str]]]
    poll_s: float = 0.5
    heartbeat_s: float = HEARTBEAT_S
    clock: Callable[[], float] = time.time

    async def stream(
        self, stream_id: str, sub: Subscription, gone: Callable[[], bool] = lambda: False
    ) -> AsyncIterator[bytes]:
        """SSE chunks for ``sub`` until it is dropped or closed, or the client is ``gone``
        (the caller unsubscribes). A quiet stream writes nothing for up to a heartbeat, so
        ``gone`` is asked every poll: a closed page frees its slot within ``poll_s``."""
        scope = sub.scope
        yield f"retry: {RETRY_MS}\n\n".encode()
        current = self.broadcaster.last(scope)
        if current is None:
            current = await self.read(scope, self.clock())
        yield await self._message(current, stream_id)
        sent = _signature(current)
        last_write = time.monotonic()
        while not sub.dropped and not gone():
            try:
                result = await asyncio.wait_for(sub.queue.get(), timeout=self.poll_s)
            except TimeoutError:
                result = await self._fallback(scope)
            if sub.dropped:
                return
            if result is not None and _signature(result) != sent:
                yield await self._message(result, stream_id)
                sent = _signature(result)
                last_write = time.monotonic()
            elif time.monotonic() - last_write >= self.heartbeat_s:
                yield b": keep-alive\n\n"
                last_write = time.monotonic()

    async def _fallback(self, scope: str) -> TrendingList | None:
        """No local update within ``poll_s``: another worker may have published it."""
        try:
            return await self.read(scope, self.clock())
        except Exception as exc:  # Redis hiccup: keep the stream, try again next time
            log.warning("live page: reading %s failed (%s)", scope, type(exc).__name__)
            return None

    async def _message(self, result: TrendingList, stream_id: str) -> bytes:
        ids = [i.item_id for i in result.items]
        try:
            titles = await self.titles(ids) if ids else {}
        except Exception as exc:  # titles are cosmetic: show the ids rather than nothing
            log.warning("live page: reading titles failed (%s)", type(exc).__name__)
            titles = {}
        return live_message(result, titles, stream_id, self.clock())
