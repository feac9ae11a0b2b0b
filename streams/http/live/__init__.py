"""The hosts' live page: a live stream's trending items, pushed to a phone within a second.

Routes (served by the worker's web server, next to /metrics, and by every ``socialrec api``
process; streams/http/web.py mounts them):

- ``GET /live/{stream_id}``: one self-contained HTML page (inline CSS and JS, nothing
  external), so a host can open it on a phone without any build or CDN;
- ``GET /live/{stream_id}/events``: server-sent events; every message is the current list of
  scope ``stream:{stream_id}``. SSE rather than websockets because it is one-way, survives
  proxies as plain HTTP, and the browser's ``EventSource`` reconnects by itself.

Why updates are pushed, not polled: the worker's
:class:`~streams.runtime.trending.TrendingPublisher` calls :meth:`TrendingBroadcaster.publish` the
moment a list is on Kafka, and the broadcaster puts it on every subscriber's bounded queue. A client
whose queue is full is dropped (its browser reconnects and gets the current list), so a slow phone
never delays publishing.

Why there is still a fallback read: the publisher takes the changed scopes from a Redis set
shared by every worker (SPOP), so with several workers the list of a stream may be published
by another process, and a ``socialrec api`` process publishes nothing at all. When no local
update arrived for ``poll_s`` (the publish interval, 0.5 s), the endpoint reads the scope's
last published list (streams/runtime/trending.py, one Redis GET) and sends it if it changed. With
one worker the reads only confirm what was pushed; the cost is one Redis read per open page per
0.5 s while the stream is quiet.

Privacy: the lists are anonymous counts; nothing here sees or logs a user id.

Modules: ``broadcast`` (subscribers and their bounded queues), ``feed`` (one page's events,
titles, the SSE message), ``routes`` (the aiohttp handlers and their caps) and ``page`` (the
HTML).
"""

from streams.http.live.routes import EVENTS_ROUTE, TOO_MANY_PAGES, LivePages, live_pages

__all__ = ["EVENTS_ROUTE", "TOO_MANY_PAGES", "LivePages", "live_pages"]
