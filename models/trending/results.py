"""Trending results: tallies, a scope's ranked list, and one ranking for every kind of storage.

* ``count``: the weighted count of the item in the current window.
* ``velocity``: ``(current − previous) / W``, the change in weighted events per second between
  the previous window and this one. A rate *difference* rather than a ratio: it is finite
  when the previous window is empty, and a burst from nothing is positive, not infinite.

Buckets live in memory (:class:`~models.trending.windows.TrendingWindows`) or elsewhere, such as
Redis (:func:`summarise_buckets`); both rank with :func:`rank_items`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal


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
    tallies: Iterable[tuple[str, Tally]] = current.items()
    if by == "count" and len(current) > 4 * k:
        # At a high event rate a window holds tens of thousands of items: only those weighing
        # at least the k-th largest weight can be in the top k, so only they are scored.
        weights = heapq.nlargest(k, (t.weight for t in current.values() if t.events > 0))
        if len(weights) == k:
            least = weights[-1]
            tallies = [(i, t) for i, t in tallies if t.weight >= least]
    scored = []
    for item_id, tally in tallies:
        if tally.events > 0:
            velocity = (tally.weight - (before(item_id) or 0.0)) / window_s
            first, second = (tally.weight, velocity) if by == "count" else (velocity, tally.weight)
            scored.append((-first, -second, item_id, velocity, tally))
    # Item ids are unique, so the comparison never reaches the velocity or the tally.
    best = heapq.nsmallest(k, scored)
    return tuple(TrendingItem(i, t.weight, v, t.events) for _, _, i, v, t in best)


def add_tally(totals: dict[str, Tally], item_id: str, weight: float, events: int) -> None:
    """Add to an item's running total; a total left with no events is deleted."""
    tally = totals.get(item_id)
    if tally is None:
        totals[item_id] = Tally(weight, events)
        return
    tally.weight += weight
    tally.events += events
    if tally.events <= 0:
        del totals[item_id]


@dataclass(frozen=True, slots=True)
class SettledSums:
    """A scope's sums over its buckets up to ``settled`` (buckets that no longer fill) at one
    ``clock``: that part of the current window and of the previous one. They hold until the
    clock moves, so a caller that looks at a scope often (the worker, twice a second) keeps
    them and adds only the buckets still filling: at a high event rate the window holds tens
    of thousands of items, and summing every bucket at every look was most of a look's time.
    Never changed once built (:func:`summarise_buckets` copies a tally before adding to it)."""

    clock: int
    settled: int
    current: Mapping[str, Tally]
    previous: Mapping[str, float]


def settled_sums(
    buckets: Mapping[int, Mapping[str, Tally]], *, clock: int, span: int, settled: int
) -> SettledSums:
    """:class:`SettledSums` of the buckets up to ``settled`` (``buckets`` in ascending order,
    as for :func:`summarise_buckets`)."""
    current: dict[str, Tally] = {}
    previous: dict[str, float] = {}
    for idx, items in buckets.items():
        if idx > settled:
            continue
        if clock - span < idx <= clock:
            for item_id, tally in items.items():
                add_tally(current, item_id, tally.weight, tally.events)
        elif clock - 2 * span < idx <= clock - span:
            for item_id, tally in items.items():
                previous[item_id] = previous.get(item_id, 0.0) + tally.weight
    return SettledSums(clock, settled, current, previous)


def summarise_buckets(
    scope: str,
    buckets: Mapping[int, Mapping[str, Tally]],
    newest: Mapping[int, float],
    *,
    now: float,
    window_s: float,
    bucket_s: float,
    k: int,
    settled: SettledSums | None = None,
) -> TrendingList:
    """A scope's top ``k`` from raw per-bucket tallies (in ascending bucket order): what
    :meth:`TrendingWindows.top` computes from its running totals, for buckets kept elsewhere
    (the worker keeps them in Redis, where every worker adds to the same buckets).

    Same windows as the class: ``current`` is ``(clock − n, clock]`` and ``previous`` the
    ``n`` buckets before, with ``clock`` the later of ``now``'s bucket and the newest bucket
    given. Same ranking: count, then velocity, then item id. With ``settled`` (of the same
    clock and these buckets) only the buckets after it are summed again; the sums are the same
    to the last bit, as each item's weights are added in the same order.

    >>> tallies = {1000: {"a": Tally(2.0, 2)}, 1001: {"a": Tally(1.0, 1), "b": Tally(5.0, 1)}}
    >>> top = summarise_buckets("global", tallies, {1001: 1001.5}, now=1001.9,
    ...                         window_s=60.0, bucket_s=1.0, k=5)
    >>> [(i.item_id, i.count, i.events) for i in top.items], top.newest_ts
    ([('b', 5.0, 1), ('a', 3.0, 3)], 1001.5)
    >>> kept = settled_sums(tallies, clock=1001, span=60, settled=1000)
    >>> summarise_buckets("global", tallies, {1001: 1001.5}, now=1001.9, window_s=60.0,
    ...                   bucket_s=1.0, k=5, settled=kept) == top
    True
    """
    span = round(window_s / bucket_s)
    clock = max([math.floor(now / bucket_s), *buckets])
    if settled is None or settled.clock != clock:
        settled = SettledSums(clock, clock - 2 * span, {}, {})  # nothing summed yet
    current = dict(settled.current)
    previous: Mapping[str, float] = settled.previous
    own_previous: dict[str, float] | None = None  # a copy, once an open bucket adds to it
    copied: set[str] = set()  # tallies of `current` that are its own, not `settled`'s
    for idx, items in buckets.items():
        if idx <= settled.settled:
            continue
        if clock - span < idx <= clock:
            for item_id, tally in items.items():
                mine = current.get(item_id)
                if mine is not None and item_id not in copied:
                    current[item_id] = Tally(mine.weight, mine.events)
                copied.add(item_id)
                add_tally(current, item_id, tally.weight, tally.events)
        elif clock - 2 * span < idx <= clock - span:
            if own_previous is None:
                previous = own_previous = dict(previous)
            for item_id, tally in items.items():
                own_previous[item_id] = own_previous.get(item_id, 0.0) + tally.weight
    best = rank_items(current, previous.get, window_s, k)
    live = [ts for idx, ts in newest.items() if clock - span < idx <= clock]
    return TrendingList(scope, window_s, now, max(live) if live else None, best)
