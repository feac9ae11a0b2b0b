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
a query counts, over the user's items, the users indexing them (O(items_per_user ×
users_per_item) bounded work, one numpy bincount), then computes the dot products with the
users it compares. In exchange nothing drifts (each dot product adds the shared items in id
order, so ``sim(u, v) == sim(v, u)`` exactly), an event costs O(items_per_user) (the user's
norm is recomputed from their row) plus one scan of a row when a cap is exceeded, and erasing
a user is removing their entries: no pair table holds them anywhere else.

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
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from heapq import nsmallest
from itertools import chain

import numpy as np
import numpy.typing as npt

from models.events import DEFAULT_WEIGHTS, EventType
from models.similarity import affinity_after

_IntArray = npt.NDArray[np.intp]
_FloatArray = npt.NDArray[np.float64]


class _Codes:
    """Dense integer codes for ids, so per-request sums can be numpy bincounts. A forgotten
    id's code is recycled: the arrays that held it were dropped with its entries."""

    __slots__ = ("_free", "code", "names")

    def __init__(self) -> None:
        self.code: dict[str, int] = {}
        self.names: list[str] = []  # code -> id ("" for a free code)
        self._free: list[int] = []

    def add(self, name: str) -> None:
        if name not in self.code:
            if self._free:
                code = self._free.pop()
                self.names[code] = name
            else:
                code = len(self.names)
                self.names.append(name)
            self.code[name] = code

    def forget(self, name: str) -> None:
        code = self.code.pop(name, None)
        if code is not None:
            self.names[code] = ""
            self._free.append(code)


def pool_order(overlaps: Mapping[str, tuple[int, float]], size: int) -> list[str]:
    """The ``size`` users most worth comparing: most items in common, then the most recent,
    then by id. ``overlaps``: user -> (items in common, latest time on one of them).

    >>> pool_order({"a": (1, 5.0), "b": (2, 1.0), "c": (1, 9.0)}, 2)
    ['b', 'c']
    """
    return nsmallest(
        size, overlaps, key=lambda user: (-overlaps[user][0], -overlaps[user][1], user)
    )


