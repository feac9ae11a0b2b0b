"""One micro-batch, end to end: validate, dead-letter the bad, update state, rank, publish.

The worker (streams/runtime/worker.py) feeds this from Faust; tests feed it directly. All I/O per
batch is one Redis round trip for the state update (one a round when a partition has more than
``step_max`` events in it, plus one pipelined cache write) and one gather of Kafka send futures;
nothing in the per-event loop awaits. This module is the apply half (the state step); the lists
are ranked and sent by streams/pipeline/lists.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from typing import Any

import orjson
import redis.exceptions

from models.events import Event, EventType, Rejection
from models.state import Outcome
from streams.metrics import count_by
from streams.pipeline.lists import ListSender
from streams.pipeline.records import (
    PROCESSING_ERROR,
    Applied,
    BatchSummary,
    InboundRecord,
    StageTimer,
)
from streams.pipeline.wire import validate_record
from streams.sources import SourceSet
from streams.store import BatchResult, OffsetRange, step_rounds

log = logging.getLogger(__name__)


class BatchProcessor(ListSender):
    """Validates, applies, ranks and publishes micro-batches (the worker's live path)."""

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
        its next batch while :meth:`send` ranks this one (streams/runtime/consumer.py): the state
        step's round trip is then spent ranking instead of waiting."""
        started = time.perf_counter()
        stages = StageTimer()
        summary = BatchSummary(consumed=len(records))
        self.newest_arrival = max(self.newest_arrival, *(r.timestamp for r in records))
        self.metrics.batch_size.observe(len(records))
        pending: list[Awaitable[Any]] = []
        now = self.clock()
        with stages("validate"):
            valid = await self._validate(records, now, summary, pending)
        ahead = self._read_pools_ahead(valid)
        if self.knobs is not None and self._knobs_saved is None:
            await self.restore_knobs(now)
        with stages("state"):  # events in flight when their user was erased are dropped here
            result, failed = await self._update_in_rounds(valid, offsets)
        if result.rewinds:  # the store lost writes: nothing applied, the consumer goes back
            await asyncio.gather(*pending, *([ahead] if ahead is not None else []))
            summary.rewinds = result.rewinds
            return Applied(summary, result, {}, [], [], [], stages, started, now, None, None)
        for _event, record in failed:
            pending.append(await self._dead_letter(record, PROCESSING_ERROR, "state update failed"))
            summary.dead_lettered += 1
        applied = [pair for pair in valid if pair not in failed]
        latest_trigger, published_events, fresh = await self._sort_outcomes(
            applied, result, summary, pending
        )
        learning = self._start_beside(fresh, now, stages, pending)
        return Applied(
            summary, result, latest_trigger, published_events, fresh, pending, stages, started,
            now, ahead, learning,
        )  # fmt: skip

    async def _validate(
        self,
        records: Sequence[InboundRecord],
        now: float,
        summary: BatchSummary,
        pending: list[Awaitable[Any]],
    ) -> list[tuple[Event, InboundRecord]]:
        """The batch's valid events; the others are dead-lettered (their sends into ``pending``)."""
        valid: list[tuple[Event, InboundRecord]] = []
        for record in records:
            checked = validate_record(self.settings, record, now)
            if isinstance(checked, Rejection):
                pending.append(await self._dead_letter(record, checked.reason, checked.detail))
                summary.dead_lettered += 1
            else:
                valid.append((checked, record))
        count_by(self.metrics.events_consumed, (event.type.value for event, _ in valid))
        return valid

    def _read_pools_ahead(
        self, valid: list[tuple[Event, InboundRecord]]
    ) -> asyncio.Future[Any] | None:
        """The learner's pools are read beside the state update, not after it."""
        pools = self.pools
        if pools is None or not valid:
            return None
        users = list(dict.fromkeys(event.user_id for event, _ in valid))
        return asyncio.ensure_future(self._wait_out(lambda: pools.read(users), "pools"))

    async def _sort_outcomes(
        self,
        applied: list[tuple[Event, InboundRecord]],
        result: BatchResult,
        summary: BatchSummary,
        pending: list[Awaitable[Any]],
    ) -> tuple[dict[str, tuple[str, InboundRecord]], list[InboundRecord], list[Event]]:
        """What the store made of each applied event: whose list to publish (and for which
        event), the records behind the lists, and the fresh events (to learn from)."""
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
        return latest_trigger, published_events, fresh

    def _start_beside(
        self, fresh: list[Event], now: float, stages: StageTimer, pending: list[Awaitable[Any]]
    ) -> asyncio.Future[None] | None:
        """Start what runs beside the ranking: saving the knobs when due, the merchant figures
        (both into ``pending``) and the sources' learning (returned)."""
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
        return learning

    @staticmethod
    async def _learn(
        sources: SourceSet, fresh: list[Event], stages: StageTimer, after: Awaitable[None] | None
    ) -> None:
        if after is not None:  # batches are learnt in order, one at a time
            await after
        with stages("learn"):
            await sources.learn(fresh)

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

    async def _update_in_rounds(
        self, valid: list[tuple[Event, InboundRecord]], offsets: Sequence[OffsetRange] = ()
    ) -> tuple[BatchResult, list[tuple[Event, InboundRecord]]]:
        """:meth:`_update_state` in rounds of at most ``step_max`` events a partition
        (streams/store/offsets.py ``step_rounds``), each storing its own offsets with its
        state. Only the last reads views: the earlier rounds' users are read once, after it
        (:meth:`send`). A round the store refuses (it lost writes) ends the batch with the
        refusal: the consumer goes back, and what the earlier rounds applied comes again as
        duplicates, published then."""
        positions = [(record.partition, record.offset) for _, record in valid]
        rounds = step_rounds(positions, offsets, self.settings.step_max)
        outcomes: dict[int, Outcome] = {}
        failed: list[int] = []
        for n, (indexes, ranges) in enumerate(rounds):
            last = n == len(rounds) - 1
            result, bad = await self._update_state([valid[i] for i in indexes], ranges, last)
            if result.rewinds or len(rounds) == 1:
                return result, bad
            failing = [i for i in indexes if valid[i] in bad]
            kept = [i for i in indexes if i not in failing]
            outcomes.update(zip(kept, result.outcomes, strict=True))
            failed += failing
        merged = [outcomes[i] for i in range(len(valid)) if i in outcomes]
        return replace(result, outcomes=merged), [valid[i] for i in sorted(failed)]

    async def _update_state(
        self,
        valid: list[tuple[Event, InboundRecord]],
        offsets: Sequence[OffsetRange] = (),
        views: bool = True,
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
            return await self._with_retry(events, arrivals, offsets, views), []
        except redis.exceptions.ResponseError:  # not an outage: those are waited out above
            if len(valid) == 1:
                log.error("state update rejected one event; dead-lettering it")
                return await self._with_retry([], [], offsets), list(valid)
        middle = len(valid) // 2
        first, failed_first = await self._update_state(valid[:middle], views=views)
        second, failed_second = await self._update_state(valid[middle:], views=views)
        merged_views = {**first.views, **second.views}
        rewinds = (await self._with_retry([], [], offsets)).rewinds if offsets else {}
        return (
            BatchResult(first.outcomes + second.outcomes, merged_views, second.popular, rewinds),
            failed_first + failed_second,
        )

    async def _with_retry(
        self,
        events: list[Event],
        arrivals: list[float],
        offsets: Sequence[OffsetRange] = (),
        views: bool = True,
    ) -> BatchResult:
        started = time.perf_counter()
        result = await self._wait_out(
            lambda: self.store.process_batch(events, arrivals, offsets, views), "state update"
        )
        self.metrics.redis_roundtrip.observe(time.perf_counter() - started)
        return result
