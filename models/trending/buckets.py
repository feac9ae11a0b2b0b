"""One scope's time buckets and the running window totals that slide over them.

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

>>> state = ScopeState(clock=10, buckets={10: {"a": Tally(2.0, 1)}}, current=[{}], previous=[{}])
>>> shift_totals(state, (5,), 10, "a", 2.0, 1)
>>> advance(state, (5,), retention=10, to=16), state.current, state.previous
(True, [{}], [{'a': Tally(weight=2.0, events=1)}])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from models.trending.results import Tally, add_tally


@dataclass(slots=True)
class ScopeState:
    """Everything one scope holds; plain numbers and dicts, keyed by bucket index."""

    clock: int  # newest bucket index seen (monotonic)
    buckets: dict[int, dict[str, Tally]] = field(default_factory=dict)
    newest: dict[int, float] = field(default_factory=dict)  # bucket -> newest event ts in it
    current: list[dict[str, Tally]] = field(default_factory=list)  # per window
    previous: list[dict[str, Tally]] = field(default_factory=list)  # per window

    def snapshot(self) -> dict[str, object]:
        """The scope's state as plain data (bucket index -> item -> [weight, events])."""
        return {
            "clock": self.clock,
            "buckets": {
                idx: {item: [t.weight, t.events] for item, t in bucket.items()}
                for idx, bucket in self.buckets.items()
            },
            "newest": dict(self.newest),
            "current": [{i: [t.weight, t.events] for i, t in c.items()} for c in self.current],
            "previous": [{i: [t.weight, t.events] for i, t in p.items()} for p in self.previous],
        }


def window_spans(windows_s: tuple[float, ...], bucket_s: float) -> tuple[int, ...]:
    """Each window's length in buckets; every window must be a whole number of buckets.

    >>> window_spans((60.0, 300.0), 1.0)
    (60, 300)
    """
    if not windows_s:
        raise ValueError("at least one window is needed")
    if not (math.isfinite(bucket_s) and bucket_s > 0):
        raise ValueError("bucket_s must be a positive number of seconds")
    spans = []
    for window in windows_s:
        span = round(window / bucket_s)
        if span < 1 or not math.isclose(span * bucket_s, window):
            raise ValueError(f"window {window}s is not a whole number of {bucket_s}s buckets")
        spans.append(span)
    return tuple(spans)


def window_slot(idx: int, clock: int, span: int) -> int | None:
    """0 if bucket ``idx`` is in the current window at ``clock``, 1 if in the previous."""
    if idx > clock - span:
        return 0
    if idx > clock - 2 * span:
        return 1
    return None


def shift_totals(
    state: ScopeState, spans: tuple[int, ...], idx: int, item_id: str, weight: float, events: int
) -> None:
    """Add a change to bucket ``idx`` to the running totals of every window it falls in."""
    for w, span in enumerate(spans):
        slot = window_slot(idx, state.clock, span)
        if slot is not None:
            totals = state.current[w] if slot == 0 else state.previous[w]
            add_tally(totals, item_id, weight, events)


def advance(state: ScopeState, spans: tuple[int, ...], retention: int, to: int) -> bool:
    """Move the clock forward to bucket ``to``, sliding buckets across window edges and
    deleting those ``retention`` buckets behind; True if any window's totals moved."""
    old = state.clock
    moved = False
    for idx in sorted(state.buckets):
        bucket = state.buckets[idx]
        for w, span in enumerate(spans):
            before = window_slot(idx, old, span)
            after = window_slot(idx, to, span)
            if before == after:
                continue
            moved = True
            for item_id, tally in bucket.items():
                if before is not None:
                    source = state.current[w] if before == 0 else state.previous[w]
                    add_tally(source, item_id, -tally.weight, -tally.events)
                if after is not None:
                    target = state.current[w] if after == 0 else state.previous[w]
                    add_tally(target, item_id, tally.weight, tally.events)
        if idx <= to - retention:
            del state.buckets[idx]
            state.newest.pop(idx, None)
    state.clock = to
    return moved
