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


def decayed_score(stored: float, *, landmark: float, at: float, half_life_s: float) -> float:
    """A stored score as a decayed weighted count at time ``at`` (what people can read)."""
    return stored * math.pow(2.0, (landmark - at) / half_life_s)
