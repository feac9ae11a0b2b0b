"""The hosts' live page: a live stream's trending items, pushed to a phone within a second.

Routes (served by the worker's web server, next to /metrics, and by every ``socialrec api``
process; streams/web.py mounts them):

- ``GET /live/{stream_id}``: one self-contained HTML page (inline CSS and JS, nothing
  external), so a host can open it on a phone without any build or CDN;
- ``GET /live/{stream_id}/events``: server-sent events; every message is the current list of
  scope ``stream:{stream_id}``. SSE rather than websockets because it is one-way, survives
  proxies as plain HTTP, and the browser's ``EventSource`` reconnects by itself.

Why updates are pushed, not polled: the worker's :class:`~streams.trending.TrendingPublisher`
calls :meth:`TrendingBroadcaster.publish` the moment a list is on Kafka, and the broadcaster
puts it on every subscriber's bounded queue. A client whose queue is full is dropped (its
browser reconnects and gets the current list), so a slow phone never delays publishing.

Why there is still a fallback read: the publisher takes the changed scopes from a Redis set
shared by every worker (SPOP), so with several workers the list of a stream may be published
by another process, and a ``socialrec api`` process publishes nothing at all. When no local
update arrived for ``poll_s`` (the publish interval, 0.5 s), the endpoint reads the scope's
last published list (streams/trending.py, one Redis GET) and sends it if it changed. With one
worker the reads only confirm what was pushed; the cost is one Redis read per open page per
0.5 s while the stream is quiet.

Privacy: the lists are anonymous counts; nothing here sees or logs a user id.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web as aioweb

from models.events import ID_RULE, is_valid_id
from models.trending import TrendingList, stream_scope
from streams.config import Settings
from streams.http_input import error_response
from streams.keys import Keys
from streams.store import RedisStore
from streams.trending import last_published

log = logging.getLogger(__name__)

#: A subscriber's queue; past this many unsent lists the client is too slow and is dropped.
QUEUE_SIZE: Final = 16
#: SSE comment sent when nothing else was, so proxies and phones keep the connection open.
HEARTBEAT_S: Final = 15.0
#: Reconnect delay the browser is told to use after a dropped connection (ms).
RETRY_MS: Final = 1000
#: Last published list kept per stream scope (for a page that connects in between ticks).
LAST_LISTS: Final = 1024
#: Titles are cached this long; an unknown item is asked again sooner (its record may come).
TITLE_TTL_S: Final = 30.0
MISSING_TITLE_TTL_S: Final = 2.0
TITLE_CACHE_SIZE: Final = 10_000
#: The refusal of an events connection past a cap.
TOO_MANY_PAGES: Final = (
    "too many live pages open: this worker already serves SOCIALREC_LIVE_MAX_CONNECTIONS, "
    "or SOCIALREC_LIVE_MAX_CONNECTIONS_PER_STREAM of this stream; retry after Retry-After"
)


@dataclass(eq=False)
class Subscription:
    """One open events connection: its bounded queue, and whether it was cut off."""

    scope: str
    queue: asyncio.Queue[TrendingList | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    dropped: bool = False


class TrendingBroadcaster:
    """Fans each published list out to the subscribers of its scope, never blocking.

    At most ``max_subscribers`` connections at once, and ``max_per_scope`` of one stream
    (every open page holds a queue and, while its stream is quiet, reads the store twice a
    second; the per-stream cap keeps one popular or attacked stream from taking every slot):
    beyond that :meth:`subscribe` refuses, and the page is told to come back later.

    >>> b = TrendingBroadcaster(max_subscribers=2, max_per_scope=1)
    >>> sub = b.subscribe("stream:s1")
    >>> b.publish(TrendingList("stream:s1", 60.0, 10.0, None, ()), 10.0)
    >>> sub.queue.qsize(), b.last("stream:s1").scope
    (1, 'stream:s1')
    >>> b.subscribe("stream:s1") is None, b.subscribe("stream:s2") is None
    (True, False)
    >>> b.subscribe("stream:s3") is None
    True
    """

    def __init__(
        self, queue_size: int = QUEUE_SIZE, max_subscribers: int = 1_000, max_per_scope: int = 200
    ) -> None:
        self.queue_size = queue_size
        self.max_subscribers = max_subscribers
        self.max_per_scope = max_per_scope
        self._count = 0
        self._subscribers: dict[str, set[Subscription]] = {}
        self._last: OrderedDict[str, TrendingList] = OrderedDict()
        self.closed = False

    def subscribe(self, scope: str) -> Subscription | None:
        """A new connection's subscription, or None when either cap is reached."""
        if self._count >= self.max_subscribers or self.subscribers(scope) >= self.max_per_scope:
            return None
        sub = Subscription(scope, asyncio.Queue(self.queue_size))
        if self.closed:
            sub.dropped = True
        self._subscribers.setdefault(scope, set()).add(sub)
        self._count += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.scope)
        if subs is not None and sub in subs:
            subs.discard(sub)
            self._count -= 1
            if not subs:
                del self._subscribers[sub.scope]

    def subscribers(self, scope: str) -> int:
        return len(self._subscribers.get(scope, ()))

    def last(self, scope: str) -> TrendingList | None:
        return self._last.get(scope)

    def publish(self, result: TrendingList, published_at: float) -> None:
        """The TrendingPublisher listener: remember stream lists, hand them to subscribers."""
        if result.scope.startswith("stream:"):
            self._last[result.scope] = result
            self._last.move_to_end(result.scope)
            while len(self._last) > LAST_LISTS:
                self._last.popitem(last=False)
        for sub in list(self._subscribers.get(result.scope, ())):
            try:
                sub.queue.put_nowait(result)
            except asyncio.QueueFull:
                # Too slow to keep up: cut it off rather than hold the publisher. The browser
                # reconnects and starts again from the current list.
                sub.dropped = True
                self.unsubscribe(sub)

    def close(self) -> None:
        """Ends every open events stream (the web server waits for them when stopping)."""
        self.closed = True
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                sub.dropped = True
                # A full queue is fine: the reader sees ``dropped`` after its next item.
                with contextlib.suppress(asyncio.QueueFull):
                    sub.queue.put_nowait(None)
        self._subscribers.clear()
        self._count = 0


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

    A worker also hands its :class:`~streams.trending.TrendingPublisher` the broadcaster's
    ``publish`` as a listener, so its own lists are pushed the moment Kafka has them.
    """
    broadcaster = TrendingBroadcaster(
        max_subscribers=settings.live_max_connections,
        max_per_scope=settings.live_max_connections_per_stream,
    )
    titles = TitleCache(store.client, store.keys)
    k, window_s = settings.trending_top_k, settings.trending_window_s

    async def read(scope: str, now: float) -> TrendingList:
        return (await last_published(store, [scope], now, k, window_s))[0]

    feed = LiveFeed(broadcaster, read, titles.titles, poll_s=settings.trending_interval_s)
    return LivePages(broadcaster, feed, refused)


def _gone(request: Any) -> bool:
    transport = request.transport
    return transport is None or bool(transport.is_closing())


def render_page(stream_id: str) -> str:
    """The page, with the (validated) stream id escaped into it."""
    return PAGE.replace("__STREAM_ID__", html.escape(stream_id, quote=True))


PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="color-scheme" content="dark light">
<title>Trending in __STREAM_ID__</title>
<style>
  :root { --bg: #111318; --fg: #f4f5f7; --muted: #9aa3b2; --card: #1c2029; --up: #3ddc84;
          --down: #ff6b6b; --warn: #ffb020; }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--fg);
         font: 20px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         padding: env(safe-area-inset-top) 12px 24px; }
  header { display: flex; align-items: baseline; justify-content: space-between; gap: 8px;
           padding: 14px 4px 10px; }
  h1 { font-size: 1.3rem; margin: 0; overflow-wrap: anywhere; }
  #status { font-size: 0.85rem; font-weight: 600; padding: 4px 10px; border-radius: 999px;
            white-space: nowrap; background: var(--card); }
  #status.live { color: var(--up); }
  #status.connecting, #status.dropped { color: var(--warn); }
  #banner { display: none; margin: 0 0 10px; padding: 12px 14px; border-radius: 12px;
            background: #3a2a05; color: var(--warn); font-size: 1rem; }
  body.dropped #banner { display: block; }
  body.dropped #list { opacity: 0.55; }
  #updated { color: var(--muted); font-size: 0.9rem; margin: 0 4px 10px; }
  ol { list-style: none; margin: 0; padding: 0; }
  li { display: grid; grid-template-columns: 2.2em 1fr auto 1.4em; align-items: center;
       gap: 10px; background: var(--card); border-radius: 14px; padding: 14px 12px;
       margin-bottom: 8px; }
  .rank { font-size: 1.4rem; font-weight: 800; color: var(--muted); text-align: center; }
  .name { font-size: 1.25rem; font-weight: 650; overflow-wrap: anywhere; }
  .count { font-size: 1.4rem; font-weight: 800; font-variant-numeric: tabular-nums; }
  .trend { font-size: 1.3rem; text-align: center; }
  .trend.up { color: var(--up); } .trend.down { color: var(--down); }
  .trend.flat { color: var(--muted); }
  #empty { display: none; text-align: center; color: var(--muted); padding: 48px 12px;
           font-size: 1.2rem; }
  body.empty #empty { display: block; }
  @media (min-width: 700px) { body { max-width: 680px; margin: 0 auto; } }
</style>
</head>
<body class="empty" data-stream-id="__STREAM_ID__">
<header><h1>Trending in __STREAM_ID__</h1>
<span id="status" class="connecting" role="status">connecting…</span></header>
<div id="banner" role="alert">Connection lost — reconnecting.
The list below may be out of date.</div>
<div id="updated" aria-live="polite">waiting for the first list…</div>
<ol id="list" aria-label="trending items" data-rendered-at="0"></ol>
<div id="empty">Nothing trending yet.<br>Items appear here as soon as viewers act.</div>
<script>
(function () {
  "use strict";
  var streamId = document.body.dataset.streamId;
  var list = document.getElementById("list");
  var statusEl = document.getElementById("status");
  var updatedEl = document.getElementById("updated");
  var updatedAt = null;  // ms, by this device's clock
  var es = null, retryTimer = null;

  function setStatus(state, text) {
    statusEl.className = state;
    statusEl.textContent = text;
    document.body.classList.toggle("dropped", state === "dropped");
  }
  function fmtCount(c) {
    return (Math.round(c * 10) / 10).toString();
  }
  function tickAge() {
    if (updatedAt === null) { return; }
    var s = Math.max(0, Math.round((Date.now() - updatedAt) / 1000));
    updatedEl.textContent = "updated " + s + " s ago";
  }
  function render(data) {
    var rows = [];
    data.items.forEach(function (item) {
      var li = document.createElement("li");
      li.dataset.itemId = item.item_id;
      var rank = document.createElement("span");
      rank.className = "rank"; rank.textContent = item.rank;
      var name = document.createElement("span");
      name.className = "name"; name.textContent = item.title;
      var count = document.createElement("span");
      count.className = "count"; count.textContent = fmtCount(item.count);
      var trend = document.createElement("span");
      var v = item.velocity;
      trend.className = "trend " + (v > 0 ? "up" : v < 0 ? "down" : "flat");
      trend.textContent = v > 0 ? "▲" : v < 0 ? "▼" : "–";
      trend.setAttribute("aria-label", v > 0 ? "rising" : v < 0 ? "falling" : "steady");
      li.append(rank, name, count, trend);
      rows.push(li);
    });
    list.replaceChildren.apply(list, rows);
    document.body.classList.toggle("empty", rows.length === 0);
    if (data.age_s === null) {
      updatedAt = null;
      updatedEl.textContent = "no viewer activity in the last " + Math.round(data.window_s) + " s";
    } else {
      updatedAt = Date.now() - data.age_s * 1000;
      tickAge();
    }
    list.dataset.renderedAt = String(Date.now());
  }
  function connect() {
    if (es) { es.close(); }
    setStatus("connecting", "connecting…");
    // location.search carries a host's signed link (stream, exp, sig) to the events too.
    // Dots too: a stream named "." or ".." would otherwise be read as a path step.
    var path = encodeURIComponent(streamId).split(".").join("%2E");
    es = new EventSource("/live/" + path + "/events" + location.search);
    es.onopen = function () { setStatus("live", "● live"); };
    es.addEventListener("trending", function (ev) {
      setStatus("live", "● live");
      render(JSON.parse(ev.data));
    });
    es.onerror = function () {
      setStatus("dropped", "reconnecting…");
      // EventSource retries by itself unless the server answered with an error status.
      if (es.readyState === EventSource.CLOSED) {
        clearTimeout(retryTimer);
        retryTimer = setTimeout(connect, 3000);
      }
    };
  }
  setInterval(tickAge, 1000);
  connect();
})();
</script>
</body>
</html>
"""
