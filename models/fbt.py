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
        n_a = self.item_counts.get(item_id, 0)
        if n_a == 0 or self.baskets == 0:
            return []
        total = self.baskets
        rules = []
        for other, n_ab in self.pair_counts.get(item_id, {}).items():
            if n_ab < min_count:
                continue
            support = n_ab / total
            confidence = n_ab / n_a
            if support < min_support or confidence < min_confidence:
                continue
            lift = n_ab * total / (n_a * self.item_counts[other])
            rules.append(Rule(item_id, other, support, confidence, lift, n_ab))
        return heapq.nsmallest(k, rules, key=_by_lift if by == "lift" else _by_confidence)

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
