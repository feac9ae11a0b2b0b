"""Trending items per scope: weighted counts and velocity over short sliding windows.

A *scope* is a named slice of the event stream: ``global``, ``category:X``, ``merchant:Z`` or
``stream:Y`` (one live stream). The caller decides which scopes an event belongs to
(:func:`scopes_for` does the usual thing) and adds the event's weight to each.

Time is cut into buckets of ``bucket_s`` seconds (bucket index ``floor(ts / bucket_s)``). Each
scope keeps, per bucket, a tally per item (weight sum and event count) and, per configured
window ``W`` (``n = W / bucket_s`` buckets), two running totals:

* *current*: the buckets ``(clock − n, clock]``, i.e. the last ``W`` seconds;
* *previous*: the buckets ``(clock − 2n, clock − n]``, the ``W`` seconds before that.

``clock`` is the newest bucket the scope has seen (events and reads move it forward). When it
advances, whole buckets move from *current* to *previous* and then out, so an advance costs
O(buckets held) and a read costs O(items in the window), not O(events). Buckets older than
twice the longest window are deleted: memory per scope is at most ``2·n_max`` buckets of at
most ``max_items_per_bucket`` items.

* ``count``: the weighted count of the item in the current window.
* ``velocity``: ``(current − previous) / W``, the change in weighted events per second between
  the previous window and this one. A rate *difference* rather than a ratio: it is finite
  when the previous window is empty, and a burst from nothing is positive, not infinite.

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

import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from models.events import DEFAULT_WEIGHTS, Event, EventType

GLOBAL_SCOPE: Final = "global"


def category_scope(category: str) -> str:
    return f"category:{category}"


def merchant_scope(merchant_id: str) -> str:
    return f"merchant:{merchant_id}"


def stream_scope(stream_id: str) -> str:
    return f"stream:{stream_id}"


def scopes_for(
    event: Event, category: str | None = None, merchant_id: str | None = None
) -> tuple[str, ...]:
    """The scopes an item event counts in: global, its category and merchant (from the
    catalogue, which the caller looks up) and its live stream, if any.

    >>> ev = Event("e1", EventType.CART, "u1", 1.0, item_id="sku-9", stream_id="live-3")
    >>> scopes_for(ev, category="beauty", merchant_id="m7")
    ('global', 'category:beauty', 'merchant:m7', 'stream:live-3')
    >>> scopes_for(Event("e2", EventType.FOLLOW, "u1", 1.0, target_user_id="u2"))
    ()
    """
    if event.item_id is None:
        return ()
    scopes = [GLOBAL_SCOPE]
    if category:
        scopes.append(category_scope(category))
    if merchant_id:
        scopes.append(merchant_scope(merchant_id))
    if event.stream_id:
        scopes.append(stream_scope(event.stream_id))
    return tuple(scopes)


@dataclass(slots=True)
class Tally:
    """Weighted count and number of events. ``events`` is exact, so a tally whose last event
    is subtracted is deleted outright instead of lingering as floating-point dust."""

    weight: float = 0.0
    events: int = 0


@dataclass(frozen=True, slots=True)
class TrendingItem:
    item_id: str
    count: float  # weighted count in the current window
    velocity: float  # (current − previous) / window_s: weighted events per second, signed
    events: int  # raw number of events in the current window


@dataclass(frozen=True, slots=True)
class TrendingList:
    """A scope's top items at ``as_of``, and the time of the newest event they include
    (``None`` if the window is empty) so consumers can tell how fresh the list is."""

    scope: str
    window_s: float
    as_of: float
    newest_ts: float | None
    items: tuple[TrendingItem, ...]


@dataclass(slots=True)
class ScopeState:
    """Everything one scope holds; plain numbers and dicts, keyed by bucket index."""

    clock: int  # newest bucket index seen (monotonic)
    buckets: dict[int, dict[str, Tally]] = field(default_factory=dict)
    newest: dict[int, float] = field(default_factory=dict)  # bucket -> newest event ts in it
    current: list[dict[str, Tally]] = field(default_factory=list)  # per window
    previous: list[dict[str, Tally]] = field(default_factory=list)  # per window


def rank_items(
    current: Mapping[str, Tally],
    before: Callable[[str], float | None],
    window_s: float,
    k: int,
    by: Literal["count", "velocity"] = "count",
) -> tuple[TrendingItem, ...]:
    """The ``k`` best items with events in ``current``, by count (ties: velocity, then item
    id) or by velocity (ties: count, item id); ``before``: an item's weight in the previous
    window (None: none). One ranking for the in-memory windows and for buckets read from
    Redis; ranked as plain tuples, and only the ``k`` kept become :class:`TrendingItem`.

    >>> now = {"a": Tally(3.0, 3), "b": Tally(5.0, 1), "c": Tally(3.0, 2)}
    >>> [(i.item_id, i.velocity) for i in rank_items(now, {"a": 2.0}.get, 10.0, 2)]
    [('b', 0.5), ('c', 0.3)]
    """
    scored = []
    for item_id, tally in current.items():
        if tally.events > 0:
            velocity = (tally.weight - (before(item_id) or 0.0)) / window_s
            first, second = (tally.weight, velocity) if by == "count" else (velocity, tally.weight)
            scored.append((-first, -second, item_id, velocity, tally))
    # Item ids are unique, so the comparison never reaches the velocity or the tally.
    best = heapq.nsmallest(k, scored)
    return tuple(TrendingItem(i, t.weight, v, t.events) for _, _, i, v, t in best)


def _add_to(totals: dict[str, Tally], item_id: str, weight: float, events: int) -> None:
    tally = totals.get(item_id)
    if tally is None:
        totals[item_id] = Tally(weight, events)
        return
    tally.weight += weight
    tally.events += events
    if tally.events <= 0:
        del totals[item_id]


class TrendingWindows:
    """Bucketed sliding-window counts and velocity per scope (see the module docstring)."""

    def __init__(
        self,
        windows_s: Iterable[float] = (60.0, 300.0),
        bucket_s: float = 1.0,
        *,
        max_items_per_bucket: int = 500,
        weights: Mapping[EventType, float] | None = None,
    ) -> None:
        self.windows_s = tuple(float(w) for w in windows_s)
        if not self.windows_s:
            raise ValueError("at least one window is needed")
        if not (math.isfinite(bucket_s) and bucket_s > 0):
            raise ValueError("bucket_s must be a positive number of seconds")
        spans = []
        for window in self.windows_s:
            span = round(window / bucket_s)
            if span < 1 or not math.isclose(span * bucket_s, window):
                raise ValueError(f"window {window}s is not a whole number of {bucket_s}s buckets")
            spans.append(span)
        if max_items_per_bucket < 1:
            raise ValueError("max_items_per_bucket must be at least 1")
        self.bucket_s = float(bucket_s)
        self.spans: tuple[int, ...] = tuple(spans)  # window lengths in buckets
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
        self._shift_totals(state, idx, item_id, weight, 1)
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
        self._shift_totals(state, idx, item_id, -weight, -1)
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
        return {
            scope: {
                "clock": state.clock,
                "buckets": {
                    idx: {item: [t.weight, t.events] for item, t in bucket.items()}
                    for idx, bucket in state.buckets.items()
                },
                "newest": dict(state.newest),
                "current": [{i: [t.weight, t.events] for i, t in c.items()} for c in state.current],
                "previous": [
                    {i: [t.weight, t.events] for i, t in p.items()} for p in state.previous
                ],
            }
            for scope, state in self.scopes.items()
        }

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

    @staticmethod
    def _slot(idx: int, clock: int, span: int) -> int | None:
        """0 if bucket ``idx`` is in the current window at ``clock``, 1 if in the previous."""
        if idx > clock - span:
            return 0
        if idx > clock - 2 * span:
            return 1
        return None

    def _shift_totals(
        self, state: ScopeState, idx: int, item_id: str, weight: float, events: int
    ) -> None:
        for w, span in enumerate(self.spans):
            slot = self._slot(idx, state.clock, span)
            if slot is not None:
                totals = state.current[w] if slot == 0 else state.previous[w]
                _add_to(totals, item_id, weight, events)

    def _advance(self, scope: str, state: ScopeState, to: int) -> None:
        """Move the clock forward to bucket ``to``, sliding buckets across window edges."""
        old = state.clock
        moved = False
        for idx in sorted(state.buckets):
            bucket = state.buckets[idx]
            for w, span in enumerate(self.spans):
                before = self._slot(idx, old, span)
                after = self._slot(idx, to, span)
                if before == after:
                    continue
                moved = True
                for item_id, tally in bucket.items():
                    if before is not None:
                        source = state.current[w] if before == 0 else state.previous[w]
                        _add_to(source, item_id, -tally.weight, -tally.events)
                    if after is not None:
                        target = state.current[w] if after == 0 else state.previous[w]
                        _add_to(target, item_id, tally.weight, tally.events)
            if idx <= to - self.retention:
                del state.buckets[idx]
                state.newest.pop(idx, None)
        state.clock = to
        if moved:
            self.changed.add(scope)

    def _drop_if_empty(self, scope: str) -> None:
        state = self.scopes.get(scope)
        if state is not None and not state.buckets:
            del self.scopes[scope]


def summarise_buckets(
    scope: str,
    buckets: Mapping[int, Mapping[str, Tally]],
    newest: Mapping[int, float],
    *,
    now: float,
    window_s: float,
    bucket_s: float,
    k: int,
) -> TrendingList:
    """A scope's top ``k`` from raw per-bucket tallies: what :meth:`TrendingWindows.top`
    computes from its running totals, for buckets kept elsewhere (the worker keeps them in
    Redis, where every worker adds to the same buckets).

    Same windows as the class: ``current`` is ``(clock − n, clock]`` and ``previous`` the
    ``n`` buckets before, with ``clock`` the later of ``now``'s bucket and the newest bucket
    given. Same ranking: count, then velocity, then item id.

    >>> tallies = {1000: {"a": Tally(2.0, 2)}, 1001: {"a": Tally(1.0, 1), "b": Tally(5.0, 1)}}
    >>> top = summarise_buckets("global", tallies, {1001: 1001.5}, now=1001.9,
    ...                         window_s=60.0, bucket_s=1.0, k=5)
    >>> [(i.item_id, i.count, i.events) for i in top.items], top.newest_ts
    ([('b', 5.0, 1), ('a', 3.0, 3)], 1001.5)
    """
    span = round(window_s / bucket_s)
    clock = max([math.floor(now / bucket_s), *buckets])
    current: dict[str, Tally] = {}
    previous: dict[str, float] = {}
    for idx, items in buckets.items():
        if clock - span < idx <= clock:
            for item_id, tally in items.items():
                _add_to(current, item_id, tally.weight, tally.events)
        elif clock - 2 * span < idx <= clock - span:
            for item_id, tally in items.items():
                previous[item_id] = previous.get(item_id, 0.0) + tally.weight
    best = rank_items(current, previous.get, window_s, k)
    live = [ts for idx, ts in newest.items() if clock - span < idx <= clock]
    return TrendingList(scope, window_s, now, max(live) if live else None, best)
