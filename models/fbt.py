"""Frequently bought together: streaming association rules over baskets.

A *basket* is the set of distinct items a user put in the cart or bought within one session:
a cart/purchase event more than ``session_gap_s`` after the user's previous one starts a new
basket. Counts are updated the moment an item enters a basket (rules are fresh in real time,
no "basket closed" step), over the baskets the model *retains*:

* ``baskets``: number of retained baskets, ``N``;
* ``item_counts[A]``: retained baskets containing A;
* ``pair_counts[A][B]``: retained baskets containing both (kept in both directions).

For a rule A → B: ``support = n(A,B) / N``, ``confidence = n(A,B) / n(A)`` (how often a basket
with A also has B) and ``lift = confidence / (n(B) / N)`` (how much more likely B is next to A
than in any basket; 1 means independent). Rules are ranked by lift by default, because
confidence alone favours items that are in every basket anyway; ``min_count`` keeps lift from
crowning pairs seen once.

Each user retains at most ``baskets_per_user`` baskets (older ones are subtracted from the
counts when they fall out) and :meth:`BasketTracker.expire` subtracts baskets whose last event
is older than ``basket_ttl_s``. The counts are therefore *exactly* the counts of the retained
baskets, integers with nothing approximate, and :meth:`BasketTracker.forget_user` can subtract
every basket of a user: afterwards the state is identical to one built without that user's
events (users do not affect each other's retention).

>>> bt = BasketTracker(session_gap_s=1800)
>>> for user, t in (("ann", 0.0), ("bob", 10.0), ("cy", 20.0)):
...     _ = bt.add(user, "phone", t, EventType.PURCHASE)
...     _ = bt.add(user, "case", t + 60, EventType.CART)
>>> _ = bt.add("dee", "phone", 30.0, EventType.PURCHASE)
>>> _ = bt.add("dee", "charger", 90.0, EventType.PURCHASE)
>>> _ = bt.add("eve", "charger", 100.0, EventType.CART)
>>> _ = bt.add("eve", "cable", 110.0, EventType.CART)
>>> [(r.consequent, r.confidence, r.lift) for r in bt.rules_for("phone", k=5)]
[('case', 0.75, 1.25), ('charger', 0.25, 0.625)]
>>> bt.rules_for("case", k=1)[0]
Rule(antecedent='case', consequent='phone', support=0.6, confidence=1.0, lift=1.25, count=3)
>>> bt.forget_user("dee"); bt.item_counts
{'phone': 3, 'case': 3, 'charger': 1, 'cable': 1}
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from models.events import EventType

#: Event types that put an item in a basket.
BASKET_TYPES = frozenset({EventType.CART, EventType.PURCHASE})


@dataclass(slots=True)
class Basket:
    """One session's distinct items in the order they entered, and its first/last event."""

    items: list[str] = field(default_factory=list)
    first_ts: float = 0.0
    last_ts: float = 0.0


@dataclass(frozen=True, slots=True)
class Rule:
    antecedent: str
    consequent: str
    support: float  # n(A,B) / N
    confidence: float  # n(A,B) / n(A)
    lift: float  # confidence / (n(B) / N)
    count: int  # n(A,B): baskets with both


def _by_lift(rule: Rule) -> tuple[float, float, int, str]:
    return (-rule.lift, -rule.confidence, -rule.count, rule.consequent)


def _by_confidence(rule: Rule) -> tuple[float, float, int, str]:
    return (-rule.confidence, -rule.lift, -rule.count, rule.consequent)


