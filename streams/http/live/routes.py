"""The live page routes: the page, and its events behind the connection caps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from aiohttp import web as aioweb

from models.events import ID_RULE, is_valid_id
from models.trending import TrendingList, stream_scope
from streams.config import Settings
from streams.http.http_input import error_response
from streams.http.live.broadcast import TrendingBroadcaster
from streams.http.live.feed import LiveFeed, TitleCache
from streams.http.live.page import render_page
from streams.runtime.trending import last_published
from streams.store import RedisStore

log = logging.getLogger(__name__)

#: The refusal of an events connection past a cap.
TOO_MANY_PAGES: Final = (
    "too many live pages open: this worker already serves SOCIALREC_LIVE_MAX_CONNECTIONS, "
    "or SOCIALREC_LIVE_MAX_CONNECTIONS_PER_STREAM of this stream; retry after Retry-After"
)

#: The events route: a connection lasts as long as the page is open.
EVENTS_ROUTE: Final = "/live/{stream_id}/events"
PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; connect-src 'self'"
    ),
}
Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]


@dataclass
class LivePages:
    """The live page routes over a broadcaster and a feed; see :func:`live_pages`.

    ``refused`` is called for each events connection turned away by a cap (a metric).
    """

    broadcaster: TrendingBroadcaster
    feed: LiveFeed
    refused: Callable[[], None] = lambda: None

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, route template, aiohttp handler) of the page and its events."""
        return [("GET", "/live/{stream_id}", self.page), ("GET", EVENTS_ROUTE, self.events)]

    async def page(self, request: aioweb.Request) -> aioweb.StreamResponse:
        stream_id = request.match_info["stream_id"]
        if not is_valid_id(stream_id):  # any id events accept may name a stream
            return error_response(400, f"stream_id must be {ID_RULE}")
        return aioweb.Response(
            text=render_page(stream_id), content_type="text/html", headers=PAGE_HEADERS
        )

    async def events(self, request: aioweb.Request) -> aioweb.StreamResponse:
        stream_id = request.match_info["stream_id"]
        if not is_valid_id(stream_id):  # any id events accept may name a stream
            return error_response(400, f"stream_id must be {ID_RULE}")
        broadcaster = self.broadcaster
        sub = broadcaster.subscribe(stream_scope(stream_id))
        if sub is None:
            self.refused()
            return error_response(503, TOO_MANY_PAGES, {"Retry-After": "5"})
        response = aioweb.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache, no-store",
                "X-Accel-Buffering": "no",  # nginx: do not hold events back
            }
        )
        try:
            await response.prepare(request)
            async for chunk in self.feed.stream(stream_id, sub, lambda: _gone(request)):
                await response.write(chunk)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away (or the server is stopping): nothing to tell anyone
        except Exception:
            # Logged here, never sent: the client only sees its stream end and reconnects.
            log.exception("live page events for %s failed", stream_id)
        finally:
            broadcaster.unsubscribe(sub)
        return response

    async def close(self, _: Any = None) -> None:
        """End every open events stream (aiohttp waits for open requests when stopping)."""
        self.broadcaster.close()


def live_pages(
    settings: Settings, store: RedisStore, refused: Callable[[], None] = lambda: None
) -> LivePages:
    """The live pages of these settings, reading the last published lists from ``store``.

    A worker also hands its :class:`~streams.runtime.trending.TrendingPublisher` the broadcaster's
    ``publish`` as a listener, so its own lists are pushed the moment Kafka has them.
    """
    broadcaster = TrendingBroadcaster(
        max_subscribers=settings.live_max_connections,
        max_per_scope=settings.live_max_connections_per_stream,
    )
    titles = TitleCache(store.client, store.keys)
    read = partial(_read_last, store, settings.trending_top_k, settings.trending_window_s)
    feed = LiveFeed(broadcaster, read, titles.titles, poll_s=settings.trending_interval_s)
    return LivePages(broadcaster, feed, refused)


async def _read_last(
    store: RedisStore, k: int, window_s: float, scope: str, now: float
) -> TrendingList:
    """The feed's read: the scope's last published list, as the store holds it now."""
    return (await last_published(store, [scope], now, k, window_s))[0]


def _gone(request: Any) -> bool:
    transport = request.transport
    return transport is None or bool(transport.is_closing())
