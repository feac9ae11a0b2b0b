"""Trending items per scope: weighted counts and velocity over short sliding windows.

Each scope (:mod:`.scopes`) keeps time buckets and running totals for each window
(:mod:`.buckets`); a read ranks the current window's items by count or velocity
(:mod:`.results`).

A scope is *changed* whenever its numbers change: an add, a subtract, or a bucket crossing a
window edge as time passes. :meth:`TrendingWindows.take_changed` hands a publisher exactly the
scopes worth re-publishing; once a scope's last bucket has left every window it stops changing.

Counts are anonymous: nothing here stores a user id. Erasing a user means calling
:meth:`TrendingWindows.subtract` (or :meth:`~TrendingWindows.subtract_event`) for each of
their events still inside the retention (``2 × longest window``); anything older is already
gone.

>>> tw = TrendingWindows(windows_s=(60.0,), bucket_s=1.0)
>>> for k in range(5):
...     _ = tw.add("stream:live-3", "lipstick", 5.0, ts=1000.0 + k)
>>> _ = tw.add("stream:live-3", "mascara", 1.0, ts=1003.5)
>>> result = tw.top("stream:live-3", k=2, now=1005.0)
>>> [(i.item_id, i.count, i.events) for i in result.items]
[('lipstick', 25.0, 5), ('mascara', 1.0, 1)]
>>> round(result.items[0].velocity, 4), result.newest_ts
(0.4167, 1004.0)
>>> tw.take_changed()
['stream:live-3']
>>> _ = tw.add("stream:live-3", "lipstick", 5.0, ts=1070.0)  # a minute later: cooling down
>>> tw.top("stream:live-3", k=1, now=1070.0).items
(TrendingItem(item_id='lipstick', count=5.0, velocity=-0.3333333333333333, events=1),)
>>> tw.expire(now=1200.0); tw.snapshot()
{}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

from models.events import DEFAULT_WEIGHTS, Event, EventType
from models.trending.buckets import ScopeState, advance, shift_totals, window_spans
from models.trending.results import Tally, TrendingList, rank_items
from models.trending.scopes import scopes_for


class TrendingWindows:
    """Bucketed sliding-window counts and velocity per scope (see :mod:`.buckets`)."""

    def __init__(
        self,
        windows_s: Iterable[float] = (60.0, 300.0),
        bucket_s: float = 1.0,
        *,
        max_items_per_bucket: int = 500,
        weights: Mapping[EventType, float] | None = None,
    ) -> None:
        self.windows_s = tuple(float(w) for w in windows_s)
        spans = window_spans(self.windows_s, bucket_s)
        if max_items_per_bucket < 1:
            raise ValueError("max_items_per_bucket must be at least 1")
        self.bucket_s = float(bucket_s)
        self.spans = spans  # window lengths in buckets
        self.retention = 2 * max(spans)  # buckets kept behind the clock
        self.max_items_per_bucket = max_items_per_bucket
        self.weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        self.scopes: dict[str, ScopeState] = {}
        self.changed: set[str] = set()
        # Events not counted because their bucket was already full of other items (a metric).
        self.dropped = 0

    # ---- updates ---------------------------------------------------------------------------
    def add(self, scope: str, item_id: str, weight: float, ts: float) -> bool:
        """Count ``weight`` for ``item_id`` in ``scope`` at ``ts``; True if it was counted.

        Non-positive weights are ignored (trending is about positive engagement: hides and
        follows do not trend). An event older than the retention is too late to matter, and
        a new item arriving in a bucket that already holds ``max_items_per_bucket`` items is
        dropped (counted in ``dropped``): refusing is O(1), where evicting the lightest item
        would cost a scan per event in the busiest scopes.
        """
        if not (math.isfinite(weight) and math.isfinite(ts)):
            raise ValueError("weight and ts must be finite numbers")
        if weight <= 0.0:
            return False
        idx = self._bucket(ts)
        state = self.scopes.get(scope)
        if state is None:
            state = self.scopes[scope] = ScopeState(
                clock=idx,
                current=[{} for _ in self.spans],
                previous=[{} for _ in self.spans],
            )
        elif idx > state.clock:
            self._advance(scope, state, idx)
        if idx <= state.clock - self.retention:
            return False  # too late: already outside every window (the scope holds newer data)
        bucket = state.buckets.setdefault(idx, {})
        tally = bucket.get(item_id)
        if tally is None:
            if len(bucket) >= self.max_items_per_bucket:
                self.dropped += 1
                return False
            tally = bucket[item_id] = Tally()
        tally.weight += weight
        tally.events += 1
        state.newest[idx] = max(state.newest.get(idx, ts), ts)
        shift_totals(state, self.spans, idx, item_id, weight, 1)
        self.changed.add(scope)
        return True

    def subtract(self, scope: str, item_id: str, weight: float, ts: float) -> bool:
        """Undo one earlier :meth:`add` with the same arguments (erasure of a known event).

        Returns False when there is nothing to undo: the bucket has expired (the event no
        longer counts anyway), or the add was never counted. The bucket's newest-event time
        is kept (it may overstate the newest remaining event by less than one bucket).
        """
        if not (math.isfinite(weight) and math.isfinite(ts)):
            raise ValueError("weight and ts must be finite numbers")
        if weight <= 0.0:
            return False
        state = self.scopes.get(scope)
        idx = self._bucket(ts)
        bucket = state.buckets.get(idx) if state is not None else None
        tally = bucket.get(item_id) if bucket is not None else None
        if state is None or bucket is None or tally is None:
            return False
        tally.weight -= weight
        tally.events -= 1
        if tally.events <= 0:
            del bucket[item_id]
            if not bucket:
                del state.buckets[idx]
                state.newest.pop(idx, None)
        shift_totals(state, self.spans, idx, item_id, -weight, -1)
        self.changed.add(scope)
        if not state.buckets:
            del self.scopes[scope]
        return True

    def add_event(
        self, event: Event, category: str | None = None, merchant_id: str | None = None
    ) -> tuple[str, ...]:
        """Count an event in every scope of :func:`scopes_for`; return the scopes it entered."""
        return self._each_scope(self.add, event, category, merchant_id)

    def subtract_event(
        self, event: Event, category: str | None = None, merchant_id: str | None = None
    ) -> tuple[str, ...]:
        """Undo :meth:`add_event` (same event, same catalogue data); return the scopes undone."""
        return self._each_scope(self.subtract, event, category, merchant_id)

    def _each_scope(
        self,
        step: Callable[[str, str, float, float], bool],
        event: Event,
        category: str | None,
        merchant_id: str | None,
    ) -> tuple[str, ...]:
        if event.item_id is None:
            return ()
        item_id, weight = event.item_id, self.weights.get(event.type, 0.0)
        return tuple(
            scope
            for scope in scopes_for(event, category, merchant_id)
            if step(scope, item_id, weight, event.ts)
        )

    def expire(self, now: float) -> None:
        """Move every scope's clock to ``now``: buckets slide between windows, old ones and
        empty scopes are deleted. Call it about once a second (before publishing)."""
        idx = self._bucket(now)
        for scope in list(self.scopes):
            state = self.scopes[scope]
            if idx > state.clock:
                self._advance(scope, state, idx)
                self._drop_if_empty(scope)

    # ---- reads -----------------------------------------------------------------------------
    def top(
        self,
        scope: str,
        k: int,
        now: float,
        *,
        window_s: float | None = None,
        by: Literal["count", "velocity"] = "count",
    ) -> TrendingList:
        """The scope's ``k`` best items in ``window_s`` (default: the first window) at ``now``.

        Ranked by count (ties: velocity, then item id) or by velocity (ties: count, item id);
        only items with events in the current window are listed. Reading moves the scope's
        clock to ``now`` first (never backwards), which is what keeps the running totals right.
        """
        w = self._window_index(window_s)
        window = self.windows_s[w]
        state = self.scopes.get(scope)
        if state is not None:
            idx = self._bucket(now)
            if idx > state.clock:
                self._advance(scope, state, idx)
                self._drop_if_empty(scope)
            state = self.scopes.get(scope)
        if state is None:
            return TrendingList(scope, window, now, None, ())
        previous = state.previous[w]

        def before(item_id: str) -> float:
            tally = previous.get(item_id)
            return tally.weight if tally else 0.0

        best = rank_items(state.current[w], before, window, k, by)
        low = state.clock - self.spans[w]
        newest = [ts for idx, ts in state.newest.items() if idx > low]
        return TrendingList(scope, window, now, max(newest) if newest else None, best)

    def changed_scopes(self) -> frozenset[str]:
        """Scopes whose numbers changed since the last :meth:`take_changed` (a peek)."""
        return frozenset(self.changed)

    def take_changed(self) -> list[str]:
        """The changed scopes, sorted, and clear the flags: what a publisher should re-emit."""
        changed = sorted(self.changed)
        self.changed.clear()
        return changed

    def snapshot(self) -> dict[str, object]:
        """Every scope's state as plain data (bucket index -> item -> [weight, events])."""
        return {scope: state.snapshot() for scope, state in self.scopes.items()}

    # ---- internals -------------------------------------------------------------------------
    def _bucket(self, ts: float) -> int:
        return math.floor(ts / self.bucket_s)

    def _window_index(self, window_s: float | None) -> int:
        if window_s is None:
            return 0
        for w, window in enumerate(self.windows_s):
            if math.isclose(window, window_s):
                return w
        raise ValueError(f"no {window_s}s window; configured: {self.windows_s}")

    def _advance(self, scope: str, state: ScopeState, to: int) -> None:
        if advance(state, self.spans, self.retention, to):
            self.changed.add(scope)

    def _drop_if_empty(self, scope: str) -> None:
        state = self.scopes.get(scope)
        if state is not None and not state.buckets:
            del self.scopes[scope]
