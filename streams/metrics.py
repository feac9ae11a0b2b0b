"""Prometheus metrics of the worker and of ``socialrec api``. Labels are bounded enums (event
type, reject reason, recommendation source, route template, HTTP status): never user ids, item
ids or payloads."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from models.events import EventType, RejectReason
from models.recommend import Source
from streams.config import SOURCE_NAMES

#: Servers whose outages the worker waits out (streams/runtime/outage.py).
DEPENDENCIES = ("redis", "kafka")

#: Dead-letter reasons beyond validation: the state update or the worker itself failed.
PROCESSING_REASONS = ("processing_error", "worker_error")

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
#: What the pipeline asks of a recommendation source (streams/sources).
SOURCE_CALLS = ("learn", "candidates", "erase")
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Stages of one micro-batch (BatchProcessor.process), timed by socialrec_stage_seconds.
STAGES = ("validate", "state", "learn", "sources", "assembly", "publish")
STAGE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


#: HTTP answers, from a published list read (under a millisecond) to a ranked one.
HTTP_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


@dataclass
class HttpMetrics:
    """What every process with the HTTP surface (streams/http/web.py) counts: the worker's web
    server and each ``socialrec api``. Routes are label values by their template
    (``/api/v1/users/{user_id}/recommendations``), never the path that names a user."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.http_refusals = Counter(
            "socialrec_http_refusals_total",
            "HTTP requests refused, by route template and reason "
            "(streams/http/guard.py, live pages).",
            ["route", "reason"],
            registry=r,
        )
        self.http_responses = Counter(
            "socialrec_http_responses_total",
            "HTTP answers, by route template and status code.",
            ["route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "socialrec_http_request_seconds",
            "Time from a request's arrival to its answer, by route template (the live pages' "
            "event streams, open as long as the page, are not timed).",
            ["route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )


@dataclass
class WorkerMetrics(HttpMetrics):
    """One set of worker metrics bound to its own registry (tests make fresh ones)."""

    def __post_init__(self) -> None:
        """Declares the worker's metrics, one statement each (name, help, labels): long on
        purpose, a catalogue to read, with no logic to split."""
        super().__post_init__()
        r = self.registry
        self.events_consumed = Counter(
            "socialrec_events_consumed_total",
            "Valid events consumed, by event type.",
            ["type"],
            registry=r,
        )
        self.events_duplicate = Counter(
            "socialrec_events_duplicate_total",
            "Events skipped because their event_id was already applied (redelivery, replay).",
            registry=r,
        )
        self.dead_letters = Counter(
            "socialrec_dead_letters_total",
            "Events sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.event_to_publish = Histogram(
            "socialrec_event_to_publish_seconds",
            "From the event's broker timestamp to the acknowledged publish of the user's "
            "recommendations.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "socialrec_batch_size_events",
            "Events per micro-batch.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "socialrec_batch_processing_seconds",
            "Wall time to validate, update state, rank and publish one micro-batch.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_roundtrip = Histogram(
            "socialrec_redis_roundtrip_seconds",
            "Round-trip time of the per-batch Redis state update and read.",
            buckets=REDIS_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "socialrec_event_loop_lag_seconds",
            "How late the event loop woke a task that slept: the longest stretch of work (a "
            "ranking, a trending look, a collection) that held up every batch and request.",
            buckets=REDIS_BUCKETS,
            registry=r,
        )
        self.gc_pause = Histogram(
            "socialrec_gc_pause_seconds",
            "How long each cyclic garbage collection stopped the worker, by generation (2: a "
            "full pass, which walks everything the worker holds).",
            ["generation"],
            buckets=REDIS_BUCKETS,
            registry=r,
        )
        self.recommendations_published = Counter(
            "socialrec_recommendations_published_total",
            "Recommendation lists published, by whether the user was cold-start.",
            ["cold_start"],
            registry=r,
        )
        self.events_dropped_erased = Counter(
            "socialrec_events_dropped_after_erasure_total",
            "Events left out because their user was erased after they reached Kafka.",
            registry=r,
        )
        self.erasure_seconds = Histogram(
            "socialrec_erasure_seconds",
            "From an erasure request's broker timestamp to its receipt being sent.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.trending_freshness = Histogram(
            "socialrec_trending_freshness_seconds",
            "From the newest event in a trending list (its broker timestamp) to the list's "
            "acknowledged publish.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.trending_published = Counter(
            "socialrec_trending_published_total",
            "Trending lists published (one per changed scope per tick).",
            registry=r,
        )
        self.catalog_items = Counter(
            "socialrec_catalog_items_total",
            "Catalog records stored.",
            registry=r,
        )
        self.source_errors = Counter(
            "socialrec_source_errors_total",
            "Failed calls to a recommendation source (the list is published without it).",
            ["source", "call"],
            registry=r,
        )
        self.source_seconds = Histogram(
            "socialrec_source_seconds",
            "Time of one source call for a whole batch (learn, candidates, erase).",
            ["source", "call"],
            buckets=REDIS_BUCKETS,
            registry=r,
        )
        self.items_by_source = Counter(
            "socialrec_recommended_items_total",
            "Items published in recommendation lists, by the source that ranked them.",
            ["source"],
            registry=r,
        )
        # Every label value exists from the start, so dashboards and alerts see zeros, not gaps.
        for source in map(Source, SOURCE_NAMES):
            for call in SOURCE_CALLS:
                self.source_errors.labels(source.value, call)
                self.source_seconds.labels(source.value, call)
        for source in Source:
            self.items_by_source.labels(source.value)
        for event_type in EventType:
            self.events_consumed.labels(event_type.value)
        for reason in [*(r.value for r in RejectReason), *PROCESSING_REASONS]:
            self.dead_letters.labels(reason)
        for cold in ("true", "false"):
            self.recommendations_published.labels(cold)
        self.store_errors = Counter(
            "socialrec_store_errors_total",
            "Failed Redis calls (retried with backoff; the batch is not acknowledged meanwhile).",
            registry=r,
        )
        self.learner_lag_messages = Gauge(
            "socialrec_learner_lag_messages",
            "Events of this worker's partitions the learner has not committed yet (the sources "
            "learn them in the learner's own consumer group).",
            registry=r,
        )
        self.learner_restarts = Counter(
            "socialrec_learner_restarts_total",
            "Times the worker started its child learner again after it exited on its own.",
            registry=r,
        )
        self.learner_lag_seconds = Gauge(
            "socialrec_learner_lag_seconds",
            "Broker time between the newest event this worker consumed and the newest the "
            "learner learnt: how stale the sources' candidates in the lists are.",
            registry=r,
        )
        self.rebalances = Counter(
            "socialrec_rebalances_total",
            "Partitions of events this worker was given (assigned) or lost (revoked) by the "
            "consumer group: several workers share the partitions, and one joining, leaving or "
            "failing moves some of them.",
            ["change"],
            registry=r,
        )
        self.partitions_owned = Gauge(
            "socialrec_partitions_owned",
            "Partitions of events this worker consumes now (at most one worker per partition).",
            registry=r,
        )
        for change in ("assigned", "revoked"):
            self.rebalances.labels(change)
        self.learner_refresh_seconds = Gauge(
            "socialrec_learner_refresh_interval_seconds",
            "How often the learner refreshes an active user's pools at most: the configured "
            "interval, longer while the learner is behind (it paces refreshes to its lag).",
            registry=r,
        )
        self.learner_refreshed_users = Gauge(
            "socialrec_learner_refreshed_users",
            "Users whose pools the learners have computed, in all: a total kept with their "
            "progress in Redis (its rise per second is the refresh rate).",
            registry=r,
        )
        self.dependency_up = Gauge(
            "socialrec_dependency_up",
            "0 while the worker waits out an outage of this server (consuming paused), else 1.",
            ["dependency"],
            registry=r,
        )
        for dependency in DEPENDENCIES:
            self.dependency_up.labels(dependency).set(1)
        self._monitoring_metrics()

    def waiting_out(self) -> list[str]:
        """The dependencies whose outage the worker is waiting out right now."""
        # The gauge's own value: get_sample_value collects the whole registry (milliseconds
        # per /health probe).
        return [d for d in DEPENDENCIES if self.dependency_up.labels(d)._value.get() == 0]

    def _monitoring_metrics(self) -> None:
        """Consumer lag, per-stage latency, live quality and fairness (monitoring/README.md):
        declarations only, long on purpose like :meth:`__post_init__`."""
        r = self.registry
        self.consumer_lag = Gauge(
            "socialrec_consumer_lag_messages",
            "Messages of the events topic not yet committed by this worker's consumer group "
            "(log end offset minus committed offset), per partition this worker owns.",
            ["partition"],
            registry=r,
        )
        self.consumer_lag_errors = Counter(
            "socialrec_consumer_lag_errors_total",
            "Failed consumer lag probes (logged and skipped; the last values stay).",
            registry=r,
        )
        self.stage_seconds = Histogram(
            "socialrec_stage_seconds",
            "Wall time of one stage of a micro-batch: validate, state (the Redis Lua update), "
            "sources (learn + candidates), assembly (ranking), publish (waiting for Kafka).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        self.live_hits = Counter(
            "socialrec_live_hits_total",
            "Item events whose item was in the list last published to that user.",
            registry=r,
        )
        self.live_requests = Counter(
            "socialrec_live_requests_total",
            "Item events of users this worker had published a list to (prequential requests).",
            registry=r,
        )
        self.blend_weight = Gauge(
            "socialrec_blend_weight",
            "The blend weight each source's candidates get (learnt from what users act on next "
            "unless SOCIALREC_LEARN_BLEND=false; label: the source).",
            ["source"],
            registry=r,
        )
        self.social_half_life_seconds = Gauge(
            "socialrec_social_half_life_seconds",
            "The half-life social proof decays by in this process's lists: the one the learner "
            "learnt from the stream (the popularity half-life that best predicts the next item), "
            "the configured one until it reports.",
            registry=r,
        )
        self.blend_observations = Gauge(
            "socialrec_blend_observations",
            "Lists whose next item the blend learnt from (this worker's learner, restored ones "
            "included).",
            registry=r,
        )
        self.blend_users_remembered = Gauge(
            "socialrec_blend_users_remembered",
            "Users whose last list's candidates the blend learner holds (bounded by "
            "SOCIALREC_LEARN_BLEND_USERS; erased with the user).",
            registry=r,
        )
        self.live_users_remembered = Gauge(
            "socialrec_live_users_remembered",
            "Users whose last list the live quality tracker holds (bounded; erased with the "
            "user on every worker).",
            registry=r,
        )
        self.forgotten_users = Counter(
            "socialrec_forgotten_users_total",
            "Users whose in-memory state this process dropped on an erasure broadcast "
            "(privacy.forget), whichever worker honoured the request.",
            registry=r,
        )
        self.live_hit_rate = Gauge(
            "socialrec_live_hit_rate",
            "Prequential hit rate over the last requests (window: socialrec_live_window_requests).",
            registry=r,
        )
        self.live_ranking_auc = Gauge(
            "socialrec_live_ranking_auc",
            "Mean per-request AUC of the published ranking over the last hits: the share of the "
            "other shown items ranked below the one the user acted on (0.5 = no better than "
            "the list's order at random).",
            registry=r,
        )
        self.live_window_requests = Gauge(
            "socialrec_live_window_requests",
            "Requests currently in the hit-rate window.",
            registry=r,
        )
        self.exposure_gini = Gauge(
            "socialrec_exposure_gini",
            "Gini coefficient of item exposure over the last published lists (0: even).",
            registry=r,
        )
        self.exposure_long_tail = Gauge(
            "socialrec_exposure_long_tail_ratio",
            "Share of list slots over the last published lists given to items outside the "
            "most exposed 20 %.",
            registry=r,
        )
        self.catalog_coverage = Gauge(
            "socialrec_catalog_coverage_ratio",
            "Distinct items in the last published lists over the distinct items this worker "
            "has seen (events and lists).",
            registry=r,
        )
        self.known_items = Gauge(
            "socialrec_known_items",
            "Distinct items this worker has seen (the denominator of coverage; saturates).",
            registry=r,
        )


def count_by(counter: Counter, labels: Iterable[str]) -> None:
    """Add one to ``counter`` per label in ``labels``, one ``inc`` per distinct label: a
    batch's events and listed items would otherwise pay a labelled lookup each.

    >>> c = Counter("demo_total", "demo", ["kind"], registry=CollectorRegistry())
    >>> count_by(c, ["a", "b", "a"])
    >>> c.labels("a")._value.get(), c.labels("b")._value.get()
    (2.0, 1.0)
    """
    for label, n in collections.Counter(labels).items():
        counter.labels(label).inc(n)


#: How often the event loop's lag is sampled (the worker runs :func:`watch_loop_lag`).
LOOP_PROBE_S = 0.05


async def watch_loop_lag(record: Callable[[float], None], interval_s: float = LOOP_PROBE_S) -> None:
    """Sleep ``interval_s`` again and again and record how late each wake-up comes. The loop
    runs one callback at a time, so a late wake-up is work that held up every batch and
    request meanwhile (``record``: the lag histogram's ``observe``). Runs until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval_s)
        record(max(0.0, loop.time() - start - interval_s))
