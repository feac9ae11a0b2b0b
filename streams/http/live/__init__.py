"""The hosts' live page: a live stream's trending items, pushed to a phone within a second.

``GET /live/{stream_id}`` is one self-contained HTML page; ``GET /live/{stream_id}/events``
sends the scope's list as server-sent events, pushed by the trending publisher the moment it
is on Kafka, with a read of the last published list as the fallback (README.md, "Live page
for hosts", says why SSE, why pushed, why the fallback). Modules: ``broadcast`` (subscribers
and their bounded queues), ``feed`` (one page's events, titles, the SSE message), ``routes``
(the aiohttp handlers and their caps) and ``page`` (the HTML).
"""

from streams.http.live.routes import EVENTS_ROUTE, TOO_MANY_PAGES, LivePages, live_pages

__all__ = ["EVENTS_ROUTE", "TOO_MANY_PAGES", "LivePages", "live_pages"]
