"""One micro-batch, end to end: validate, dead-letter the bad, update state, rank, publish.

The worker (streams/worker.py) feeds this from Faust; tests feed it directly. All I/O per batch
is one Redis round trip for the state update (plus one pipelined cache write) and one gather of
Kafka send futures; nothing in the per-event loop awaits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import orjson
import redis.exceptions

from models.evaluation import TARGET_TYPES
from models.events import Event, EventType, Rejection, RejectReason, parse_event
from models.live import LiveQuality
from models.recommend import (
    Pool,
    Ranking,
    Reason,
    Recommendations,
    RecommendParams,
    Source,
    excluded_items,
)
from models.state import Outcome
from streams.analytics import MerchantAnalytics
from streams.config import Settings
from streams.forgetting import marked
from streams.knobs import WorkerKnobs
from streams.metrics import PROCESSING_REASONS, WorkerMetrics, count_by
from streams.outage import BACKOFF_S, wait_out
from streams.pools import PoolStore
from streams.sources import SourceSet
from streams.store import BatchResult, OffsetRange, Position, Store

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Reason labels for events that validated but could not be processed.
PROCESSING_ERROR, WORKER_ERROR = PROCESSING_REASONS


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """A consumed Kafka record, independent of the client library that read it."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: float  # broker timestamp (LogAppendTime on the events topic), Unix seconds


class Publisher(Protocol):
    """Sends one record; awaiting the call enqueues it, awaiting the result confirms delivery."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> Awaitable[Any]: ...


@dataclass
class BatchSummary:
    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    published: int = 0
    dropped_erased: int = 0  # in flight when their user was erased
    #: Partitions whose stored state was behind (see streams.store.OffsetRange): nothing of
    #: the batch was applied or published; the consumer goes back to each one's position.
    rewinds: dict[str, Position] = field(default_factory=dict)


@dataclass
class Applied:
    """A batch past its state step whose lists are not ranked yet (:meth:`BatchProcessor.apply`)."""

    summary: BatchSummary
    result: BatchResult
    #: Per user to publish for: the event that triggers the list, and its record.
    triggers: dict[str, tuple[str, InboundRecord]]
    published_events: list[InboundRecord]  # whose event-to-publish time is observed
    fresh: list[Event]  # applied now, not before: scored against the lists shown until now
    pending: list[Awaitable[Any]]  # dead letters, forwarded shares, analytics, knobs' save
    stages: StageTimer
    started: float  # time.perf_counter() at the batch's start
    now: float
    ahead: asyncio.Future[Any] | None  # the learner's pools, read beside the state step
    learning: asyncio.Future[None] | None  # inline sources learning the batch's fresh events


class StageTimer:
    """Wall time per stage of one batch, summed over the stage's pieces and observed once, so
    ``socialrec_stage_seconds`` has one observation per stage per batch.

    >>> stages = StageTimer()
    >>> with stages("validate"):
    ...     pass
    >>> list(stages.seconds)
    ['validate']
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed

    def observe(self, metrics: WorkerMetrics) -> None:
        for stage, seconds in self.seconds.items():
            metrics.stage_seconds.labels(stage).observe(seconds)


def dead_letter_headers(record: InboundRecord, reason: str, detail: str) -> list[tuple[str, bytes]]:
    """Kafka Connect's ``errors.deadletterqueue`` header convention, plus a metric-safe reason.

    The detail names fields, never values, so nothing of the payload leaks into headers.
    """
    return [
        ("__connect.errors.topic", record.topic.encode()),
        ("__connect.errors.partition", str(record.partition).encode()),
        ("__connect.errors.offset", str(record.offset).encode()),
        ("__connect.errors.exception.class.name", reason.encode()),
        ("__connect.errors.exception.message", detail.encode()),
        ("socialrec.dlq.reason", reason.encode()),
        ("socialrec.dlq.timestamp", repr(record.timestamp).encode()),
    ]


def _reason_json(reason: Reason) -> dict[str, object]:
    """Only the fields that apply: an item of the user's, a person and their action, or what
    kind of match it is (``taste_match``, ``profile_match``, ``similar_shoppers``)."""
    body: dict[str, object] = {}
    if reason.item_id is not None:
        body["item_id"] = reason.item_id
    if reason.user_id is not None:
        body["user_id"] = reason.user_id
    if reason.action is not None:
        body["action"] = reason.action
    body["contribution"] = round(reason.contribution, 6)
    return body


