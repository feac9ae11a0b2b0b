"""Serving apart from processing, without servers: the lists readers get are the ones the
trending publisher kept, `socialrec api` has the worker's routes, and the HTTP metrics name
route templates, never ids."""

from __future__ import annotations

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest

from models.events import Event, EventType
from models.state import StateParams
from streams.config import Settings, load_settings
from streams.http.serving import build_app
from streams.http.web import timed
from streams.metrics import HttpMetrics, WorkerMetrics
from streams.runtime.trending import KEPT_ITEMS, TrendingPublisher, last_published
from streams.store import MemoryStore, TrendingParams
from tests.unit.fakes import RecordingPublisher
from tests.unit.test_guard import _worker_routes

T0 = 1_800_000_000.0


def _routes(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def test_the_api_process_serves_every_route_of_the_worker() -> None:
    settings = load_settings(topic_prefix="serving-test.", auth="off")
    app, _ = build_app(settings, HttpMetrics(), 6067)
    assert _routes(app) == _worker_routes()


async def test_readers_get_the_published_lists_deeper_than_the_topic() -> None:
    settings = Settings(trending_top_k=3)
    store = MemoryStore(StateParams(), trending=TrendingParams(60.0, 5.0))
    publisher = RecordingPublisher()
    trending = TrendingPublisher(settings, store, publisher, WorkerMetrics(), clock=lambda: T0)
    burst = [
        Event(f"e{n}-{i}", EventType.VIEW, f"v{n}", T0, item_id=f"i{i}")
        for i in range(KEPT_ITEMS + 5)
        for n in range(i % 3 + 1)
    ]
    await store.process_batch(burst)
    assert await trending.tick() == 1

    (on_topic,) = [orjson.loads(r.value or b"") for r in publisher.on("trending")]
    assert len(on_topic["items"]) == 3  # the topic's length: SOCIALREC_TRENDING_TOP_K
    (kept,) = await last_published(store, ["global"], T0 + 1.0, 1000, 60.0)
    assert len(kept.items) == KEPT_ITEMS  # readers may ask for more, up to the API's k
    assert [i.item_id for i in kept.items[:3]] == [i["item_id"] for i in on_topic["items"]]
    assert kept.as_of == on_topic["as_of"]  # the list as published, not recounted at T0 + 1
    (top,) = await last_published(store, ["global"], T0 + 1.0, 2, 60.0)
    assert top.items == kept.items[:2]

    (none,) = await last_published(store, ["stream:quiet"], T0 + 1.0, 20, 60.0)
    assert (none.scope, none.items, none.newest_ts) == ("stream:quiet", (), None)
    assert none.as_of == T0 + 1.0


async def test_answers_are_counted_by_route_template_and_status() -> None:
    metrics = HttpMetrics()

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[timed(metrics)])
    app.router.add_get("/api/v1/users/{user_id}/recommendations", ok)
    server = TestServer(app)
    await server.start_server(access_log=None)
    async with TestClient(server) as client:
        for path in ("/api/v1/users/u-secret-1/recommendations", "/nowhere/u-secret-2"):
            async with client.get(path):
                pass
    text = _exposition(metrics)
    route = "/api/v1/users/{user_id}/recommendations"
    assert f'socialrec_http_responses_total{{route="{route}",status="200"}} 1.0' in text
    assert 'socialrec_http_responses_total{route="other",status="404"} 1.0' in text
    assert f'socialrec_http_request_seconds_count{{route="{route}"}} 1.0' in text
    assert "u-secret" not in text


def _exposition(metrics: HttpMetrics) -> str:
    return generate_latest(metrics.registry).decode()
