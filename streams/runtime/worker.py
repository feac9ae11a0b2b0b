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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from models.events import EventType
from models.state import StateParams
from streams.config import Settings
from streams.http.api import Api, ApiDeps, build_api
from streams.http.live import EVENTS_ROUTE, LivePages, live_pages
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
from streams.runtime.heap import watched_pauses
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
from streams.sources.content import RedisContent
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
#: How long a batch of catalog records or of erasure requests waits to fill. Neither is on a
#: shopper's path to a list, and a Faust stream waiting the events' window (5 ms) wakes the
#: event loop that often even when idle: about 1 % of a core a stream.
OFF_PATH_WITHIN_S = 0.1


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
        withdraw=settings.learner != "inline",
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


def _raw_topic(app: faust.App, settings: Settings, name: str) -> Any:
    return app.topic(settings.topic(name), key_type=bytes, value_type=bytes, value_serializer="raw")


@dataclass(eq=False)  # compared and hashed by identity, as Faust may do with its loops
class WorkerLoops:
    """What the worker's agents, timers and /health page do, on the parts create_app builds.

    Faust names an agent after its function's module and name, so each agent's method keeps
    the name its agent had (``process_erasures``, ...). The components each loop drives are
    attached by create_app as it builds them, in the order it registers the loops.
    """

    app: faust.App
    settings: Settings
    metrics: WorkerMetrics
    redis_client: Any
    processor: BatchProcessor
    learnt: LearnerState
    events_consumer: EventsConsumer | None
    erasures: ErasureProcessor = field(init=False)
    forgets: ForgetFollower = field(init=False)
    catalog: CatalogIngester = field(init=False)
    trending: TrendingPublisher = field(init=False)
    lag: ConsumerLagProbe = field(init=False)
    api: Api = field(init=False)

    @property
    def within(self) -> float:
        """How long a batch waits to fill, in seconds."""
        return self.settings.batch_within_ms / 1000.0

    async def _each_isolated(
        self,
        stream: Any,
        size: int,
        step: Callable[[Sequence[InboundRecord]], Awaitable[object]],
        what: str,
        within: float,
    ) -> None:
        """A topic's records in batches through ``step``, each waiting up to ``within`` to
        fill; one that fails alone is dead-lettered."""
        async for batch in stream.take_events(size, within=within):
            records = [_inbound(event) for event in batch]
            await isolating(step, records, self.metrics, what, self.not_processed)

    def not_processed(self, records: Sequence[InboundRecord]) -> Awaitable[None]:
        return self.processor.dead_letter_all(records, PROCESSING_ERROR)

    def events_assignment(self) -> set[Any]:
        if self.events_consumer is not None:
            return self.events_consumer.assignment()
        topic = self.settings.topic("events")
        consumer = self.app.consumer
        return {tp for tp in consumer.assignment() if tp.topic == topic} if consumer else set()

    async def process_events(self, stream: Any) -> None:  # SOCIALREC_EVENTS_CONSUMER=faust
        async for batch in stream.take_events(self.settings.batch_max, within=self.within):
            records = [_inbound(event) for event in batch]
            try:
                await self.processor.process(records)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Unexpected bug: keep the worker alive but never drop silently. The
                # events go to the DLQ with the reason, to be inspected and replayed.
                log.exception("batch failed; dead-lettering %d events", len(records))
                await self.processor.dead_letter_all(records, WORKER_ERROR)

    async def process_erasures(self, stream: Any) -> None:
        # An erasure is never skipped: outages are waited out (it is idempotent), and only
        # then does take_events acknowledge the requests. One that fails for its content
        # is dead-lettered rather than blocking every later erasure behind it.
        await self._each_isolated(
            stream, 100, self.erasures.process, "erasure batch", within=OFF_PATH_WITHIN_S
        )

    async def watch_loop(self) -> None:
        metrics = self.metrics
        with watched_pauses() as pauses:

            def record(lag: float) -> None:
                metrics.loop_lag.observe(lag)
                for generation, seconds in pauses.drain():
                    metrics.gc_pause.labels(str(generation)).observe(seconds)

            await watch_loop_lag(record)  # until the worker stops (cancelled)

    async def follow_forgets(self) -> None:
        await self.forgets.run()  # until the worker stops (cancelled)

    async def refresh_share_recipients(self, stream: Any) -> None:
        step = self.processor.refresh_recipients
        await self._each_isolated(
            stream, self.settings.batch_max, step, "share refresh", within=self.within
        )

    async def ingest_catalog(self, stream: Any) -> None:
        step = self.catalog.process
        await self._each_isolated(
            stream, self.settings.batch_max, step, "catalog batch", within=OFF_PATH_WITHIN_S
        )

    def use_trending(self, items: list[tuple[str, float]]) -> None:
        self.processor.trending = items

    async def publish_trending(self) -> None:
        await self.trending.run_tick()

    async def probe_consumer_lag(self) -> None:
        await self.lag.probe()  # never raises: a failed probe is counted and skipped
        if self.processor.sources is None:  # a learner process teaches the sources
            await self._probe_learner()

    async def _probe_learner(self) -> None:
        try:
            progress = await self.learnt.progress()
        except Exception:  # an outage: the next probe tries again
            return
        learnt_ts = 0.0 if progress is None else progress.event_ts
        lag_s = max(0.0, self.processor.newest_arrival - learnt_ts)
        self.metrics.learner_lag_seconds.set(lag_s)
        if progress is not None and progress.refresh_s is not None:
            self.metrics.learner_refresh_seconds.set(progress.refresh_s)
        if progress is not None:
            self.metrics.learner_refreshed_users.set(progress.refreshed)
            self.processor.follow_learner(progress)

    async def health(self) -> tuple[dict[str, Any], bool]:
        """Ready = Redis answers and the consumer owns partitions (after the group join)."""
        try:
            redis_ok = bool(await self.redis_client.ping())
        except Exception:  # any failure to reach Redis is "not ready", never a crash
            redis_ok = False
        partitions = len(self.events_assignment())
        # A dependency the worker is waiting out (consuming paused) makes it not ready.
        waiting = self.metrics.waiting_out()
        ready = redis_ok and partitions > 0 and not waiting
        body = {
            "ready": ready,
            "redis": redis_ok,
            "assigned_partitions": partitions,
            "waiting_out": waiting,
        }
        return body, ready

    async def warm_search(self) -> None:
        await self.api.warm()


