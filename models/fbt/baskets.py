"""Baskets and their counts: one session's items, and what a set of baskets contributes to the
item and pair counts (or the change between two such counts), whoever stores them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from models.events import EventType

#: Event types that put an item in a basket.
BASKET_TYPES = frozenset({EventType.CART, EventType.PURCHASE})


@dataclass(slots=True)
class Basket:
    """One session's distinct items in the order they entered, and its first/last event."""

    items: list[str] = field(default_factory=list)
    first_ts: float = 0.0
    last_ts: float = 0.0


@dataclass(slots=True)
class BasketCounts:
    """Counts (or changes of counts) in the tracker's shape: ``pairs`` in both directions.

    >>> before = basket_counts([Basket(["a", "b"])])
    >>> after = basket_counts([Basket(["a", "c"]), Basket(["c"])])
    >>> d = after.minus(before)
    >>> d.baskets, d.items, d.pairs["a"], d.pairs["b"]
    (1, {'c': 2, 'b': -1}, {'c': 1, 'b': -1}, {'a': -1})
    """

    baskets: int = 0
    items: dict[str, int] = field(default_factory=dict)
    pairs: dict[str, dict[str, int]] = field(default_factory=dict)

    def minus(self, other: BasketCounts) -> BasketCounts:
        """``self − other``, keeping only the non-zero entries."""
        pairs = {}
        for a in dict.fromkeys([*self.pairs, *other.pairs]):
            row = _diff(self.pairs.get(a, {}), other.pairs.get(a, {}))
            if row:
                pairs[a] = row
        return BasketCounts(self.baskets - other.baskets, _diff(self.items, other.items), pairs)

    def negated(self) -> BasketCounts:
        return BasketCounts(
            -self.baskets,
            {i: -n for i, n in self.items.items()},
            {a: {b: -n for b, n in row.items()} for a, row in self.pairs.items()},
        )


def _diff(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = {}
    for key in dict.fromkeys([*a, *b]):
        value = a.get(key, 0) - b.get(key, 0)
        if value:
            out[key] = value
    return out


def basket_counts(baskets: Iterable[Basket]) -> BasketCounts:
    """What these baskets contribute to the counts: one per basket, per item, per pair."""
    counts = BasketCounts()
    for basket in baskets:
        counts.baskets += 1
        for n, item in enumerate(basket.items):
            counts.items[item] = counts.items.get(item, 0) + 1
            for other in basket.items[:n]:
                for x, y in ((item, other), (other, item)):
                    row = counts.pairs.setdefault(x, {})
                    row[y] = row.get(y, 0) + 1
    return counts
