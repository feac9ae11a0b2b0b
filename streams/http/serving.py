"""``socialrec api``: the HTTP API and the hosts' live pages, apart from event processing.

Frontends and hosts' phones read far more than shoppers write. In the worker, every read shares
one event loop with the batches, so a crowd of readers delays lists and a busy batch delays
readers. This process serves the same routes, guard, JSON and metrics (streams/http/web.py mounts
them) from what the workers keep in Redis, and nothing else: each user's last published list,
each trending scope's last published list (streams/runtime/trending.py), the state and the learner's
pools when a list has to be ranked on request (a user without a published one, ``/why``), the
catalogue for search. It consumes no Kafka topic and publishes nothing, so any number of copies
can run, each on its own port (``--port``, ``SOCIALREC_API_PORT``) or all on one with
``SO_REUSEPORT`` (``--reuse-port``, ``SOCIALREC_API_REUSE_PORT``).

Its live pages have no publisher to push them lists: each open events stream reads its scope's
last published list every ``SOCIALREC_TRENDING_INTERVAL_S`` (streams/http/live/feed.py's fallback
read). The global list, the ranking's fill-in and the query's trending boost, is read as often.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web as aioweb

from models.trending import GLOBAL_SCOPE
from streams.config import Settings
from streams.http.api import Api, ApiDeps, build_api
from streams.http.http_input import json_response
from streams.http.live import EVENTS_ROUTE, live_pages
from streams.http.web import add_routes, metrics_response, mount
from streams.metrics import HttpMetrics, WorkerMetrics
from streams.pipeline import BatchProcessor
from streams.runtime.learner_state import LearnerState
from streams.runtime.trending import last_published, ranking_fallback
from streams.security import redis_client_for, redis_error_hint
from streams.sources.factory import build_sources
from streams.store import RedisStore

log = logging.getLogger(__name__)


class PublishesNothing:
    """The publisher of this process's batch processor, which only ranks on request: a
    publish would be a bug, so it says so."""

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> Awaitable[Any]:
        raise RuntimeError("socialrec api publishes nothing")


async def follow_global(
    processor: BatchProcessor, store: RedisStore, settings: Settings, stop: asyncio.Event
) -> None:
    """Keep ``processor.trending`` at the last published global list, as a worker's own
    publisher keeps its processor's."""
    window_s, k = settings.trending_window_s, settings.trending_top_k
    while not stop.is_set():
        try:
            (result,) = await last_published(store, [GLOBAL_SCOPE], time.time(), k, window_s)
            processor.trending = ranking_fallback(result)
        except Exception as exc:  # Redis hiccup: keep the last list, try again next time
            log.warning("reading the global trending list failed (%s)", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.trending_interval_s)


async def follow_knobs(
    processor: BatchProcessor, learnt: LearnerState, settings: Settings, stop: asyncio.Event
) -> None:
    """Keep the on-request lists' blend at the one the workers learnt and their social proof
    at the half-life the learner learnt: the workers save the blend every
    ``learn_blend_persist_s``, and this process, which consumes no events, reads both as often."""
    while not stop.is_set():
        if processor.knobs is not None:
            await processor.restore_knobs(time.time())
        with contextlib.suppress(Exception):  # an outage: the next round reads it again
            progress = await learnt.progress()
            if progress is not None:
                processor.follow_learner(progress)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.learn_blend_persist_s)