def pool_of(
    indexes: Sequence[tuple[_IntArray, _FloatArray]],
    own: int,
    size: int,
    names: Sequence[str],
) -> list[tuple[str, int]]:
    """:func:`pool_order` over indexes given as arrays: each item's (user codes, last event
    times), ``own`` the user's code (left out), ``names`` code -> user id. Returns the pool
    with each member's overlap, in no particular order.

    Overlaps are one bincount over the codes; the latest time, which only breaks ties, is
    looked up only for the users tied at the pool's edge.

    >>> phone = (np.array([0, 1, 2]), np.array([1.0, 3.0, 9.0]))
    >>> case = (np.array([0, 1]), np.array([2.0, 4.0]))
    >>> sorted(pool_of([phone, case], 0, 2, ["ann", "bob", "cy"]))
    [('bob', 2), ('cy', 1)]
    """
    if not indexes:
        return []
    codes = np.concatenate([users for users, _ in indexes])
    counts = np.bincount(codes, minlength=own + 1)
    counts[own] = 0  # the user indexes their own items
    others = np.flatnonzero(counts)
    if len(others) <= size:
        return list(zip([names[u] for u in others.tolist()], counts[others].tolist(), strict=True))
    overlaps = counts[others]
    edge = int(np.partition(overlaps, len(others) - size)[len(others) - size])
    above = others[overlaps > edge]
    pool = list(zip([names[u] for u in above.tolist()], counts[above].tolist(), strict=True))
    # Often hundreds tie at the edge (one item in common): their latest time on a shared
    # item, then (−latest, id) tuples sorted in C.
    tied = counts == edge
    times = np.concatenate([ts for _, ts in indexes])
    at_edge = tied[codes]
    latest = np.full(len(counts), -np.inf)
    np.maximum.at(latest, codes[at_edge], times[at_edge])
    edge_users = np.flatnonzero(tied)
    ids = [names[u] for u in edge_users.tolist()]
    rest = sorted(zip((-latest[edge_users]).tolist(), ids, strict=True))[: size - len(pool)]
    return pool + [(user, edge) for _, user in rest]


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
        # The two dicts again as numpy arrays over integer codes, built when first read and
        # dropped when their row or index changes: the per-request sums (overlap counts, the
        # candidates' scores) then run as bincounts in C instead of dict walks. Codes hold
        # ids only (no affinities or times); an id loses its code with its last entry, so an
        # erased user leaves neither a code nor an array behind.
        self._item_codes = _Codes()
        self._user_codes = _Codes()
        self._row_arrays: dict[str, tuple[_IntArray, _FloatArray]] = {}  # codes, affinities
        self._index_arrays: dict[str, tuple[_IntArray, _FloatArray]] = {}  # codes, times

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
        if old == 0.0:  # a new entry: both ids need codes (they lose them with their last)
            self._user_codes.add(user_id)
            self._item_codes.add(item_id)
        row[item_id] = new
        self.items[user_id] = row
        users = self.index.setdefault(item_id, {})
        users[user_id] = max(users.get(user_id, ts), ts)
        self._row_arrays.pop(user_id, None)
        self._index_arrays.pop(item_id, None)
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
        self._user_codes.add(user_id)
        for item_id in row:
            self.index.setdefault(item_id, {})[user_id] = float(entries[item_id][1])
            self._index_arrays.pop(item_id, None)
            self._item_codes.add(item_id)
        self._renorm(user_id)

    def forget_user(self, user_id: str) -> None:
        """Remove every entry of the user from both sides of the index."""
        for item_id in list(self.items.get(user_id, ())):
            self._remove_entry(user_id, item_id)

    # ---- reads -----------------------------------------------------------------------------
    def neighbours(
        self, user_id: str, k: int | None = None, among: Collection[str] | None = None
    ) -> list[Neighbour]:
        """The ``k`` (default: the configured number) most similar users sharing at least
        ``min_overlap`` items; ties by overlap, then user id. With a ``neighbour_pool``, only
        the users of the pool are compared; ``among`` names the pool instead (a model that
        holds the rows of many users' pools, read from storage, computes each user's list
        as a model holding only that user's pool would)."""
        row = self.items.get(user_id)
        if not row:
            return []
        if among is None:
            size = len(self.items) if self.neighbour_pool is None else self.neighbour_pool
            others = [other for other, _ in self._pool(user_id, row, size)]
        else:
            others = [other for other in among if other != user_id and other in self.items]
        if not others:
            return []
        dots, overlaps = self._dots(user_id, others)
        kept = np.flatnonzero(overlaps >= max(1, self.min_overlap))
        if not len(kept):
            return []
        others = [others[n] for n in kept.tolist()]
        # Two square roots, not one of the product (which can underflow); clamp rounding.
        norms = np.sqrt(np.array([self.norm2[other] for other in others]))
        similarities = np.minimum(1.0, dots[kept] / (math.sqrt(self.norm2[user_id]) * norms))
        # (−similarity, −overlap, id): the ranking order, compared in C without a key function.
        found = sorted(
            zip((-similarities).tolist(), (-overlaps[kept]).tolist(), others, strict=True)
        )
        count = self.max_neighbours if k is None else k
        return [Neighbour(other, -sim, -overlap) for sim, overlap, other in found[:count]]

    def _dots(self, user_id: str, others: list[str]) -> tuple[_FloatArray, _IntArray]:
        """``Σ_i a_ui·a_vi`` for each of ``others``, and how many items each shares with the
        user, in two bincounts. Each sum runs over the shared items in id order (rows are
        stored sorted), so it is a function of the two rows alone: ``dot(u, v) == dot(v, u)``
        exactly, in this model or any other holding the same rows."""
        rows = [self._row_array(other) for other in others]
        mine, affinities = self._row_array(user_id)
        dense = np.zeros(len(self._item_codes.names))
        dense[mine] = affinities
        mask = np.zeros(len(dense), dtype=np.bool_)
        mask[mine] = True
        codes = np.concatenate([items for items, _ in rows])
        owner = np.repeat(np.arange(len(others)), [len(items) for items, _ in rows])
        theirs = np.concatenate([a for _, a in rows])
        # Unshared items add dense's 0.0, which leaves a float sum unchanged.
        dots = np.bincount(owner, weights=dense[codes] * theirs, minlength=len(others))
        shared = np.bincount(owner[mask[codes]], minlength=len(others))
        return np.asarray(dots, dtype=np.float64), shared

    def _pool(self, user_id: str, row: Mapping[str, float], size: int) -> list[tuple[str, int]]:
        """The :func:`pool_order` pool of the user, with each member's overlap
        (:func:`pool_of` over the indexes of the user's items)."""
        arrays = [self._index_array(item_id) for item_id in row if item_id in self.index]
        own = self._user_codes.code[user_id]
        return pool_of(arrays, own, size, self._user_codes.names)

    def _index_array(self, item_id: str) -> tuple[_IntArray, _FloatArray]:
        """The item's index as (user codes, last event times), cached until it changes."""
        arrays = self._index_arrays.get(item_id)
        if arrays is None:
            users = self.index[item_id]
            arrays = self._index_arrays[item_id] = (
                np.fromiter(map(self._user_codes.code.__getitem__, users), np.intp, len(users)),
                np.fromiter(users.values(), dtype=np.float64, count=len(users)),
            )
        return arrays

    def _row_array(self, user_id: str) -> tuple[_IntArray, _FloatArray]:
        """The user's row as (item codes, affinities), cached until it changes."""
        arrays = self._row_arrays.get(user_id)
        if arrays is None:
            row = self.items[user_id]
            ordered = sorted(row)  # id order: what makes :meth:`_dots` symmetric
            arrays = self._row_arrays[user_id] = (
                np.fromiter(map(self._item_codes.code.__getitem__, ordered), np.intp, len(row)),
                np.fromiter(map(row.__getitem__, ordered), dtype=np.float64, count=len(row)),
            )
        return arrays

    def candidates(
        self,
        user_id: str,
        k: int,
        exclude: Collection[str] = frozenset(),
        *,
        contributors: bool = True,
        among: Collection[str] | None = None,
    ) -> list[UserCFCandidate]:
        """Items the user's neighbours have and the user has not (nor in ``exclude``),
        scored ``Σ_v sim(u, v)·a_vi``; ties by item id. With ``contributors=False`` each
        candidate's contributors are left empty (what reaches a user never names them, and
        ranking them costs a sort per candidate)."""
        if not contributors:
            ranked = self.top_k(user_id, k, exclude, among=among)
            return [UserCFCandidate(i, score, ()) for i, score in ranked]
        own = self.items.get(user_id, {})
        neighbours = self.neighbours(user_id, among=among)
        fsum = math.fsum
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

    def top_k(
        self,
        user_id: str,
        k: int,
        exclude: Collection[str] = frozenset(),
        *,
        among: Collection[str] | None = None,
    ) -> list[tuple[str, float]]:
        """:meth:`candidates` as (item, score) pairs, best first, without contributors: the
        path every request takes, one bincount over the neighbours' rows. A plain running sum
        is exact enough and reproducible: bincount adds each item's terms in neighbour order,
        as ``score += similarity × affinity`` in a loop would."""
        neighbours = self.neighbours(user_id, among=among)
        if not neighbours or k <= 0:
            return []
        banned = chain(self.items[user_id], exclude)
        rows = [self._row_array(n.user_id) for n in neighbours]
        codes = np.concatenate([items for items, _ in rows])
        similarities = np.repeat(
            np.array([n.similarity for n in neighbours]), [len(items) for items, _ in rows]
        )
        scores = np.bincount(codes, weights=similarities * np.concatenate([a for _, a in rows]))
        proposed = np.zeros(len(scores), dtype=np.bool_)
        proposed[codes] = True
        code_of = self._item_codes.code
        proposed[[c for c in map(code_of.get, banned) if c is not None and c < len(scores)]] = False
        found = np.flatnonzero(proposed)
        values = scores[found]
        if len(found) > k:
            # Keep everything tied with the k-th best so the id tie-break below is honest.
            threshold = np.partition(values, len(found) - k)[len(found) - k]
            keep = values >= threshold
            found, values = found[keep], values[keep]
        names = self._item_codes.names
        best = sorted(zip((-values).tolist(), [names[c] for c in found.tolist()], strict=True))
        return [(item_id, -negative) for negative, item_id in best[:k]]

    def similarity(self, a: str, b: str) -> float:
        """sim(a, b) from the current entries (0 for unknown users)."""
        row_a, row_b = self.items.get(a), self.items.get(b)
        if not row_a or not row_b:
            return 0.0
        # The shared items in id order, as :meth:`_dots` adds them.
        dot = sum(row_a[i] * row_b[i] for i in sorted(row_a.keys() & row_b.keys()))
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
        self._row_arrays.pop(user_id, None)
        self._index_arrays.pop(item_id, None)
        row = self.items.get(user_id)
        if row is not None and row.pop(item_id, None) is not None:
            if row:
                self._renorm(user_id)
            else:
                del self.items[user_id]
                self.norm2.pop(user_id, None)
                self._user_codes.forget(user_id)
        users = self.index.get(item_id)
        if users is not None:
            users.pop(user_id, None)
            if not users:
                del self.index[item_id]
                self._item_codes.forget(item_id)