def recommendations_json(
    recs: Recommendations, trigger: InboundRecord, trigger_event_id: str, model_version: str
) -> bytes:
    """The wire form of one user's recommendations (schema in topics.yaml)."""
    return orjson.dumps(
        {
            "user_id": recs.user_id,
            "items": [
                {
                    "item_id": item.item_id,
                    "score": round(item.score, 6),
                    "source": item.source.value,
                    "reasons": [_reason_json(r) for r in item.reasons],
                    "sources": {s.value: round(v, 6) for s, v in item.sources},
                }
                for item in recs.items
            ],
            "cold_start": recs.cold_start,
            "trigger": {
                "event_id": trigger_event_id,
                "topic": trigger.topic,
                "partition": trigger.partition,
                "offset": trigger.offset,
            },
            "generated_at": time.time(),
            "model_version": model_version,
        }
    )


def validate_record(settings: Settings, record: InboundRecord, now: float) -> Event | Rejection:
    """The event contract (models/events.py) with the configured limits, and the Kafka key:
    it must be the ``user_id``, or the user's events would not all reach the one worker that
    owns the user."""
    if record.value is None:
        return Rejection(RejectReason.NOT_JSON, "record has no value (tombstone)")
    checked = parse_event(
        record.value,
        now=now,
        max_bytes=settings.max_event_bytes,
        max_future_skew_s=settings.max_future_skew_s,
        min_ts=settings.min_event_ts,
    )
    if isinstance(checked, Event) and record.key != checked.user_id.encode():
        return Rejection(RejectReason.KEY_MISMATCH, "the record's key is not its user_id")
    return checked


def recommend_params(settings: Settings) -> RecommendParams:
    """How lists are assembled, from configuration."""
    return RecommendParams(
        top_n=settings.top_n,
        exclude_items=settings.exclude_items,
        exclude_seen=settings.exclude_seen,
        half_life_s=settings.popularity_half_life_s,
        category_cap=settings.category_cap,
        explore_slots=settings.explore_slots,
    )


class CandidateSource(Protocol):
    """Where a batch's lists get the sources' candidates: computed now (``SourceSet``) or
    computed ahead by the learner (``streams.pools.PoolStore``)."""

    async def candidates(
        self, exclude: Mapping[str, frozenset[str]], now: float
    ) -> dict[str, dict[Source, Pool]]: ...


async def _done() -> None:
    """Nothing left to await."""


