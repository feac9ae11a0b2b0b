"""Time-decayed popularity with forward decay, so stored scores never need rewriting per event.

A weight ``w`` arriving at time ``t`` adds ``w · 2^((t − L) / h)`` to the item's stored score,
where ``h`` is the half-life and ``L`` a landmark time. Ratios between stored scores are the
ratios of the decayed popularities at any common time, so ranking needs no decay at read time.
When ``t − L`` grows large the stored numbers would overflow, so the landmark moves forward and
every stored score is multiplied by ``2^((L_old − L_new) / h)`` once (:func:`rebase_factor`).

>>> round(forward_weight(2.0, ts=3600.0, landmark=0.0, half_life_s=3600.0), 6)
4.0
>>> round(decayed_score(4.0, landmark=0.0, at=3600.0, half_life_s=3600.0), 6)
2.0
>>> needs_rebase(ts=100 * 3600.0, landmark=0.0, half_life_s=3600.0)
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

#: Exponent (in half-lives) after which the landmark moves; 2^64 keeps well inside a double.
REBASE_AFTER_HALF_LIVES = 64.0


def forward_weight(weight: float, *, ts: float, landmark: float, half_life_s: float) -> float:
    """The amount to add to an item's stored popularity for an event of ``weight`` at ``ts``."""
    return weight * math.pow(2.0, (ts - landmark) / half_life_s)


def needs_rebase(*, ts: float, landmark: float, half_life_s: float) -> bool:
    """Whether an event at ``ts`` would push stored scores towards overflow."""
    return (ts - landmark) / half_life_s > REBASE_AFTER_HALF_LIVES


def rebase_factor(*, old_landmark: float, new_landmark: float, half_life_s: float) -> float:
    """Multiplier that re-expresses stored scores relative to a new landmark."""
    return math.pow(2.0, (old_landmark - new_landmark) / half_life_s)


def step_landmark(
    landmark: float | None, times: Sequence[float], half_life_s: float
) -> tuple[float | None, float | None]:
    """The landmark a step adding events at ``times`` (in order) counts from, and the factor
    its stored scores are re-expressed by first (None: they stay). The stored landmark; with
    none, the first event's time, as if events came one by one, so how they were cut into steps
    (a replay after a rewind cuts them otherwise) changes no stored number; and when an event
    would push scores towards overflow, the newest time. Rebasing changes no ratio, so when it
    happens is free; deciding it once per step lets a store be handed the amounts.

    >>> step_landmark(None, [5.0, 9.0], 3600.0), step_landmark(0.0, [3600.0], 3600.0)
    ((5.0, None), (0.0, None))
    >>> step_landmark(0.0, [65 * 3600.0], 3600.0) == (65 * 3600.0, 2.0**-65)
    True
    """
    if not times:
        return landmark, None
    newest = max(times)
    start = times[0] if landmark is None else landmark
    if not needs_rebase(ts=newest, landmark=start, half_life_s=half_life_s):
        return start, None
    if landmark is None:
        return newest, None
    return newest, rebase_factor(
        old_landmark=landmark, new_landmark=newest, half_life_s=half_life_s
    )


def decayed_score(stored: float, *, landmark: float, at: float, half_life_s: float) -> float:
    """A stored score as a decayed weighted count at time ``at`` (what people can read)."""
    return stored * math.pow(2.0, (landmark - at) / half_life_s)


def merged_top(
    parts: Iterable[tuple[Sequence[tuple[str, float]], float]], count: int, half_life_s: float
) -> tuple[tuple[tuple[str, float], ...], float]:
    """The ``count`` most popular items of several partitions' popularity, given each one's
    best items (stored scores) and landmark: re-expressed at the newest landmark and summed
    per item, partitions in the order given. An item outside every partition's best can be
    missed; each partition's ``count`` best are read, so only one near the edge everywhere.

    >>> merged_top([([("a", 4.0), ("b", 1.0)], 3600.0), ([("b", 2.0)], 0.0)], 2, 3600.0)
    ((('a', 4.0), ('b', 2.0)), 3600.0)
    """
    parts = [(items, landmark) for items, landmark in parts if items]
    if not parts:
        return (), 0.0
    newest = max(landmark for _, landmark in parts)
    sums: dict[str, float] = {}
    for items, landmark in parts:
        factor = rebase_factor(old_landmark=landmark, new_landmark=newest, half_life_s=half_life_s)
        for item, score in items:
            sums[item] = sums.get(item, 0.0) + score * factor
    # Ties as a Redis sorted set read from the top gives them: the larger member first.
    best = sorted(sums.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:count]
    return tuple(best), newest