def build_app(
    settings: Settings, metrics: HttpMetrics, port: int
) -> tuple[aioweb.Application, Api]:
    """The api process's aiohttp application (routes, middlewares, guard, /health, /metrics).

    Refuses (exits saying what to do) when the settings guard nothing, like the worker.
    """
    from streams.runtime.worker import batch_processor, settings_store

    # More requests can be in flight than the pool has connections: they wait for one.
    client = redis_client_for(settings, queue_for_connections=True)
    store = settings_store(settings, client)
    # The read path's own counters (a failed source call, say) are the batch path's metrics;
    # this process has no batches, so it keeps them to itself and serves HttpMetrics.
    internal = WorkerMetrics()
    sources, content = build_sources(client, settings, store.params, internal)
    learnt = LearnerState(client, dedupe_window=settings.dedupe_window)
    processor = batch_processor(settings, store, PublishesNothing(), internal, sources, learnt)
    api = build_api(ApiDeps(settings, client, store, processor, content))
    refused = metrics.http_refusals.labels(EVENTS_ROUTE, "connections")
    live = live_pages(settings, store, refused=refused.inc)
    app = aioweb.Application()
    mount(app, settings, metrics, api, live, process="api", port=port)

    async def health(request: aioweb.Request) -> aioweb.StreamResponse:
        """Ready = Redis answers (there is nothing else this process waits for)."""
        try:
            redis_ok = bool(await client.ping())
        except Exception:  # any failure to reach Redis is "not ready", never a crash
            redis_ok = False
        return json_response({"ready": redis_ok, "redis": redis_ok}, 200 if redis_ok else 503)

    async def metrics_page(request: aioweb.Request) -> aioweb.StreamResponse:
        return metrics_response(metrics.registry)

    add_routes(app, [("GET", "/health", health), ("GET", "/metrics", metrics_page)])
    stop = asyncio.Event()
    background: list[asyncio.Task[None]] = []

    async def start_background(_: aioweb.Application) -> None:
        background.append(asyncio.create_task(follow_global(processor, store, settings, stop)))
        background.append(asyncio.create_task(follow_knobs(processor, learnt, settings, stop)))
        background.append(asyncio.create_task(api.warm()))

    async def stop_background(_: aioweb.Application) -> None:
        stop.set()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await client.aclose()

    app.on_startup.append(start_background)
    app.on_cleanup.append(stop_background)
    return app, api


async def serve(
    settings: Settings,
    port: int,
    reuse_port: bool,
    ready: Callable[[], None] = lambda: None,
) -> None:
    """Serve until SIGTERM or SIGINT (or until cancelled)."""
    metrics = HttpMetrics()
    app, _ = build_app(settings, metrics, port)
    # No access log: a log line would hold the path, and with it user ids and hosts' links.
    runner = aioweb.AppRunner(app, access_log=None)
    await runner.setup()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        site = aioweb.TCPSite(runner, settings.web_host, port, reuse_port=reuse_port or None)
        await site.start()
        log.info(
            "socialrec api serving on %s:%d%s",
            settings.web_host,
            port,
            " (SO_REUSEPORT)" if reuse_port else "",
        )
        ready()
        await stopping.wait()
    finally:
        await runner.cleanup()


async def preflight(settings: Settings) -> list[str]:
    """What keeps this process from serving (Redis only: it reads nothing else)."""
    client = redis_client_for(settings)
    try:
        await client.ping()
    except Exception as exc:
        return [f"cannot use Redis ({type(exc).__name__}): {redis_error_hint(exc)}"]
    finally:
        await client.aclose()
    return []


def run_api(settings: Settings, port: int | None = None, reuse_port: bool | None = None) -> int:
    """`socialrec api`: check Redis, then serve until SIGINT/SIGTERM."""
    from streams.runtime.heap import settle_heap

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    problems = asyncio.run(preflight(settings))
    if problems:
        for problem in problems:
            print(f"socialrec api: {problem}", file=sys.stderr)
        return 2
    settle_heap()
    chosen_port = settings.api_port if port is None else port
    reuse = settings.api_reuse_port if reuse_port is None else reuse_port
    try:
        asyncio.run(serve(settings, chosen_port, reuse))
    except OSError as exc:  # the port is taken (without SO_REUSEPORT on both), say
        print(f"socialrec api: cannot serve on port {chosen_port}: {exc}", file=sys.stderr)
        return 2
    return 0