class BasketTracker:
    """Baskets per user and the item/pair counts over all retained baskets."""

    def __init__(
        self,
        session_gap_s: float = 1800.0,
        *,
        max_basket_items: int = 50,
        baskets_per_user: int = 20,
        basket_ttl_s: float = 90 * 86400.0,
        basket_types: frozenset[EventType] = BASKET_TYPES,
    ) -> None:
        if session_gap_s <= 0 or basket_ttl_s <= 0:
            raise ValueError("session_gap_s and basket_ttl_s must be positive")
        if max_basket_items < 1 or baskets_per_user < 1:
            raise ValueError("max_basket_items and baskets_per_user must be at least 1")
        self.session_gap_s = float(session_gap_s)
        self.max_basket_items = max_basket_items
        self.baskets_per_user = baskets_per_user
        self.basket_ttl_s = float(basket_ttl_s)
        self.basket_types = basket_types
        self.users: dict[str, list[Basket]] = {}  # user -> retained baskets, oldest first
        self.item_counts: dict[str, int] = {}
        self.pair_counts: dict[str, dict[str, int]] = {}
        self.baskets = 0

    # ---- updates ---------------------------------------------------------------------------
    def add(
        self, user_id: str, item_id: str, ts: float, event_type: EventType = EventType.PURCHASE
    ) -> bool:
        """Put ``item_id`` in the user's current basket; True if the counts changed.

        Other event types are ignored. An event within ``session_gap_s`` of the user's
        previous cart/purchase joins that basket (a late, out-of-order event too), otherwise
        it opens a new one. An item already in the basket, or beyond ``max_basket_items``
        distinct items (which bounds the pair updates per event), changes no counts but still
        extends the session.
        """
        if event_type not in self.basket_types:
            return False
        baskets = self.users.setdefault(user_id, [])
        if baskets and ts - baskets[-1].last_ts <= self.session_gap_s:
            basket = baskets[-1]
            basket.last_ts = max(basket.last_ts, ts)
        else:
            basket = Basket(first_ts=ts, last_ts=ts)
            baskets.append(basket)
            self.baskets += 1
            while len(baskets) > self.baskets_per_user:
                self._subtract(baskets.pop(0))
        if item_id in basket.items or len(basket.items) >= self.max_basket_items:
            return False
        for other in basket.items:
            self._add_pair(item_id, other, 1)
        self.item_counts[item_id] = self.item_counts.get(item_id, 0) + 1
        basket.items.append(item_id)
        return True

    def expire(self, now: float) -> int:
        """Subtract every basket whose last event is older than ``now − basket_ttl_s``;
        return how many. O(users): run it periodically, not per event."""
        cutoff = now - self.basket_ttl_s
        dropped = 0
        for user_id in list(self.users):
            baskets = self.users[user_id]
            # Baskets are in time order: a new one only opens after the previous one's last event.
            while baskets and baskets[0].last_ts < cutoff:
                self._subtract(baskets.pop(0))
                dropped += 1
            if not baskets:
                del self.users[user_id]
        return dropped

    def restore_user(self, user_id: str, baskets: Sequence[Basket]) -> None:
        """Add a user's retained baskets (oldest first, e.g. loaded from storage) together
        with their counts, as if their events had just been replayed.

        A tracker holding only some users restored from storage is a consistent model of
        those users: after more events, its counts minus :func:`basket_counts` of what was
        restored are exactly the change to the global counts.
        """
        if user_id in self.users:
            raise ValueError("user already present")
        kept = [Basket(list(b.items), b.first_ts, b.last_ts) for b in baskets]
        self.users[user_id] = kept
        counts = basket_counts(kept)
        self.baskets += counts.baskets
        for item, n in counts.items.items():
            self.item_counts[item] = self.item_counts.get(item, 0) + n
        for a, row in counts.pairs.items():
            for b, n in row.items():
                if a < b:
                    self._add_pair(a, b, n)

    def counts(self) -> BasketCounts:
        """A copy of the counts (to take a difference later)."""
        return BasketCounts(
            self.baskets,
            dict(self.item_counts),
            {a: dict(row) for a, row in self.pair_counts.items()},
        )

    def forget_user(self, user_id: str) -> None:
        """Erase the user: subtract every basket of theirs (open or closed) from the counts."""
        for basket in self.users.pop(user_id, []):
            self._subtract(basket)

    # ---- reads -----------------------------------------------------------------------------
    def open_basket(self, user_id: str, now: float) -> tuple[str, ...]:
        """The user's current basket, if its session is still open at ``now``."""
        baskets = self.users.get(user_id)
        if not baskets or now - baskets[-1].last_ts > self.session_gap_s:
            return ()
        return tuple(baskets[-1].items)

    def rules_for(
        self,
        item_id: str,
        k: int = 10,
        *,
        min_support: float = 0.0,
        min_confidence: float = 0.0,
        min_count: int = 1,
        by: Literal["lift", "confidence"] = "lift",
    ) -> list[Rule]:
        """The best rules ``item_id → B``, ranked by lift (or confidence), ties by the other
        measure, then by count, then by item id."""
        return rules_from_counts(
            item_id,
            self.item_counts.get(item_id, 0),
            self.pair_counts.get(item_id, {}),
            self.item_counts,
            self.baskets,
            k,
            min_support=min_support,
            min_confidence=min_confidence,
            min_count=min_count,
            by=by,
        )

    def snapshot(self) -> dict[str, object]:
        """Every piece of state as plain data."""
        return {
            "users": {
                user: [[list(b.items), b.first_ts, b.last_ts] for b in baskets]
                for user, baskets in self.users.items()
            },
            "item_counts": dict(self.item_counts),
            "pair_counts": {a: dict(row) for a, row in self.pair_counts.items()},
            "baskets": self.baskets,
        }

    # ---- internals -------------------------------------------------------------------------
    def _add_pair(self, a: str, b: str, amount: int) -> None:
        for x, y in ((a, b), (b, a)):
            row = self.pair_counts.setdefault(x, {})
            value = row.get(y, 0) + amount
            if value > 0:
                row[y] = value
            else:
                row.pop(y, None)
                if not row:
                    del self.pair_counts[x]

    def _subtract(self, basket: Basket) -> None:
        """Take a retained basket's contribution out of every count."""
        self.baskets -= 1
        for n, item in enumerate(basket.items):
            for other in basket.items[:n]:
                self._add_pair(item, other, -1)
            count = self.item_counts[item] - 1
            if count > 0:
                self.item_counts[item] = count
            else:
                del self.item_counts[item]


