"""User-CF's reads over its entries (:mod:`.entries`): neighbours by cosine, and the items
they have that the user has not.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from heapq import nsmallest
from itertools import chain

import numpy as np

from models.events import EventType
from models.usercf.entries import UserEntries
from models.usercf.pools import FloatArray, IntArray, pool_of


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


class UserCF(UserEntries):
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
        super().__init__(
            weights=weights,
            affinity_cap=affinity_cap,
            items_per_user=items_per_user,
            users_per_item=users_per_item,
            entry_ttl_s=entry_ttl_s,
        )
        self.max_neighbours = neighbours
        self.min_overlap = min_overlap
        self.contributors_per_item = contributors_per_item
        self.neighbour_pool = neighbour_pool

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

    def _dots(self, user_id: str, others: list[str]) -> tuple[FloatArray, IntArray]:
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

    def candidates(
        self,
        user_id: str,
        k: int,
        exclude: Collection[str] = frozenset(),
        *,
        among: Collection[str] | None = None,
    ) -> list[UserCFCandidate]:
        """Items the user's neighbours have and the user has not (nor in ``exclude``),
        scored ``Σ_v sim(u, v)·a_vi``; ties by item id; each with the neighbours who
        contributed most (for debugging and evaluation: what reaches a user never names them,
        and takes :meth:`top_k`'s scores alone)."""
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
