"""User-user collaborative filtering: people who act like you, and what they liked.

Each user is a vector of affinities ``a_ui`` (the clamped sum of their event weights on item
``i``, as in :mod:`models.similarity`). Two users are similar by the cosine of their vectors:

    sim(u, v) = Σ_i a_ui·a_vi / (‖u‖·‖v‖)

The model holds a set of *entries* (user, item, affinity), each stored twice and always
together: ``items[u][i] = a_ui`` and, in the inverted index, ``index[i][u] = last event time``.
Both sides are bounded: a user keeps their ``items_per_user`` most recent items and an item
indexes its ``users_per_item`` most recent users; an entry evicted from either side is removed
from both, so the model is always exactly "these entries", never half of one.

Dot products are computed when asked, from the index, instead of being maintained per pair:
a query walks the user's items and, for each, the users indexing it, O(items_per_user ×
users_per_item) bounded work. In exchange nothing drifts (sums are :func:`math.fsum`, so
``sim(u, v) == sim(v, u)`` exactly), an event costs O(items_per_user) (the user's norm is
recomputed from their row) plus one scan of a row when a cap is exceeded, and erasing a user
is removing their entries: no pair table holds them anywhere else.

>>> cf = UserCF()
>>> for user, items in {"ann": ["phone", "case", "tripod"], "bob": ["phone", "case"],
...                     "cy": ["dress"]}.items():
...     for n, item in enumerate(items):
...         _ = cf.add(user, item, EventType.PURCHASE, ts=float(n))
>>> [(n.user_id, round(n.similarity, 3), n.overlap) for n in cf.neighbours("bob", k=5)]
[('ann', 0.816, 2)]
>>> [(c.item_id, round(c.score, 3), c.contributors) for c in cf.candidates("bob", k=5)]
[('tripod', 6.532, ('ann',))]
>>> cf.forget_user("ann"); cf.candidates("bob", k=5)
[]
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from heapq import nsmallest

from models.events import DEFAULT_WEIGHTS, EventType
from models.similarity import affinity_after
from models.topk import top_k


def pool_order(overlaps: Mapping[str, tuple[int, float]], size: int) -> list[str]:
    """The ``size`` users most worth comparing: most items in common, then the most recent,
    then by id. ``overlaps``: user -> (items in common, latest time on one of them).

    >>> pool_order({"a": (1, 5.0), "b": (2, 1.0), "c": (1, 9.0)}, 2)
    ['b', 'c']
    """
    return nsmallest(
        size, overlaps, key=lambda user: (-overlaps[user][0], -overlaps[user][1], user)
    )


@dataclass(frozen=True, slots=True)
class Neighbour:
    user_id: str
    similarity: float  # cosine in [0, 1]
    overlap: int  # items both users have entries for


@dataclass(frozen=True, slots=True)
class UserCFCandidate:
    """An item the user's neighbours have, ``score = Σ_v sim(u, v)·a_vi``, with the
    neighbours that contributed most (biggest first).

    ``contributors`` are other people's ids: fine for debugging and evaluation, but what
    reaches the user should say "people like you", never who.
    """

    item_id: str
    score: float
    contributors: tuple[str, ...]


class UserCF:
    """Bounded user→item affinities with an item→users index; neighbours and candidates."""

    def __init__(
        self,
        *,
        weights: Mapping[EventType, float] | None = None,
        affinity_cap: float = 15.0,
        items_per_user: int = 50,
        users_per_item: int = 200,
        neighbours: int = 20,
        min_overlap: int = 1,
        contributors_per_item: int = 3,
        entry_ttl_s: float = 30 * 86400.0,
        neighbour_pool: int | None = None,
    ) -> None:
        """``neighbour_pool``: if set, similarities are computed only for that many users, the
        ones with most items in common (then the most recent, then by id: :func:`pool_order`),
        as the worker does to bound what it reads from Redis; None considers every user who
        shares an item."""
        if items_per_user < 1 or users_per_item < 1 or neighbours < 1:
            raise ValueError("items_per_user, users_per_item and neighbours must be at least 1")
        if neighbour_pool is not None and neighbour_pool < 1:
            raise ValueError("neighbour_pool must be at least 1 (or None: no pool)")
        self.weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        self.affinity_cap = affinity_cap
        self.items_per_user = items_per_user
        self.users_per_item = users_per_item
        self.max_neighbours = neighbours
        self.min_overlap = min_overlap
        self.contributors_per_item = contributors_per_item
        self.entry_ttl_s = entry_ttl_s
        self.neighbour_pool = neighbour_pool
        self.items: dict[str, dict[str, float]] = {}  # user -> item -> affinity (> 0)
        self.index: dict[str, dict[str, float]] = {}  # item -> user -> last event ts
        self.norm2: dict[str, float] = {}  # user -> Σ affinity², recomputed from items[user]

    # ---- updates ---------------------------------------------------------------------------
    def add(self, user_id: str, item_id: str, event_type: EventType, ts: float) -> bool:
        """Apply one event with its configured weight; True if an entry changed."""
        return self.add_weight(user_id, item_id, self.weights.get(event_type, 0.0), ts)

    def add_weight(self, user_id: str, item_id: str, weight: float, ts: float) -> bool:
        """Change ``a_ui`` by ``weight`` (clamped to ``[0, affinity_cap]``); at zero (e.g. after
        a hide) the entry is removed. Then the caps evict the least recent entries."""
        if not (math.isfinite(weight) and math.isfinite(ts)):
            raise ValueError("weight and ts must be finite numbers")
        if weight == 0.0:
            return False
        row = self.items.get(user_id, {})
        old = row.get(item_id, 0.0)
        new = affinity_after(old, weight, cap=self.affinity_cap)
        if new <= 0.0:
            if old > 0.0:
                self._remove_entry(user_id, item_id)
                return True
            return False
        row[item_id] = new
        self.items[user_id] = row
        users = self.index.setdefault(item_id, {})
        users[user_id] = max(users.get(user_id, ts), ts)
        while len(row) > self.items_per_user:
            oldest = min(row, key=lambda i: (self.index[i][user_id], i))
            self._remove_entry(user_id, oldest)
        while len(users) > self.users_per_item:
            oldest = min(users, key=lambda u: (users[u], u))
            self._remove_entry(oldest, item_id)
        if user_id in self.items:
            self._renorm(user_id)
        return True

    def expire(self, now: float) -> int:
        """Remove entries whose last event is older than ``now − entry_ttl_s``; return how
        many. O(entries): run it periodically. It is what forgets users who went quiet."""
        cutoff = now - self.entry_ttl_s
        stale = [
            (user_id, item_id)
            for item_id, users in self.index.items()
            for user_id, ts in users.items()
            if ts < cutoff
        ]
        for user_id, item_id in stale:
            self._remove_entry(user_id, item_id)
        return len(stale)

    def restore_user(self, user_id: str, entries: Mapping[str, tuple[float, float]]) -> None:
        """Put back a user's entries, item -> (affinity, last event ts), e.g. loaded from
        storage; entries with affinity ≤ 0 are skipped. No cap is applied (a stored row is
        already within its caps), so a model can hold just the users a computation needs.

        >>> cf = UserCF()
        >>> cf.restore_user("ann", {"phone": (8.0, 1.0), "case": (6.0, 2.0)})
        >>> cf.norm2["ann"], cf.index["case"]
        (100.0, {'ann': 2.0})
        """
        if user_id in self.items:
            raise ValueError("user already present")
        row = {item: float(a) for item, (a, _) in entries.items() if a > 0.0}
        if not row:
            return
        self.items[user_id] = row
        for item_id in row:
            self.index.setdefault(item_id, {})[user_id] = float(entries[item_id][1])
        self._renorm(user_id)

    def forget_user(self, user_id: str) -> None:
        """Remove every entry of the user from both sides of the index."""
        for item_id in list(self.items.get(user_id, ())):
            self._remove_entry(user_id, item_id)

    # ---- reads -----------------------------------------------------------------------------
    def neighbours(self, user_id: str, k: int | None = None) -> list[Neighbour]:
        """The ``k`` (default: the configured number) most similar users sharing at least
        ``min_overlap`` items; ties by overlap, then user id."""
        row = self.items.get(user_id)
        if not row:
            return []
        if self.neighbour_pool is not None:
            return self._pooled_neighbours(user_id, row, k)
        # Up to items_per_user × users_per_item products per request: plain locals and tuples
        # here, Neighbour objects only for the k kept (this runs on every request).
        items, index = self.items, self.index
        products: dict[str, list[float]] = {}
        for item_id, affinity in row.items():
            for other in index.get(item_id, ()):
                if other == user_id:
                    continue
                product = affinity * items[other][item_id]
                parts = products.get(other)
                if parts is None:
                    products[other] = [product]
                else:
                    parts.append(product)
        norm_u = math.sqrt(self.norm2[user_id])
        norm2, fsum, sqrt, min_overlap = self.norm2, math.fsum, math.sqrt, self.min_overlap
        # (−similarity, −overlap, id): the ranking order, compared in C without a key function.
        # Two square roots, not one of the product (which can underflow); clamp rounding.
        found = [
            (-min(1.0, fsum(parts) / (norm_u * sqrt(norm2[other]))), -len(parts), other)
            for other, parts in products.items()
            if len(parts) >= min_overlap
        ]
        count = self.max_neighbours if k is None else k
        return [Neighbour(other, -sim, -overlap) for sim, overlap, other in nsmallest(count, found)]

    def _pooled_neighbours(
        self, user_id: str, row: dict[str, float], k: int | None
    ) -> list[Neighbour]:
        """:meth:`neighbours` among the ``neighbour_pool`` users with most items in common:
        one pass counting overlaps (and each user's latest time on a shared item, the
        tie-break), then exact similarities for the pool only, from the rows."""
        assert self.neighbour_pool is not None
        pool = self._pool(user_id, row, self.neighbour_pool)
        assert self.neighbour_pool is not None
        norm_u = math.sqrt(self.norm2[user_id])
        found = []
        for other, overlap in pool:
            if overlap < self.min_overlap:
                continue
            theirs = self.items[other]
            dot = math.fsum(a * theirs[i] for i, a in row.items() if i in theirs)
            sim = min(1.0, dot / (norm_u * math.sqrt(self.norm2[other])))
            found.append((-sim, -overlap, other))
        count = self.max_neighbours if k is None else k
        return [Neighbour(other, -sim, -overlap) for sim, overlap, other in nsmallest(count, found)]

    def _pool(self, user_id: str, row: Mapping[str, float], size: int) -> list[tuple[str, int]]:
        """The :func:`pool_order` pool of the user, with each member's overlap.

        Counting is done in C (``Counter.update`` over each item's users); the latest time,
        which only breaks ties, is looked up only for the users tied at the pool's edge.
        """
        counts: Counter[str] = Counter()
        for item_id in row:
            users = self.index.get(item_id)
            if users:
                counts.update(users.keys())
        counts.pop(user_id, None)
        if len(counts) <= size:
            return list(counts.items())
        edge = sorted(counts.values(), reverse=True)[size - 1]
        pool = [(user, n) for user, n in counts.items() if n > edge]
        tied = {user for user, n in counts.items() if n == edge}
        latest = dict.fromkeys(tied, -math.inf)
        for item_id in row:
            users = self.index.get(item_id, {})
            for user in users.keys() & tied:
                ts = users[user]
                if ts > latest[user]:
                    latest[user] = ts
        # (−latest, id) tuples sort in C: often hundreds tie at the edge (one item in common).
        rest = sorted([(-ts, user) for user, ts in latest.items()])[: size - len(pool)]
        return pool + [(user, edge) for _, user in rest]

    def candidates(
        self,
        user_id: str,
        k: int,
        exclude: Collection[str] = frozenset(),
        *,
        contributors: bool = True,
    ) -> list[UserCFCandidate]:
        """Items the user's neighbours have and the user has not (nor in ``exclude``),
        scored ``Σ_v sim(u, v)·a_vi``; ties by item id. With ``contributors=False`` each
        candidate's contributors are left empty (what reaches a user never names them, and
        ranking them costs a sort per candidate)."""
        own = self.items.get(user_id, {})
        neighbours = self.neighbours(user_id)
        fsum = math.fsum
        if not contributors:
            # Scores only: the path every request takes. A plain running sum is exact enough
            # and still reproducible: an item's terms are always added in neighbour order.
            scores: dict[str, float] = {}
            for neighbour in neighbours:
                similarity = neighbour.similarity
                for item_id, affinity in self.items[neighbour.user_id].items():
                    if item_id not in own and item_id not in exclude:
                        scores[item_id] = scores.get(item_id, 0.0) + similarity * affinity
            return [UserCFCandidate(item_id, score, ()) for item_id, score in top_k(scores, k)]
        parts: dict[str, list[tuple[float, str]]] = {}
        for neighbour in neighbours:
            similarity, other = neighbour.similarity, neighbour.user_id
            for item_id, affinity in self.items[other].items():
                if item_id in own or item_id in exclude:
                    continue
                parts.setdefault(item_id, []).append((similarity * affinity, other))
        scored = [(-fsum(c for c, _ in p), item_id) for item_id, p in parts.items()]
        result = []
        for negative, item_id in nsmallest(k, scored):
            top = sorted(parts[item_id], key=lambda c: (-c[0], c[1]))
            who = tuple(user for _, user in top[: self.contributors_per_item])
            result.append(UserCFCandidate(item_id, -negative, who))
        return result

    def similarity(self, a: str, b: str) -> float:
        """sim(a, b) from the current entries (0 for unknown users)."""
        row_a, row_b = self.items.get(a), self.items.get(b)
        if not row_a or not row_b:
            return 0.0
        dot = math.fsum(x * row_b[i] for i, x in row_a.items() if i in row_b)
        if dot <= 0.0:
            return 0.0
        return min(1.0, dot / (math.sqrt(self.norm2[a]) * math.sqrt(self.norm2[b])))

    def snapshot(self) -> dict[str, object]:
        """Every piece of state as plain data."""
        return {
            "items": {u: dict(row) for u, row in self.items.items()},
            "index": {i: dict(users) for i, users in self.index.items()},
            "norm2": dict(self.norm2),
        }

    # ---- internals -------------------------------------------------------------------------
    def _renorm(self, user_id: str) -> None:
        # Recomputed from the user's (bounded) row rather than updated by differences, so it
        # never drifts and vanishes exactly with the user's last entry.
        self.norm2[user_id] = math.fsum(a * a for a in self.items[user_id].values())

    def _remove_entry(self, user_id: str, item_id: str) -> None:
        row = self.items.get(user_id)
        if row is not None and row.pop(item_id, None) is not None:
            if row:
                self._renorm(user_id)
            else:
                del self.items[user_id]
                self.norm2.pop(user_id, None)
        users = self.index.get(item_id)
        if users is not None:
            users.pop(user_id, None)
            if not users:
                del self.index[item_id]
