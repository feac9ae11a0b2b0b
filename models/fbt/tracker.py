"""The in-memory baskets of every user and the exact item and pair counts over them
(:class:`BasketTracker`): updates, caps, expiry, erasure, and rules on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from models.events import EventType
from models.fbt.baskets import BASKET_TYPES, Basket, BasketCounts, basket_counts
from models.fbt.rules import Rule, rules_from_counts


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
