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

>>> from models.events import EventType
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

from models.fbt.baskets import BASKET_TYPES, Basket, BasketCounts, basket_counts
from models.fbt.rules import (
    BasketCandidate,
    Rule,
    added_value,
    basket_candidates,
    rules_from_counts,
)
from models.fbt.tracker import BasketTracker

__all__ = [
    "BASKET_TYPES",
    "Basket",
    "BasketCandidate",
    "BasketCounts",
    "BasketTracker",
    "Rule",
    "added_value",
    "basket_candidates",
    "basket_counts",
    "rules_from_counts",
]
