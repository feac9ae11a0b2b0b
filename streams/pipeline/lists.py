"""The ranking and sending half of a batch: each read user's candidates ranked into a list,
its JSON handed to the producer and cached, and the same lists on request outside a batch
(the HTTP API's reads, re-publishes after an erasure or a forwarded share)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from models.events import Event
from models.hybrid import popular_pool
from models.recommend import Pool, Ranking, Recommendations, Source, excluded_items
from streams.metrics import count_by
from streams.pipeline.core import ProcessorCore
from streams.pipeline.records import WORKER_ERROR, Applied, BatchSummary, InboundRecord, StageTimer
from streams.pipeline.wire import recommendations_json
from streams.store import BatchResult

log = logging.getLogger(__name__)


async def _done() -> None:
    """Nothing left to await."""


class ListSender(ProcessorCore):
    """:class:`ProcessorCore` with the lists: ranked, sent, cached and observed."""

    async def send(self, applied: Applied) -> tuple[BatchSummary, Awaitable[None]]:
        """The second half of :meth:`process_sent`: rank each user's list and hand it to the
        producer; returns the summary and what is left to await."""
        a, summary = applied, applied.summary
        if summary.rewinds:
            return summary, _done()
        # Before this batch's lists replace the ones the users saw.
        lessons = [lesson for event in a.fresh if (lesson := self._score_request(event))]
        result = a.result
        unread = [user for user in a.triggers if user not in result.views]
        if unread:  # users whose events were all duplicates: the update read nobody
            with a.stages("state"):
                extra = await self._wait_out(lambda: self.store.read_users(unread), "read users")
            result = BatchResult(result.outcomes, {**result.views, **extra.views}, result.popular)
        try:
            summary.published, cached = await self._send_lists(
                result, a.triggers, a.now, a.pending, a.stages, a.ahead, a.fresh
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
            try:  # the lists are out: a failure here must not dead-letter their events
                self._learn_blend(lessons)
            except Exception:
                log.exception("the blend did not learn from %d lists", len(lessons))

        return summary, settle()

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
        fresh: Sequence[Event] = (),
    ) -> tuple[int, Awaitable[None]]:
        """Rank each read user's list and hand it to the producer; the count, and the write
        of the lists' cache (to await with ``pending``). ``ahead``: the pools read already
        (PoolStore.read), for some of the users; ``fresh``: the batch's applied events, for
        the merchants' counts."""
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
            await self._rank_and_send(result, triggers, now, extra, cache, pending, fresh)
        # A lost copy is ranked again by the reader that misses it.
        return len(cache), self._best_effort(
            lambda: self.store.cache_recommendations(cache), "caching the lists"
        )

    async def _rank_and_send(
        self,
        result: BatchResult,
        triggers: Mapping[str, tuple[str, InboundRecord]],
        now: float,
        extra: Mapping[str, Mapping[Source, Pool]],
        cache: dict[str, bytes],
        pending: list[Awaitable[Any]],
        fresh: Sequence[Event] = (),
    ) -> None:
        """Rank each read user's list and hand it to the producer (not yet confirmed), and
        count the lists' slots and the ``fresh`` events for their merchants."""
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
        if (analytics := self.analytics) is not None and (exposed or fresh):
            count = self._count_once(  # awaited with the publishes: an outage holds them back
                lambda token: analytics.record(fresh, exposed, now, token), "merchant counts"
            )
            pending.append(asyncio.ensure_future(count))

    def _rankings(
        self, result: BatchResult, now: float, extra: Mapping[str, Mapping[Source, Pool]]
    ) -> dict[str, Ranking]:
        """Each read user's candidates in order, before the category cap. With the learner's
        popularity and a learnt blend, popularity is also a source the blend weighs, as in
        eval (models/hybrid/recommender.py)."""
        params, learnt = self.params, self.learnt_popular
        popular = result.popular if learnt is None else learnt
        rankings = {}
        for user_id, view in result.views.items():
            pools = extra.get(user_id)
            if learnt is not None and self.knobs is not None:
                own = popular_pool(learnt, excluded_items(view, params))
                pools = {**(pools or {}), Source.POPULAR: own}
            rankings[user_id] = Ranking(
                view, popular, params, now=now, trending=self.trending, extra=pools
            )
        return rankings

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
