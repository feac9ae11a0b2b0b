"""The Faust worker: ``events`` in micro-batches through the pipeline, and the other topics.

``events`` is read by an aiokafka consumer service (streams/runtime/consumer.py: offsets kept with
the state); catalog, shares and privacy requests are Faust agents. Known Faust pitfalls this
follows: agent concurrency stays 1 (a higher one can commit past in-flight messages) and
throughput comes from ``take_events`` batches; the wire is plain bytes (no Faust record
metadata); publishing uses explicit keys; state lives in Redis, not in Faust tables; an
exception never escapes an agent loop (a crashed agent would stop consuming).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

import faust

from models.events import EventType
from models.state import StateParams
from streams.config import Settings
from streams.http.api import ApiDeps, build_api
from streams.http.live import EVENTS_ROUTE, live_pages
from streams.http.web import metrics_response, mount, web_app_of
from streams.metrics import WorkerMetrics, watch_loop_lag
from streams.ops.topics import erasure_mark_ttl_s, load_topics
from streams.pipeline import (
    PROCESSING_ERROR,
    WORKER_ERROR,
    BatchProcessor,
    InboundRecord,
    Publisher,
)
from streams.runtime.catalog import CatalogIngester
from streams.runtime.consumer import EventsConsumer, events_group
from streams.runtime.forgetting import ForgetFollower
from streams.runtime.lag import LAG_INTERVAL_S, ConsumerLagProbe
from streams.runtime.learner import learner_group
from streams.runtime.learner_state import LearnerState
from streams.runtime.outage import isolating
from streams.runtime.privacy import ErasureProcessor
from streams.runtime.publisher import FaustPublisher, KafkaPublisher
from streams.runtime.trending import TrendingPublisher
from streams.security import (
    faust_credentials,
    redis_client_for,
)
from streams.sources import SourceSet
from streams.sources.factory import build_sources
from streams.store import RedisStore, TrendingParams

log = logging.getLogger(__name__)

#: Topics the worker reads or writes; it refuses to start without them.
WORKER_TOPICS = (
    "events",
    "catalog",
    "recommendations",
    "trending",
    "shares",
    "events.dlq",
    "privacy.requests",
    "privacy.receipts",
    "privacy.forget",
)


def state_params(settings: Settings) -> StateParams:
    """The store's sizes and weights, from configuration."""
    return StateParams(
        weights={t: settings.weight(t) for t in EventType},
        history_size=settings.history_size,
        neighbours=settings.neighbours,
        cooccurrence_cap=settings.cooccurrence_cap,
        cooccurrence_window=settings.cooccurrence_window,
        dedupe_window=settings.dedupe_window,
        affinity_cap=settings.affinity_cap,
        half_life_s=settings.popularity_half_life_s,
        popularity_cap=settings.popularity_cap,
        shrinkage=settings.similarity_shrinkage,
        shrinkage_scale=settings.similarity_shrinkage_scale,
        seen_window_s=settings.seen_window_s,
        seen_cap=settings.seen_cap,
    )


def settings_store(settings: Settings, client: Any) -> RedisStore:
    """The store of these settings on ``client`` (the worker's, and each `socialrec api`'s)."""
    return RedisStore(
        client,
        state_params(settings),
        trending=TrendingParams(settings.trending_window_s, settings.trending_bucket_s),
        erased_ttl_s=erasure_mark_ttl_s(load_topics(settings.topics_file)),
        neighbours_ttl_s=settings.neighbours_ttl_s,
        popular_ttl_s=settings.popular_ttl_s,
    )


def batch_processor(
    settings: Settings,
    store: RedisStore,
    publisher: Publisher,
    metrics: WorkerMetrics,
    sources: SourceSet,
    learnt: LearnerState,
) -> BatchProcessor:
    """The processor of these settings: the sources' candidates asked in the batch
    (``SOCIALREC_LEARNER=inline``, or no source but item-CF), else read from the pools the
    learner keeps. A `socialrec api` builds the same one to rank lists on request."""
    if settings.learner == "inline" or not sources.models:
        return BatchProcessor(settings, store, publisher, metrics, sources=sources)
    # the learner computes the sources' candidates ahead; lists read them
    return BatchProcessor(settings, store, publisher, metrics, pools=learnt.pools)


