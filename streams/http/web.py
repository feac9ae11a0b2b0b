"""The HTTP surface, put together in one place for both processes that serve it: the worker
(on its Faust web server's aiohttp application) and ``socialrec api`` (streams/http/serving.py, a
plain aiohttp application). Both get the same routes (the API's and the live pages'), the same
middlewares in the same order, and the same metrics:

1. :func:`timed`: every answer counted by route template and status, and timed;
2. :func:`streams.http.api.json_errors`: routing errors and failures as the API's JSON errors;
3. the guard (streams/http/guard.py): keys, roles, rate limits.

Each process adds its own ``/health`` (what "ready" means differs) and ``/metrics`` (with
:func:`metrics_response`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, cast

from aiohttp import web as aioweb
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streams.config import Settings
from streams.http.api import Api, api_routes, json_errors
from streams.http.guard import OTHER_ROUTE, ROUTE_LABELS, Guard, load_guard
from streams.http.http_input import route_pattern
from streams.http.live import EVENTS_ROUTE, LivePages
from streams.metrics import HttpMetrics

#: Route templates a label may name; any other path (an unknown route) is ``other``.
TIMED_ROUTES: Final = frozenset({*ROUTE_LABELS, "/health"})
#: The Prometheus text format's type; aiohttp takes a charset apart from the type.
EXPOSITION_TYPE: Final = CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4"

Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]


def route_label(request: aioweb.Request) -> str:
    """The request's route template, as metrics and the guard name it."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else OTHER_ROUTE
    return route if route in TIMED_ROUTES else OTHER_ROUTE


def timed(metrics: HttpMetrics) -> Any:
    """A middleware counting each answer by route template and status, and timing it (but
    not the live pages' event streams, which last as long as the page is open)."""

    @aioweb.middleware
    async def middleware(request: aioweb.Request, handler: Handler) -> aioweb.StreamResponse:
        began = time.perf_counter()
        route = route_label(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except aioweb.HTTPException as exc:  # what json_errors passes on (below 400)
            status = exc.status
            raise
        finally:
            metrics.http_responses.labels(route, str(status)).inc()
            if route != EVENTS_ROUTE:
                metrics.http_seconds.labels(route).observe(time.perf_counter() - began)

    return middleware


def add_routes(web_app: aioweb.Application, routes: Iterable[tuple[str, str, Handler]]) -> None:
    """Each (method, template, handler); a GET answers HEAD too."""
    router = web_app.router
    for method, template, handler in routes:
        if method == "GET":
            router.add_get(route_pattern(template), handler)
        else:
            router.add_route(method, route_pattern(template), handler)


def mount(
    web_app: aioweb.Application,
    settings: Settings,
    metrics: HttpMetrics,
    api: Api,
    live: LivePages,
    process: str = "worker",
    port: int | None = None,
) -> Guard:
    """Serve the API and the live pages on ``web_app``, behind the middlewares above.

    Call it before the application starts (aiohttp freezes routes and middlewares then). Refuses
    (exits saying what to do) when the settings guard nothing: no keys, no link secret and
    ``SOCIALREC_AUTH`` not ``off``; ``process`` and ``port`` name what serves, in the log.
    """
    guard = load_guard(settings, metrics, process, port)
    add_routes(web_app, [*api_routes(api), *live.routes()])
    web_app.middlewares.extend([timed(metrics), json_errors, guard.middleware])
    # aiohttp waits for open requests when stopping; end the endless event streams first.
    web_app.on_shutdown.append(live.close)
    for route in TIMED_ROUTES:  # every series from the start: dashboards see zeros
        if route != EVENTS_ROUTE:
            metrics.http_seconds.labels(route)
    return guard


def metrics_response(registry: CollectorRegistry) -> aioweb.Response:
    """The Prometheus page of ``registry``."""
    return aioweb.Response(
        body=generate_latest(registry), headers={"Content-Type": EXPOSITION_TYPE}
    )


def web_app_of(app: Any) -> aioweb.Application:
    """The aiohttp application under a Faust app's web server (the aiohttp driver, Faust's
    default, keeps it as ``web_app``)."""
    return cast(aioweb.Application, app.web.web_app)
