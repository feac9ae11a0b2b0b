"""The in-memory reference store: the pure state machine behind the async interface.

Wraps :class:`models.state.MemoryState` and :class:`models.trending.TrendingWindows` for unit
tests and offline evaluation; the store contract suite holds it and
:class:`streams.store.redis_store.RedisStore` to the same behaviour.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from models.content import CatalogRecord
from models.events import Event
from models.state import ErasureReport, MemoryState, Outcome, Similar, StateParams
from models.trending import TrendingList, TrendingWindows, scopes_for
from streams.keys import Keys
from streams.store.erasure import in_flight
from streams.store.interface import BatchResult, ReadParams, TrendingParams
from streams.store.offsets import (
    OffsetRange,
    Position,
    advance,
    check_offsets,
    partition_steps,
)


class MemoryStore:
    """The in-memory reference store (pure state machine behind the async interface)."""

    def __init__(
        self,
        params: StateParams,
        read: ReadParams | None = None,
        trending: TrendingParams | None = None,
        similar: Similar | None = None,
    ) -> None:
        """``similar(item, k)``: item-CF's neighbour lists, which this store reads but does
        not learn (the learner does: :class:`models.cooccurrence.Cooccurrence`)."""
        self.similar = similar
        self.keys = Keys()
        # Users' partitions as Redis's steps see them: a change to a target in another
        # partition waits until the batch's views are read, as Redis relays it then.
        self.state = MemoryState(params, partition_of=self.keys.partition_of)
        self.read = read or ReadParams()
        self.trending_params = trending or TrendingParams()
        self.windows = TrendingWindows(
            windows_s=(self.trending_params.window_s,),
            bucket_s=self.trending_params.bucket_s,
            max_items_per_bucket=1_000_000,  # Redis buckets are not capped either
        )
        self.catalog: dict[str, CatalogRecord] = {}
        self.published_lists: dict[str, bytes] = {}
        # user -> (scope, item, weight, arrival) of their trending counts, for erasure
        self.trend_log: dict[str, list[tuple[str, str, float, float]]] = {}
        self.recommendations: dict[str, bytes] = {}
        self.erased: dict[str, float] = {}  # erasure marks: digest key -> erasure time
        self.knobs: bytes | None = None  # the learnt blend (save_knobs)
        self.offsets: dict[str, Position] = {}

    async def positions(self, partitions: Sequence[str]) -> dict[str, Position]:
        return {p: self.offsets[p] for p in partitions if p in self.offsets}

    async def mark_published(self, published: Mapping[str, int]) -> None:
        for partition, offset in published.items():
            was = self.offsets.get(partition)
            if was is not None and offset > was.published:
                self.offsets[partition] = Position(was.applied, min(offset, was.applied))

    async def process_batch(
        self,
        events: Sequence[Event],
        arrivals: Sequence[float] | None = None,
        offsets: Sequence[OffsetRange] = (),
        views: bool = True,
    ) -> BatchResult:
        outcomes = [Outcome.DUPLICATE] * len(events)
        touched: set[str] = set()
        behind: dict[str, Position] = {}
        users = [e.user_id for e in events]
        for step in partition_steps(self.keys.partition_of, users, offsets):
            if late := check_offsets(self.offsets, step.offsets):
                behind.update(late)  # nothing of this partition is applied
                continue
            advance(self.offsets, step.offsets)
            self.state.open_step(step.partition, [events[n] for n in step.events])
            for n in step.events:
                outcomes[n] = self._apply(
                    events[n], events[n].ts if arrivals is None else arrivals[n]
                )
                if outcomes[n] is Outcome.APPLIED and events[n].item_id is not None:
                    touched.add(events[n].user_id)
        if behind:
            self.state.deliver()
            return BatchResult([], {}, self.state.popular(self.read.popular), behind)
        result = self._result(outcomes, [u for u in dict.fromkeys(users) if u in touched and views])
        self.state.deliver()
        return result

    def _apply(self, event: Event, arrival: float) -> Outcome:
        marks = {
            user: self.erased[key]
            for user in (event.user_id, event.target_user_id)
            if user and (key := self.keys.erased(user)) in self.erased
        }
        applicable = in_flight(event, arrival, marks)
        if applicable is None:
            return Outcome.ERASED
        event = applicable
        outcome = self.state.apply(event)
        if outcome is Outcome.APPLIED and event.item_id is not None:
            weight = self.state.params.weight(event.type)
            if weight > 0:
                self._add_trending(event, event.item_id, weight, arrival)
        return outcome

    def _add_trending(self, event: Event, item: str, weight: float, arrival: float) -> None:
        record = self.catalog.get(item)
        scopes = scopes_for(
            event,
            category=record.category if record else None,
            merchant_id=record.merchant_id if record else None,
        )
        log = self.trend_log.setdefault(event.user_id, [])
        for scope in scopes:
            self.windows.add(scope, item, weight, arrival)
            log.append((scope, item, weight, arrival))

    async def put_items(self, records: Sequence[CatalogRecord]) -> None:
        self.catalog.update({r.item_id: r for r in records})

    async def delete_items(self, item_ids: Sequence[str]) -> None:
        for item_id in item_ids:
            self.catalog.pop(item_id, None)

    async def item_categories(self, item_ids: Collection[str]) -> dict[str, str]:
        return {i: r.category if (r := self.catalog.get(i)) else "" for i in item_ids}

    async def trending(self, scopes: Sequence[str], now: float, k: int) -> list[TrendingList]:
        # Reading moves TrendingWindows' clocks, which marks scopes changed; in Redis only
        # writes mark them (the publisher re-publishes sliding windows itself), so a read
        # here leaves the marks as they were.
        marked = set(self.windows.changed)
        lists = [self.windows.top(scope, k, now) for scope in scopes]
        self.windows.changed = marked
        return lists

    async def take_changed_scopes(self, limit: int) -> list[str]:
        taken = self.windows.take_changed()
        self.windows.changed.update(taken[limit:])
        return taken[:limit]

    async def mark_changed(self, scopes: Sequence[str]) -> None:
        self.windows.changed.update(scopes)

    async def keep_published(self, lists: Mapping[str, bytes], ttl_s: float) -> None:
        self.published_lists.update(lists)  # (no expiry: a test's store lives seconds)

    async def published(self, scopes: Sequence[str]) -> list[bytes | None]:
        return [self.published_lists.get(scope) for scope in scopes]

    async def read_users(self, user_ids: Sequence[str]) -> BatchResult:
        return self._result([], list(user_ids))

    async def cache_recommendations(self, lists: Mapping[str, bytes]) -> None:
        self.recommendations.update(lists)

    async def cached_recommendations(self, user_id: str) -> bytes | None:
        return self.recommendations.get(user_id)

    async def mark_erased(self, erased_at: Mapping[str, float]) -> None:
        for user_id, at in erased_at.items():
            self.erased[self.keys.erased(user_id)] = at

    async def erased_at(self, user_ids: Sequence[str]) -> dict[str, float]:
        marks = {u: self.erased.get(self.keys.erased(u)) for u in user_ids}
        return {u: at for u, at in marks.items() if at is not None}

    async def save_knobs(self, body: bytes) -> None:
        self.knobs = body

    async def load_knobs(self) -> bytes | None:
        return self.knobs

    async def audience(self, user_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for user_id in user_ids:
            user = self.state.users.get(user_id)
            if user is not None:
                found |= user.followers | user.outbox
        return found

    async def erase_users(self, user_ids: Sequence[str]) -> list[ErasureReport]:
        reports = []
        for user_id in user_ids:
            reports.append(self.state.erase(user_id))
            self.recommendations.pop(user_id, None)
            for scope, item, weight, arrival in self.trend_log.pop(user_id, []):
                self.windows.subtract(scope, item, weight, arrival)
        return reports

    def _result(self, outcomes: list[Outcome], users: list[str]) -> BatchResult:
        views = {
            user: self.state.user_view(
                user,
                recent_items=self.read.recent_items,
                neighbours=self.read.neighbours,
                similar=self.similar,
            )
            for user in users
        }
        return BatchResult(outcomes, views, self.state.popular(self.read.popular))

    async def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot()