# ---- counts of baskets, rules from counts, and basket recommendations -----------------------
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


def rules_from_counts(
    item_id: str,
    n_a: int,
    pairs: Mapping[str, int],
    item_counts: Mapping[str, int],
    total: int,
    k: int = 10,
    *,
    min_support: float = 0.0,
    min_confidence: float = 0.0,
    min_count: int = 1,
    by: Literal["lift", "confidence"] = "lift",
) -> list[Rule]:
    """The best rules ``item_id → B`` from counts (``pairs``: B -> n(A,B)), however they were
    stored: what :meth:`BasketTracker.rules_for` computes, also usable on counts read back
    from a database. A consequent without a positive count is skipped.

    >>> [r.consequent for r in rules_from_counts("a", 3, {"b": 2, "c": 1}, {"b": 2}, 5)]
    ['b']
    """
    if n_a <= 0 or total <= 0:
        return []
    rules = []
    for other, n_ab in pairs.items():
        n_b = item_counts.get(other, 0)
        if n_ab < min_count or n_b <= 0:
            continue
        support = n_ab / total
        confidence = n_ab / n_a
        if support < min_support or confidence < min_confidence:
            continue
        lift = n_ab * total / (n_a * n_b)
        rules.append(Rule(item_id, other, support, confidence, lift, n_ab))
    return heapq.nsmallest(k, rules, key=_by_lift if by == "lift" else _by_confidence)


@dataclass(frozen=True, slots=True)
class BasketCandidate:
    """An item to add to a basket, and how much each basket item (antecedent) added."""

    item_id: str
    score: float
    because: tuple[tuple[str, float], ...]  # (antecedent, contribution), biggest first


def added_value(rule: Rule) -> float:
    """``confidence − P(B)`` = ``confidence · (1 − 1/lift)``: how much more likely B becomes
    once A is in the basket. Confidence alone favours items that are in every basket anyway
    (their lift is ~1 and they add nothing here), lift alone crowns rare items seen together
    once or twice; weighting confidence by lift this way keeps only the association, and a
    rule with lift ≤ 1 (B no likelier next to A than anywhere) adds nothing.

    >>> round(added_value(Rule("phone", "case", 0.6, 0.75, 1.25, 3)), 6)
    0.15
    """
    if rule.lift <= 1.0:
        return 0.0
    return rule.confidence * (1.0 - 1.0 / rule.lift)


def basket_candidates(
    basket: Sequence[str],
    rules: Mapping[str, Sequence[Rule]],
    k: int,
    exclude: Collection[str] = frozenset(),
) -> list[BasketCandidate]:
    """Items to add to ``basket``: each rule ``A → B`` with A in the basket adds
    :func:`added_value`; B already in the basket or in ``exclude`` is skipped. Best first,
    ties by item id.

    >>> r = {"phone": [Rule("phone", "case", 0.6, 0.75, 1.25, 3),
    ...                Rule("phone", "cable", 0.2, 0.25, 0.6, 1)]}
    >>> [(c.item_id, round(c.score, 6), c.because[0][0]) for c in basket_candidates(["phone"], r, 5)
    ... ]
    [('case', 0.15, 'phone')]
    """
    in_basket = set(basket)
    parts: dict[str, list[tuple[float, str]]] = {}
    for antecedent in dict.fromkeys(basket):
        for rule in rules.get(antecedent, ()):
            b = rule.consequent
            if b in in_basket or b in exclude:
                continue
            value = added_value(rule)
            if value > 0.0:
                parts.setdefault(b, []).append((value, antecedent))
    scored = [(math.fsum(v for v, _ in p), item) for item, p in parts.items()]
    best = heapq.nsmallest(k, scored, key=lambda s: (-s[0], s[1]))
    return [
        BasketCandidate(
            item, score, tuple((a, v) for v, a in sorted(parts[item], key=lambda x: (-x[0], x[1])))
        )
        for score, item in best
    ]
