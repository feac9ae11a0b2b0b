"""Merchant funnel maths: windowed counts, conversion rates, exposure share.

The worker counts per merchant and per time bucket (streams/runtime/analytics.py); this module
decides which buckets a window covers and turns the summed counts into rates. Kept pure so the edge
cases (no views, more carts than views, an empty window) are tested without Redis.

>>> f = funnel({"view": 10, "cart": 4, "purchase": 1})
>>> f.rates
{'view_to_cart': 0.4, 'cart_to_purchase': 0.25, 'view_to_purchase': 0.1}
>>> funnel({}).rates["view_to_cart"] is None
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

#: The funnel's stages, in order.
STAGES: Final = ("view", "cart", "purchase")
#: Every item event type the counters keep (the funnel uses three of them).
COUNTED_TYPES: Final = ("view", "like", "share", "cart", "purchase", "hide")


def rate(numerator: int, denominator: int) -> float | None:
    """``numerator / denominator`` rounded to 6 places, ``None`` when there is nothing to
    divide by (0 % would claim a conversion that was never possible).

    A rate can exceed 1: carts may come from places the worker never saw a view of (a shared
    link, a live stream), so it is reported as measured, not clamped.

    >>> rate(1, 3), rate(5, 0), rate(6, 4)
    (0.333333, None, 1.5)
    """
    if denominator <= 0:
        return None
    return round(numerator / denominator, 6)


@dataclass(frozen=True, slots=True)
class Funnel:
    counts: dict[str, int]  # every counted type, 0 when absent
    rates: dict[str, float | None]


def funnel(counts: Mapping[str, int]) -> Funnel:
    """Counts of every type and the view → cart → purchase conversion rates."""
    full = {t: int(counts.get(t, 0)) for t in COUNTED_TYPES}
    return Funnel(
        full,
        {
            "view_to_cart": rate(full["cart"], full["view"]),
            "cart_to_purchase": rate(full["purchase"], full["cart"]),
            "view_to_purchase": rate(full["purchase"], full["view"]),
        },
    )


def bucket_of(ts: float, bucket_s: float) -> int:
    """The bucket a time falls in.

    >>> bucket_of(125.0, 60.0)
    2
    """
    return math.floor(ts / bucket_s)


def window_buckets(now: float, window_s: float, bucket_s: float) -> range:
    """The buckets covering the last ``window_s`` up to ``now`` (the current bucket included,
    so a window is at most one bucket longer than asked: counts are never cut off early).

    >>> list(window_buckets(125.0, 120.0, 60.0))
    [0, 1, 2]
    >>> list(window_buckets(125.0, 1.0, 60.0))
    [2]
    """
    return range(bucket_of(now - window_s, bucket_s), bucket_of(now, bucket_s) + 1)


def sum_counts(buckets: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Field-wise sum of the buckets' counts.

    >>> sum_counts([{"view": 2}, {"view": 1, "cart": 1}])
    {'view': 3, 'cart': 1}
    """
    total: dict[str, int] = {}
    for bucket in buckets:
        for name, count in bucket.items():
            total[name] = total.get(name, 0) + int(count)
    return total


def exposure_share(merchant_slots: int, total_slots: int) -> float | None:
    """The merchant's share of published recommendation slots (None: nothing published).

    >>> exposure_share(3, 12), exposure_share(0, 0)
    (0.25, None)
    """
    return rate(merchant_slots, total_slots)
