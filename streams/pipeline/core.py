"""The processor's construction and what it keeps between batches: configuration, the
learnt blend (restored, saved and shown), the last list shown to each user (the live metrics,
erased on request), and the two steps every half uses: waiting out an outage and
dead-lettering a record. The halves of a batch build on it (streams/pipeline/lists.py, then
streams/pipeline/processor.py)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from models.evaluation import TARGET_TYPES
from models.events import Event
from models.live_quality import LiveQuality
from models.recommend import Pool, RecommendParams, Scores, Source
from models.state import PopularView
from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.pipeline.records import InboundRecord, Publisher
from streams.pipeline.wire import dead_letter_headers
from streams.runtime.analytics import MerchantAnalytics
from streams.runtime.forgetting import marked
from streams.runtime.knobs import WorkerKnobs
from streams.runtime.learner_state import LearnerProgress
from streams.runtime.outage import BACKOFF_S, wait_out
from streams.runtime.pools import PoolStore
from streams.sources import SourceSet
from streams.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    computed ahead by the learner (``streams.runtime.pools.PoolStore``)."""

    async def candidates(
        self, exclude: Mapping[str, frozenset[str]], now: float
    ) -> dict[str, dict[Source, Pool]]: ...


@dataclass
class ProcessorCore:
    """What a :class:`BatchProcessor` is made of and keeps between its batches."""

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
    #: The learner's popular items under the half-life it learnt (:meth:`follow_learner`);
    #: None: the state's, decayed by the configured half-life.
    learnt_popular: PopularView | None = None
    #: Per-merchant funnel and exposure counters (streams/runtime/analytics.py), if the API runs.
    analytics: MerchantAnalytics | None = None
    #: The learnt blend and each user's last list's candidates (None: the configured blend).
    knobs: WorkerKnobs | None = field(init=False, default=None)
    _knobs_saved: float | None = field(init=False, default=None)  # None: not restored yet
    #: The inline sources' learning of the latest batch: the next batch learns after it.
    _learning: asyncio.Future[None] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        s = self.settings
        self._params = recommend_params(s)
        self.metrics.social_half_life_seconds.set(self._params.social_half_life_s)
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
        (streams/runtime/forgetting.py: whichever worker honoured the request, every worker
        forgets)."""
        held = self.live.users() + (self.knobs.remembered_users() if self.knobs is not None else [])
        users = await marked(held, digests)
        self.forget(users)
        return len(users)

    def _score_request(self, event: Event) -> tuple[Scores, str] | None:
        """Prequential hit rate: was the item the user just acted on in their last list? And
        the blend's lesson from that list, if any, to learn once the batch's lists are out
        (:meth:`_learn_blend`)."""
        if event.type not in TARGET_TYPES or event.item_id is None:
            return None
        hit = self.live.request(event.user_id, event.item_id)
        if hit is not None:
            self.metrics.live_requests.inc()
            if hit:
                self.metrics.live_hits.inc()
        lesson = self.knobs.lesson(event.user_id) if self.knobs is not None else None
        return None if lesson is None else (lesson, event.item_id)

    def _learn_blend(self, lessons: Sequence[tuple[Scores, str]]) -> None:
        """The blend learns from what users acted on: after their batch's lists are
        acknowledged, so learning never delays a list (the next lists get the new weights)."""
        if self.knobs is not None:
            for scores, item_id in lessons:
                self.knobs.learn(scores, item_id)

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
        await self._best_effort(lambda: self.store.save_knobs(knobs.dump()), "saving the blend")
        self._report_knobs(knobs)

    def _report_knobs(self, knobs: WorkerKnobs) -> None:
        self._show_weights(knobs.weights)
        self.metrics.blend_observations.set(knobs.learner.observations)
        weights = {s.value: round(w, 3) for s, w in sorted(knobs.weights.items())}
        log.info("blend weights %s after %d lists", weights, knobs.learner.observations)

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

    def follow_learner(self, progress: LearnerProgress) -> None:
        """Use what the learner learnt from the stream: social proof decays by its half-life
        and, with a learnt blend, the popular items are its own under that half-life, as in
        eval (models/hybrid/recommender.py ``popular_for``)."""
        half_life_s = progress.half_life_s
        if half_life_s is None:
            return
        self.use_half_life(half_life_s)
        if progress.popular is not None and self.knobs is not None:
            self.learnt_popular = progress.popular
            if self._params.half_life_s != half_life_s:
                self._params = replace(self._params, half_life_s=half_life_s)

    def use_half_life(self, half_life_s: float) -> None:
        """Decay social proof by the half-life the learner learnt from the stream (eval's
        social proof uses the same: models/hybrid/recommender.py ``params_for``)."""
        if half_life_s > 0 and half_life_s != self._params.social_half_life_s:
            self._params = replace(self._params, social_half_life_s=half_life_s)
            self.metrics.social_half_life_seconds.set(half_life_s)

    def _wait_out(self, step: Callable[[], Awaitable[T]], what: str) -> Awaitable[T]:
        """``step`` retried while Redis or Kafka is out (streams/runtime/outage.py)."""
        return wait_out(step, self.metrics, what, self.retry_backoff_s)

    async def _best_effort(self, step: Callable[[], Awaitable[object]], what: str) -> None:
        """``step``, which keeps a copy or a count beside a batch (the lists' cache, merchants'
        counts, the learnt blend), with an outage waited out like any step. Any other failure
        loses only what it keeps: logged, never a reason to dead-letter a batch whose lists
        went out."""
        try:
            await self._wait_out(step, what)
        except Exception:
            log.exception("%s failed; the batch goes on without it", what)

    async def _count_once(self, count: Callable[[str], Awaitable[None]], what: str) -> None:
        """A batch's merchant counts (streams/runtime/analytics.py), every attempt with one
        token, so a retried call counts once."""
        token = uuid.uuid4().hex
        await self._best_effort(lambda: count(token), what)

    async def _dead_letter(self, record: InboundRecord, reason: str, detail: str) -> Awaitable[Any]:
        self.metrics.dead_letters.labels(reason).inc()
        headers = dead_letter_headers(record, reason, detail)
        return await self.publisher.send(self._dlq_topic, record.key, record.value, headers)

    async def dead_letter_all(self, records: Sequence[InboundRecord], reason: str) -> None:
        """Last resort after an unexpected failure: keep every record, with the reason."""
        pending = [
            await self._dead_letter(r, reason, "unexpected worker error; see worker log")
            for r in records
        ]
        await asyncio.gather(*pending)