def _add_pages(app: faust.App, metrics: WorkerMetrics, loops: WorkerLoops) -> None:
    # Faust builds a page's view class from a plain function (a bound method would not be
    # handed the view), so the two pages stay small functions over what they report.
    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return metrics_response(metrics.registry)

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        body, ready = await loops.health()
        return web.json(body, status=200 if ready else 503)


def create_app(settings: Settings, metrics: WorkerMetrics | None = None) -> faust.App:
    """Build the Faust app: the events consumer, the agents and timers of WorkerLoops, the
    pages and the API's routes."""
    metrics = metrics or WorkerMetrics()
    app = faust_app(settings)
    events_topic = _raw_topic(app, settings, "events")
    redis_client = redis_client_for(settings)
    store = settings_store(settings, redis_client)
    sources, content = build_sources(redis_client, settings, store.params, metrics)
    # The hot path's lists go out through a plain aiokafka producer (streams/runtime/publisher.py).
    own = KafkaPublisher(settings, metrics) if settings.events_consumer == "aiokafka" else None
    publisher = own or FaustPublisher(app, metrics)
    learnt = LearnerState(redis_client, dedupe_window=settings.dedupe_window)
    processor = batch_processor(settings, store, publisher, metrics, sources, learnt)
    events_consumer: EventsConsumer | None = None
    if settings.events_consumer == "aiokafka":  # the default: see streams/runtime/consumer.py
        events_consumer = EventsConsumer(settings, processor, store, metrics, own)
        app.service(events_consumer)  # type: ignore[arg-type]  # an instance is accepted too
    loops = WorkerLoops(app, settings, metrics, redis_client, processor, learnt, events_consumer)
    if events_consumer is None:
        app.agent(events_topic, concurrency=1)(loops.process_events)
    _add_side_agents(loops, store, sources, content)
    live = _add_timers(loops, store)
    _add_pages(app, metrics, loops)
    loops.api = build_api(ApiDeps(settings, redis_client, store, processor, content))
    processor.analytics = loops.api.analytics  # merchant figures are counted as events are applied
    app.task(loops.warm_search)
    # The same routes, middlewares and guard as `socialrec api` (streams/http/web.py).
    mount(web_app_of(app), settings, metrics, loops.api, live)
    return app


def _add_side_agents(
    loops: WorkerLoops, store: RedisStore, sources: SourceSet, content: RedisContent | None
) -> None:
    """The agents of the privacy requests, shares and catalog, and the follower of erasures."""
    app, settings, metrics, processor = loops.app, loops.settings, loops.metrics, loops.processor
    loops.erasures = ErasureProcessor(
        settings,
        store,
        FaustPublisher(app, metrics),
        metrics,
        sources,
        processor.refresh_users,
        forget=processor.forget,
        learnt=loops.learnt,
    )
    app.agent(_raw_topic(app, settings, "privacy.requests"), concurrency=1)(loops.process_erasures)
    # Whichever worker honoured an erasure, this one forgets the users' in-memory state too.
    forget_group = f"{settings.app_id}-forget"
    loops.forgets = ForgetFollower(settings, processor.forget_erased, metrics, forget_group)
    app.task(loops.watch_loop)
    app.task(loops.follow_forgets)
    app.agent(_raw_topic(app, settings, "shares"), concurrency=1)(loops.refresh_share_recipients)
    catalog_topic = _raw_topic(app, settings, "catalog")
    catalog_publisher = FaustPublisher(app, metrics)
    loops.catalog = CatalogIngester(settings, store, catalog_publisher, metrics, content)
    app.agent(catalog_topic, concurrency=1)(loops.ingest_catalog)


def _add_timers(loops: WorkerLoops, store: RedisStore) -> LivePages:
    """Trending's publisher and the lag probe, on timers; the live pages trending feeds."""
    app, settings, metrics, processor = loops.app, loops.settings, loops.metrics, loops.processor
    trending_publisher = FaustPublisher(app, metrics)
    loops.trending = TrendingPublisher(
        settings, store, trending_publisher, metrics, loops.use_trending
    )
    live_refusals = metrics.http_refusals.labels(EVENTS_ROUTE, "connections")
    # /live/{stream_id}: hosts' page, pushed this worker's lists the moment Kafka has them
    live = live_pages(settings, store, refused=live_refusals.inc)
    loops.trending.listeners.append(live.broadcaster.publish)
    app.timer(settings.trending_interval_s)(loops.publish_trending)
    group = events_group(settings) if loops.events_consumer is not None else settings.app_id
    learner = learner_group(settings) if processor.sources is None else None
    loops.lag = ConsumerLagProbe(settings, metrics, loops.events_assignment, group, learner)
    app.timer(LAG_INTERVAL_S)(loops.probe_consumer_lag)
    return live