@dataclass
class BatchProcessor:
    settings: Settings
    store: Store
    publisher: Publisher
    metrics: WorkerMetrics
    clock: Callable[[], float] = time.time
    retry_backoff_s: Sequence[float] = BACKOFF_S
    _params: RecommendParams = field(init=False)
    #: The latest global trending list (item, count), refreshed by the trending publisher:
    #: the fallback between personal candidates and long-run popularity.
    trending: list[tuple[str, float]] = field(default_factory=list)
    #: Recommendation sources beside the core state (MF, content, user-CF, FBT), learning
    #: inside the batch (``SOCIALREC_LEARNER=inline``); with a learner process, None.
    sources: SourceSet | None = None
    #: The sources' candidates computed ahead by the learner (its pools); without them, the
    #: lists ask ``sources`` now.
    pools: PoolStore | None = None
    #: Broker time of the newest event consumed (the learner's lag is measured against it).
    newest_arrival: float = 0.0
    #: Live hit rate and fairness of the published lists (per-user part erased by forget()).
    live: LiveQuality = field(default_factory=LiveQuality)
    #: Per-merchant funnel and exposure counters (streams/analytics.py), if the API runs.
    analytics: MerchantAnalytics | None = None
    #: The learnt blend and each user's last list's candidates (None: the configured blend).
    knobs: WorkerKnobs | None = field(init=False, default=None)
    _knobs_saved: float | None = field(init=False, default=None)  # None: not restored yet
    #: The inline sources' learning of the latest batch: the next batch learns after it.
    _learning: asyncio.Future[None] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        s = self.settings
        self._params = recommend_params(s)
        if s.learn_blend:
            self.knobs = self._start_knobs()
        self._show_weights(dict(self._params.source_weights))
        self._recs_topic = s.topic("recommendations")
        self._dlq_topic = s.topic("events.dlq")
        # Read at scrape time: the window measures sort the exposed items.
        m, live = self.metrics, self.live
        m.live_hit_rate.set_function(live.hit_rate.value)
        m.live_ranking_auc.set_function(live.ranking_auc.value)
        m.live_window_requests.set_function(lambda: live.hit_rate.requests)
        m.exposure_gini.set_function(live.exposure.gini)
        m.exposure_long_tail.set_function(live.exposure.long_tail_share)
        m.catalog_coverage.set_function(live.coverage)
        m.known_items.set_function(lambda: len(live.known))
        m.blend_users_remembered.set_function(
            lambda: self.knobs.remembered() if self.knobs is not None else 0
        )
        m.live_users_remembered.set_function(lambda: len(live.last))

    def forget(self, user_ids: Iterable[str]) -> int:
        """Drop what this worker remembers per user (erasure): the last list shown to them
        (for the live metrics, and its candidates for the blend learner)."""
        users = list(user_ids)
        if self.knobs is not None:
            self.knobs.forget(users)
        return self.live.forget(users)

    async def forget_erased(self, digests: AbstractSet[str]) -> int:
        """:meth:`forget` the users an erasure broadcast names by their digests
        (streams/forgetting.py: whichever worker honoured the request, every worker forgets)."""
        held = self.live.users() + (self.knobs.remembered_users() if self.knobs is not None else [])
        users = await marked(held, digests)
        self.forget(users)
        return len(users)

    def _start_knobs(self, stored: bytes | None = None) -> WorkerKnobs:
        s, weights = self.settings, dict(self._params.source_weights)
        half_life_s, users = s.popularity_half_life_s, s.learn_blend_users
        if stored is None:
            return WorkerKnobs(weights, half_life_s=half_life_s, users=users)
        return WorkerKnobs.restore(stored, weights, half_life_s=half_life_s, users=users)

    def _show_weights(self, weights: Mapping[Source, float]) -> None:
        for source, weight in weights.items():
            self.metrics.blend_weight.labels(source.value).set(weight)

    async def restore_knobs(self, now: float) -> None:
        """Continue from the learnt blend in the store (one GET): a worker before its first
        lists, ``socialrec api`` (which learns nothing itself) again and again."""
        self._knobs_saved = now
        try:
            stored = await self.store.load_knobs()
        except Exception as exc:  # the configured blend until the next restart
            log.warning("learnt blend not restored (%s)", type(exc).__name__)
            return
        if stored is not None:  # (nothing is remembered yet: no list went out)
            self.knobs = self._start_knobs(stored)
            self._report_knobs(self.knobs)

    async def _save_knobs(self, knobs: WorkerKnobs) -> None:
        """Store, expose and log the learnt blend (every ``learn_blend_persist_s``: one SET
        beside the batch's publishes). A failure loses the learning since the last save,
        never a batch."""
        try:
            await self.store.save_knobs(knobs.dump())
        except Exception as exc:
            log.warning("learnt blend not saved (%s)", type(exc).__name__)
        self._report_knobs(knobs)

    def _report_knobs(self, knobs: WorkerKnobs) -> None:
        self._show_weights(knobs.weights)
        self.metrics.blend_observations.set(knobs.learner.observations)
        weights = {s.value: round(w, 3) for s, w in sorted(knobs.weights.items())}
        log.info("blend weights %s after %d lists", weights, knobs.learner.observations)

    async def process(
        self, records: Sequence[InboundRecord], offsets: Sequence[OffsetRange] = ()
    ) -> BatchSummary:
        """Validate, apply, rank and publish one batch; ``offsets`` (from a consumer that keeps
        its positions in the store) are recorded with the state."""
        summary, settle = await self.process_sent(records, offsets)
        await settle
        return summary

    async def process_sent(
        self, records: Sequence[InboundRecord], offsets: Sequence[OffsetRange] = ()
    ) -> tuple[BatchSummary, Awaitable[None]]:
        """:meth:`process` up to the point where every list is handed to the producer: the
        summary, and what is left to await (the broker's acknowledgements, the lists' cache,
        the dead letters)."""
        return await self.send(await self.apply(records, offsets))

    async def apply(
        self, records: Sequence[InboundRecord], offsets: Sequence[OffsetRange] = ()
    ) -> Applied:
        """The first half of :meth:`process_sent`: validate, dead-letter, apply the batch to
        the state with its offsets (one atomic step), start the learning. A consumer applies
        its next batch while :meth:`send` ranks this one (streams/consumer.py): the state
        step's round trip is then spent ranking instead of waiting."""
        started = time.perf_counter()
        stages = StageTimer()
        summary = BatchSummary(consumed=len(records))
        self.newest_arrival = max(self.newest_arrival, *(r.timestamp for r in records))
        self.metrics.batch_size.observe(len(records))
        pending: list[Awaitable[Any]] = []

        valid: list[tuple[Event, InboundRecord]] = []
        now = self.clock()
        with stages("validate"):
            for record in records:
                checked = validate_record(self.settings, record, now)
                if isinstance(checked, Rejection):
                    pending.append(await self._dead_letter(record, checked.reason, checked.detail))
                    summary.dead_lettered += 1
                else:
                    valid.append((checked, record))
            count_by(self.metrics.events_consumed, (event.type.value for event, _ in valid))

        pools, ahead = self.pools, None
        if pools is not None and valid:
            # The learner's pools are read beside the state update, not after it.
            users = list(dict.fromkeys(event.user_id for event, _ in valid))
            ahead = asyncio.ensure_future(self._wait_out(lambda: pools.read(users), "pools"))
        if self.knobs is not None and self._knobs_saved is None:
            await self.restore_knobs(now)
        with stages("state"):  # events in flight when their user was erased are dropped here
            result, failed = await self._update_state(valid, offsets)
        if result.rewinds:  # the store lost writes: nothing applied, the consumer goes back
            await asyncio.gather(*pending, *([ahead] if ahead is not None else []))
            summary.rewinds = result.rewinds
            return Applied(summary, result, {}, [], [], [], stages, started, now, None, None)
        for _event, record in failed:
            pending.append(await self._dead_letter(record, PROCESSING_ERROR, "state update failed"))
            summary.dead_lettered += 1
        applied = [pair for pair in valid if pair not in failed]

        latest_trigger: dict[str, tuple[str, InboundRecord]] = {}
        published_events: list[InboundRecord] = []
        fresh: list[Event] = []
        for (event, record), outcome in zip(applied, result.outcomes, strict=True):
            if outcome is Outcome.REJECTED:  # the store refused it before writing any of it
                detail = "stored state of its user or item is corrupt"
                pending.append(await self._dead_letter(record, PROCESSING_ERROR, detail))
                summary.dead_lettered += 1
                continue
            if outcome is Outcome.ERASED:
                summary.dropped_erased += 1
                self.metrics.events_dropped_erased.inc()
                continue
            if outcome is Outcome.DUPLICATE:
                # Applied before, maybe without its publish (a crash or an outage between the
                # two): the user's list is published again (at least once), nothing relearnt.
                summary.duplicates += 1
                if event.item_id is not None:
                    latest_trigger[event.user_id] = (event.event_id, record)
                    published_events.append(record)
                continue
            summary.applied += 1
            fresh.append(event)
            if event.type not in (EventType.FOLLOW, EventType.UNFOLLOW):
                latest_trigger[event.user_id] = (event.event_id, record)
                published_events.append(record)
            if event.type is EventType.SHARE and event.target_user_id not in (None, event.user_id):
                # The recipient's lists are published by whoever owns the recipient's
                # partition: re-key the share to them through the internal topic.
                pending.append(await self._forward_share(event, record.timestamp))
        self.metrics.events_duplicate.inc(summary.duplicates)
        knobs = self.knobs
        if (
            knobs is not None
            and now - (self._knobs_saved or now) >= self.settings.learn_blend_persist_s
        ):
            self._knobs_saved = now
            pending.append(asyncio.ensure_future(self._save_knobs(knobs)))
        learning: asyncio.Future[None] | None = None
        if self.sources is not None and fresh:
            # The sources learn beside the ranking and the publish, not before them: the lists
            # use what they had learnt up to the last batch (as eval's test-then-train asks
            # before it learns), and the batch is acknowledged only once they have learnt it.
            # Only fresh events: a redelivered batch must not teach the sources twice.
            learning = asyncio.ensure_future(
                self._learn(self.sources, fresh, stages, after=self._learning)
            )
            self._learning = learning
        if self.analytics is not None:  # beside the ranking; awaited with the publishes
            pending.append(asyncio.ensure_future(self.analytics.record_events(fresh, now)))
        return Applied(
            summary, result, latest_trigger, published_events, fresh, pending, stages, started,
            now, ahead, learning,
        )  # fmt: skip

    async def send(self, applied: Applied) -> tuple[BatchSummary, Awaitable[None]]:
        """The second half of :meth:`process_sent`: rank each user's list and hand it to the
        producer; returns the summary and what is left to await."""
        a, summary = applied, applied.summary
        if summary.rewinds:
            return summary, _done()
        for event in a.fresh:  # before this batch's lists replace the ones the user saw
            self._score_request(event)
        result = a.result
        unread = [user for user in a.triggers if user not in result.views]
        if unread:  # users whose events were all duplicates: the update read nobody
            with a.stages("state"):
                extra = await self._wait_out(lambda: self.store.read_users(unread), "read users")
            result = BatchResult(result.outcomes, {**result.views, **extra.views}, result.popular)
        try:
            summary.published, cached = await self._send_lists(
                result, a.triggers, a.now, a.pending, a.stages, a.ahead
            )
        finally:
            if a.learning is not None:  # never left running past its batch (it does not raise)
                await a.learning

        async def settle() -> None:
            with a.stages("publish"):
                await asyncio.gather(*a.pending, cached)
            delivered = self.clock()
            for record in a.published_events:
                self.metrics.event_to_publish.observe(max(0.0, delivered - record.timestamp))
            a.stages.observe(self.metrics)
            self.metrics.batch_seconds.observe(time.perf_counter() - a.started)

        return summary, settle()

    @staticmethod
    async def _learn(
        sources: SourceSet, fresh: list[Event], stages: StageTimer, after: Awaitable[None] | None
    ) -> None:
        if after is not None:  # batches are learnt in order, one at a time
            await after
        with stages("learn"):
            await sources.learn(fresh)

    def _score_request(self, event: Event) -> None:
        """Prequential hit rate: was the item the user just acted on in their last list?"""
        if event.type not in TARGET_TYPES or event.item_id is None:
            return
        if self.knobs is not None:
            self.knobs.acted(event.user_id, event.item_id)
        hit = self.live.request(event.user_id, event.item_id)
        if hit is not None:
            self.metrics.live_requests.inc()
            if hit:
                self.metrics.live_hits.inc()

    async def _publish_lists(
        self,
        result: BatchResult,
        triggers: Mapping[str, tuple[str, InboundRecord]],
        now: float,
        pending: list[Awaitable[Any]],
    ) -> int:
        """Rank and publish each read user's list, then wait for it and everything pending."""
        count, cached = await self._send_lists(result, triggers, now, pending, StageTimer())
        await asyncio.gather(*pending, cached)
        return count

    async def _send_lists(
        self,
        result: BatchResult,
        triggers: Mapping[str, tuple[str, InboundRecord]],
        now: float,
        pending: list[Awaitable[Any]],
        stages: StageTimer,
        ahead: Awaitable[dict[str, bytes | None]] | None = None,
    ) -> tuple[int, Awaitable[None]]:
        """Rank each read user's list and hand it to the producer; the count, and the write
        of the lists' cache (to await with ``pending``). ``ahead``: the pools read already
        (PoolStore.read), for some of the users."""
        cache: dict[str, bytes] = {}
        extra: dict[str, dict[Source, Pool]] = {}
        provider, pools = self._candidates, self.pools
        if provider is not None and result.views:
            with stages("sources"):
                exclude = {u: excluded_items(v, self._params) for u, v in result.views.items()}
                try:
                    if pools is not None:
                        read = await ahead if ahead is not None else None
                        extra = await self._wait_out(
                            lambda: pools.candidates(exclude, now, read), "candidates"
                        )
                    else:
                        extra = await self._wait_out(
                            lambda: provider.candidates(exclude, now), "candidates"
                        )
                except Exception as exc:  # not an outage: the lists go out without them
                    log.warning("sources' candidates failed (%s)", type(exc).__name__)
        elif ahead is not None:
            await asyncio.gather(ahead, return_exceptions=True)  # nobody to rank: not needed
        with stages("assembly"):
            await self._rank_and_send(result, triggers, now, extra, cache, pending)
        cached = self._wait_out(lambda: self.store.cache_recommendations(cache), "list cache")
        return len(cache), cached

    async def _rank_and_send(
        self,
        result: BatchResult,
        triggers: Mapping[str, tuple[str, InboundRecord]],
        now: float,
        extra: Mapping[str, Mapping[Source, Pool]],
        cache: dict[str, bytes],
        pending: list[Awaitable[Any]],
    ) -> None:
        """Rank each read user's list and hand it to the producer (not yet confirmed)."""
        rankings = self._rankings(result, now, extra)
        categories = await self._categories(rankings.values())
        exposed: list[str] = []
        sources: list[str] = []
        kinds: list[str] = []
        for user_id, ranking in rankings.items():
            recs = ranking.choose(categories)
            sources.extend(item.source.value for item in recs.items)
            event_id, record = triggers[user_id]
            body = recommendations_json(recs, record, event_id, self.settings.model_version)
            cache[user_id] = body
            pending.append(await self.publisher.send(self._recs_topic, user_id.encode(), body, []))
            kinds.append("true" if recs.cold_start else "false")
            self.live.published(user_id, [item.item_id for item in recs.items])
            if self.knobs is not None:
                self.knobs.shown(user_id, ranking.blended)
            exposed.extend(item.item_id for item in recs.items)
        count_by(self.metrics.items_by_source, sources)
        count_by(self.metrics.recommendations_published, kinds)
        if self.analytics is not None and exposed:
            pending.append(asyncio.ensure_future(self.analytics.record_exposure(exposed, now)))

    def _rankings(
        self, result: BatchResult, now: float, extra: Mapping[str, Mapping[Source, Pool]]
    ) -> dict[str, Ranking]:
        """Each read user's candidates in order, before the category cap."""
        params = self.params
        return {
            user_id: Ranking(
                view,
                result.popular,
                params,
                now=now,
                trending=self.trending,
                extra=extra.get(user_id),
            )
            for user_id, view in result.views.items()
        }

    async def _categories(self, rankings: Iterable[Ranking]) -> dict[str, str] | None:
        """Categories of the items the category cap may read (only with a cap): a few dozen
        per list, not every candidate (reading those was a twelfth of the worker's CPU)."""
        if not self._params.category_cap:
            return None
        items: set[str] = set()
        for ranking in rankings:
            items |= ranking.capped_items()
        if not items:
            return None
        return await self._wait_out(lambda: self.store.item_categories(items), "categories")

    async def _forward_share(self, event: Event, arrival: float) -> Awaitable[Any]:
        body = orjson.dumps(
            {
                "event_id": event.event_id,
                "recipient": event.target_user_id,
                "sharer": event.user_id,
                "item_id": event.item_id,
                # When the share reached `events`: an erasure of the recipient at or after it
                # outlasts this record (refresh_recipients), as it outlasts the share itself.
                "arrived": arrival,
            }
        )
        key = (event.target_user_id or "").encode()
        return await self.publisher.send(self.settings.topic("shares"), key, body, [])

    @property
    def _candidates(self) -> CandidateSource | None:
        return self.pools if self.pools is not None else self.sources

    @property
    def params(self) -> RecommendParams:
        """How lists are assembled (top N, exclusions, caps, the blend as learnt so far):
        the read APIs use the same."""
        if self.knobs is None:
            return self._params
        return replace(self._params, source_weights=tuple(self.knobs.weights.items()))

    async def user_candidates(
        self, result: BatchResult, now: float
    ) -> dict[str, dict[Source, Pool]]:
        """Every source's candidates for the users of ``result`` (read-only)."""
        provider = self._candidates
        if provider is None or not result.views:
            return {}
        exclude = {u: excluded_items(v, self._params) for u, v in result.views.items()}
        return await provider.candidates(exclude, now)

    async def rank_users(self, user_ids: Sequence[str]) -> dict[str, Recommendations]:
        """These users' lists ranked from their state now, neither published nor cached (the
        HTTP API's read path; a user with no state gets the cold-start list)."""
        result = await self.store.read_users(list(user_ids))
        now = self.clock()
        rankings = self._rankings(result, now, await self.user_candidates(result, now))
        categories = await self._categories(rankings.values())
        return {user_id: ranking.choose(categories) for user_id, ranking in rankings.items()}

    async def refresh_users(
        self, user_ids: Sequence[str], trigger: InboundRecord, trigger_id: str
    ) -> int:
        """Re-publish these users' lists now (say, without someone just erased), all with the
        same trigger."""
        if not user_ids:
            return 0
        result = await self.store.read_users(list(user_ids))
        triggers = {user_id: (trigger_id, trigger) for user_id in result.views}
        return await self._publish_lists(result, triggers, self.clock(), [])

    async def refresh_recipients(self, records: Sequence[InboundRecord]) -> int:
        """Publish fresh lists for the recipients of re-keyed shares (``shares`` topic).

        A recipient erased at or after their share reached ``events`` gets no list: the topic
        is read again from its beginning under a new app id, and a list would bring them back
        (on ``recommendations`` and in the list cache) for as long as it keeps the share."""
        triggers: dict[str, tuple[str, InboundRecord]] = {}
        arrivals: dict[str, float] = {}
        for record in records:
            try:
                body = orjson.loads(record.value or b"")
                recipient = str(body["recipient"])
                triggers[recipient] = (str(body["event_id"]), record)
                # Records written before shares carried it: the forward's own time, later.
                arrived = float(body.get("arrived", record.timestamp))
                arrivals[recipient] = max(arrivals.get(recipient, arrived), arrived)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                # Only this worker writes the topic; a bad record is a bug, kept for replay.
                await (await self._dead_letter(record, WORKER_ERROR, "bad internal share record"))
        if triggers:
            marks = await self._wait_out(lambda: self.store.erased_at(list(triggers)), "marks")
            for user, at in marks.items():
                if arrivals[user] <= at:
                    del triggers[user]
        if not triggers:
            return 0
        result = await self.store.read_users(list(triggers))
        return await self._publish_lists(result, triggers, self.clock(), [])

    async def dead_letter_all(self, records: Sequence[InboundRecord], reason: str) -> None:
        """Last resort after an unexpected failure: keep every record, with the reason."""
        pending = [
            await self._dead_letter(r, reason, "unexpected worker error; see worker log")
            for r in records
        ]
        await asyncio.gather(*pending)

    async def _dead_letter(self, record: InboundRecord, reason: str, detail: str) -> Awaitable[Any]:
        self.metrics.dead_letters.labels(reason).inc()
        headers = dead_letter_headers(record, reason, detail)
        return await self.publisher.send(self._dlq_topic, record.key, record.value, headers)

    async def _update_state(
        self, valid: list[tuple[Event, InboundRecord]], offsets: Sequence[OffsetRange] = ()
    ) -> tuple[BatchResult, list[tuple[Event, InboundRecord]]]:
        """Apply the batch and record its offsets; isolate events that make the update fail.

        An outage is waited out (the batch stays unacknowledged, so nothing is lost and nothing
        is dead-lettered). A script error means some event's content broke the update: the
        batch is split until the offending events are found; they go to the DLQ, the rest are
        applied, and the offsets are recorded once all of it is done.
        """
        events = [event for event, _ in valid]
        arrivals = [record.timestamp for _, record in valid]
        try:
            return await self._with_retry(events, arrivals, offsets), []
        except redis.exceptions.ResponseError:  # not an outage: those are waited out above
            if len(valid) == 1:
                log.error("state update rejected one event; dead-lettering it")
                return await self._with_retry([], [], offsets), list(valid)
        middle = len(valid) // 2
        first, failed_first = await self._update_state(valid[:middle])
        second, failed_second = await self._update_state(valid[middle:])
        merged_views = {**first.views, **second.views}
        rewinds = (await self._with_retry([], [], offsets)).rewinds if offsets else {}
        return (
            BatchResult(first.outcomes + second.outcomes, merged_views, second.popular, rewinds),
            failed_first + failed_second,
        )

    async def _with_retry(
        self, events: list[Event], arrivals: list[float], offsets: Sequence[OffsetRange] = ()
    ) -> BatchResult:
        started = time.perf_counter()
        result = await self._wait_out(
            lambda: self.store.process_batch(events, arrivals, offsets), "state update"
        )
        self.metrics.redis_roundtrip.observe(time.perf_counter() - started)
        return result

    def _wait_out(self, step: Callable[[], Awaitable[T]], what: str) -> Awaitable[T]:
        """``step`` retried while Redis or Kafka is out (streams/outage.py)."""
        return wait_out(step, self.metrics, what, self.retry_backoff_s)