def _inbound(event: Any) -> InboundRecord:
    message = event.message
    return InboundRecord(
        value=message.value,
        key=message.key,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=message.timestamp,
    )


def faust_app(settings: Settings) -> faust.App:
    """The Faust app with the worker's settings and no agents (the bench's forwarding baseline
    uses the same)."""
    return faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=faust_credentials(settings),  # SASL / TLS, as every Kafka client
        store="memory://",
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        topic_allow_declare=False,  # topics.yaml is the source of truth (`socialrec topics apply`)
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        # A crashed worker's partitions move after the session timeout (Faust's default is
        # 60 s); heartbeats at a third of it, as Kafka recommends.
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.session_timeout_s / 3,
        broker_commit_every=settings.batch_max,
        broker_commit_interval=1.0,
        producer_linger_ms=1,
        # All in-sync replicas on a cluster. Faust offers no idempotence outside transactions:
        # its retries may repeat a catalog, trending or erasure record (compacted, keyed, the
        # latest wins); the hot path's own producer is idempotent (streams/runtime/publisher.py).
        producer_acks=settings.producer_acks,
        stream_wait_empty=False,
        key_serializer="raw",
        value_serializer="raw",
        datadir=str(settings.data_dir / "faust"),
    )


def create_app(settings: Settings, metrics: WorkerMetrics | None = None) -> faust.App:
    """Build the Faust app with its agent and /metrics page."""
    metrics = metrics or WorkerMetrics()
    app = faust_app(settings)
    events_topic = app.topic(
        settings.topic("events"), key_type=bytes, value_type=bytes, value_serializer="raw"
    )
    redis_client = redis_client_for(settings)
    store = settings_store(settings, redis_client)
    sources, content = build_sources(redis_client, settings, store.params, metrics)
    # The hot path's lists go out through a plain aiokafka producer (streams/runtime/publisher.py).
    own = KafkaPublisher(settings, metrics) if settings.events_consumer == "aiokafka" else None
    publisher = own or FaustPublisher(app, metrics)
    learnt = LearnerState(redis_client, dedupe_window=settings.dedupe_window)
    processor = batch_processor(settings, store, publisher, metrics, sources, learnt)
    within = settings.batch_within_ms / 1000.0
    events_consumer: EventsConsumer | None = None
    if settings.events_consumer == "aiokafka":  # the default: see streams/runtime/consumer.py
        events_consumer = EventsConsumer(settings, processor, store, metrics, own)
        app.service(events_consumer)  # type: ignore[arg-type]  # an instance is accepted too
    else:

        @app.agent(events_topic, concurrency=1)
        async def process_events(stream: Any) -> None:
            async for batch in stream.take_events(settings.batch_max, within=within):
                records = [_inbound(event) for event in batch]
                try:
                    await processor.process(records)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Unexpected bug: keep the worker alive but never drop silently. The
                    # events go to the DLQ with the reason, to be inspected and replayed.
                    log.exception("batch failed; dead-lettering %d events", len(records))
                    await processor.dead_letter_all(records, WORKER_ERROR)

    def events_assignment() -> set[Any]:
        if events_consumer is not None:
            return events_consumer.assignment()
        topic = settings.topic("events")
        return (
            {tp for tp in app.consumer.assignment() if tp.topic == topic} if app.consumer else set()
        )

    def not_processed(records: Sequence[InboundRecord]) -> Awaitable[None]:
        return processor.dead_letter_all(records, PROCESSING_ERROR)

    privacy_topic = app.topic(
        settings.topic("privacy.requests"), key_type=bytes, value_type=bytes, value_serializer="raw"
    )
    erasures = ErasureProcessor(
        settings,
        store,
        FaustPublisher(app, metrics),
        metrics,
        sources,
        processor.refresh_users,
        forget=processor.forget,
        learnt=learnt,
    )

    @app.agent(privacy_topic, concurrency=1)
    async def process_erasures(stream: Any) -> None:
        async for batch in stream.take_events(100, within=within):
            records = [_inbound(event) for event in batch]
            # An erasure is never skipped: outages are waited out (it is idempotent), and only
            # then does take_events acknowledge the requests. One that fails for its content
            # is dead-lettered rather than blocking every later erasure behind it.
            await isolating(erasures.process, records, metrics, "erasure batch", not_processed)

    # Whichever worker honoured an erasure, this one forgets the users' in-memory state too.
    forgets = ForgetFollower(
        settings, processor.forget_erased, metrics, f"{settings.app_id}-forget"
    )

    @app.task  # type: ignore[untyped-decorator]
    async def watch_loop() -> None:
        await watch_loop_lag(metrics.loop_lag.observe)  # until the worker stops (cancelled)

    @app.task  # type: ignore[untyped-decorator]
    async def follow_forgets() -> None:
        await forgets.run()  # until the worker stops (cancelled)

    shares_topic = app.topic(
        settings.topic("shares"), key_type=bytes, value_type=bytes, value_serializer="raw"
    )

    @app.agent(shares_topic, concurrency=1)
    async def refresh_share_recipients(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_max, within=within):
            records = [_inbound(event) for event in batch]
            await isolating(
                processor.refresh_recipients, records, metrics, "share refresh", not_processed
            )

    catalog_topic = app.topic(
        settings.topic("catalog"), key_type=bytes, value_type=bytes, value_serializer="raw"
    )
    catalog = CatalogIngester(settings, store, FaustPublisher(app, metrics), metrics, content)

    @app.agent(catalog_topic, concurrency=1)
    async def ingest_catalog(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_max, within=within):
            records = [_inbound(event) for event in batch]
            await isolating(catalog.process, records, metrics, "catalog batch", not_processed)

    def use_trending(items: list[tuple[str, float]]) -> None:
        processor.trending = items

    trending = TrendingPublisher(
        settings, store, FaustPublisher(app, metrics), metrics, use_trending
    )
    live_refusals = metrics.http_refusals.labels(EVENTS_ROUTE, "connections")
    # /live/{stream_id}: hosts' page, pushed this worker's lists the moment Kafka has them
    live = live_pages(settings, store, refused=live_refusals.inc)
    trending.listeners.append(live.broadcaster.publish)

    @app.timer(settings.trending_interval_s)  # type: ignore[untyped-decorator]
    async def publish_trending() -> None:
        try:
            await trending.tick()
        except Exception:  # the next tick retries; the changed scopes were re-marked or lost
            log.exception("trending publish failed")

    group = events_group(settings) if events_consumer is not None else settings.app_id
    learner = learner_group(settings) if processor.sources is None else None
    lag = ConsumerLagProbe(settings, metrics, events_assignment, group, learner)

    @app.timer(LAG_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def probe_consumer_lag() -> None:
        await lag.probe()  # never raises: a failed probe is counted and skipped
        if processor.sources is None:  # a learner process teaches the sources
            try:
                progress = await learnt.progress()
            except Exception:  # an outage: the next probe tries again
                return
            learnt_ts = 0.0 if progress is None else progress.event_ts
            metrics.learner_lag_seconds.set(max(0.0, processor.newest_arrival - learnt_ts))
            if progress is not None and progress.refresh_s is not None:
                metrics.learner_refresh_seconds.set(progress.refresh_s)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return metrics_response(metrics.registry)

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        """Ready = Redis answers and the consumer owns partitions (after the group join)."""
        try:
            redis_ok = bool(await redis_client.ping())
        except Exception:  # any failure to reach Redis is "not ready", never a crash
            redis_ok = False
        partitions = len(events_assignment())
        # A dependency the worker is waiting out (consuming paused) makes it not ready.
        waiting = metrics.waiting_out()
        ready = redis_ok and partitions > 0 and not waiting
        body = {
            "ready": ready,
            "redis": redis_ok,
            "assigned_partitions": partitions,
            "waiting_out": waiting,
        }
        return web.json(body, status=200 if ready else 503)

    api = build_api(ApiDeps(settings, redis_client, store, processor, content))
    processor.analytics = api.analytics  # merchant figures are counted as events are applied

    @app.task  # type: ignore[untyped-decorator]
    async def warm_search() -> None:
        await api.warm()

    # The same routes, middlewares and guard as `socialrec api` (streams/http/web.py).
    mount(web_app_of(app), settings, metrics, api, live)
    return app
