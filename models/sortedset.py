"""Redis sorted sets in memory, with Redis's order and eviction.

The pure models keep what Redis keeps in sorted sets (histories, co-occurrence counts,
neighbour lists) in these, so a model and its Redis twin evict the same members.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort

from models.topk import top_k


class SortedSet:
    """A minimal Redis sorted set: same ordering (score, then member), same eviction."""

    __slots__ = ("scores",)

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.scores)

    def incr(self, member: str, amount: float) -> float:
        value = self.scores.get(member, 0.0) + amount
        self.scores[member] = value
        return value

    # Redis orders equal scores by the members' bytes; for UTF-8 that is the order of the
    # code points, which is how Python compares str. So (score, member) tuples, compared in C,
    # give Redis's order without a Python key function (these are the reference store's hot
    # spots: every event and every request sorts some set).
    def pop_min(self) -> tuple[str, float]:
        _, member = min(zip(self.scores.values(), self.scores, strict=True))
        return member, self.scores.pop(member)

    def ordered(self) -> list[str]:
        """Members lowest first (Redis ZRANGE order)."""
        return [member for _, member in sorted(zip(self.scores.values(), self.scores, strict=True))]

    def trim_to(self, size: int) -> list[str]:
        """Evict the lowest members until at most ``size`` remain; return them."""
        evicted = []
        while len(self.scores) > size:
            evicted.append(self.pop_min()[0])
        return evicted

    def top(self, count: int) -> list[tuple[str, float]]:
        """Highest first, ties by member descending (Redis ZREVRANGE order).

        >>> s = SortedSet(); s.scores.update({"b": 1.0, "a": 1.0, "c": 2.0})
        >>> s.top(2)
        [('c', 2.0), ('b', 1.0)]
        """
        return top_k(self.scores, count, ties_descending=True)


class BoundedSet(SortedSet):
    """A :class:`SortedSet` trimmed to a cap after each insertion (co-occurrence counts):
    once full, every new member evicts the lowest, and a scan for it on every event was the
    reference store's hottest loop. A lazy min-heap of (score, member) finds it in O(log n):
    every write pushes an entry, an entry whose score is no longer the member's is skipped
    when it surfaces, and the heap is rebuilt when stale entries outnumber live ones. Write
    scores only through :meth:`incr` and :meth:`set` (a direct write to ``scores`` would
    escape the heap), and remove members only through :meth:`discard` and :meth:`pop_min`.

    >>> s = BoundedSet()
    >>> for member, score in [("a", 3.0), ("b", 1.0), ("c", 2.0)]:
    ...     s.set(member, score)
    >>> s.trim_to(2), s.incr("c", 5.0), s.trim_to(1)
    (['b'], 7.0, ['a'])
    """

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        super().__init__()
        self._heap: list[tuple[float, str]] | None = None  # built at the first eviction

    def incr(self, member: str, amount: float) -> float:
        value = super().incr(member, amount)
        if self._heap is not None:
            self._push(value, member)
        return value

    def set(self, member: str, score: float) -> None:
        self.scores[member] = score
        if self._heap is not None:
            self._push(score, member)

    def discard(self, member: str) -> None:
        self.scores.pop(member, None)

    def _push(self, score: float, member: str) -> None:
        heap = self._heap
        assert heap is not None
        if len(heap) > 2 * len(self.scores) + 64:
            self._rebuild()
        else:
            heapq.heappush(heap, (score, member))

    def _rebuild(self) -> None:
        # Every current (score, member) once: the heap's invariant starts over.
        self._heap = [(score, member) for member, score in self.scores.items()]
        heapq.heapify(self._heap)

    def pop_min(self) -> tuple[str, float]:
        if self._heap is None:
            self._rebuild()
        heap, scores = self._heap, self.scores
        assert heap is not None
        while True:
            score, member = heapq.heappop(heap)
            if scores.get(member) == score:  # the member's current score: the true minimum
                del scores[member]
                return member, score


class RankedSet(SortedSet):
    """A small capped :class:`SortedSet` kept in order as it changes (similarity
    neighbours): every request reads the top of the neighbour sets of the user's recent items,
    and they change with nearly every event, so sorting them on each read was the replay's
    hottest selection. A list of (score, member), lowest first, mirrors ``scores``; a write
    moves one entry by bisection, an eviction takes the list's head and :meth:`top` reads its
    tail. For large sets that are written far more than read (co-occurrence counts),
    :class:`BoundedSet`'s heap is cheaper. Write scores only through :meth:`incr` and
    :meth:`set` and remove members only through :meth:`discard`, :meth:`pop_min` and
    :meth:`trim_to` (a direct write to ``scores`` would escape the order).

    >>> s = RankedSet()
    >>> for member, score in [("a", 3.0), ("b", 1.0), ("c", 2.0)]:
    ...     s.set(member, score)
    >>> s.trim_to(2), s.incr("c", 5.0), s.top(5), s.trim_to(1)
    (['b'], 7.0, [('c', 7.0), ('a', 3.0)], ['a'])
    """

    __slots__ = ("_order",)

    def __init__(self) -> None:
        super().__init__()
        # (score, member) ascending: Redis's order, compared in C. Scores are finite here
        # (counts and cosines), which bisection needs.
        self._order: list[tuple[float, str]] = []

    def incr(self, member: str, amount: float) -> float:
        value = self.scores.get(member, 0.0) + amount
        self.set(member, value)
        return value

    def set(self, member: str, score: float) -> None:
        order, old = self._order, self.scores.get(member)
        if old is not None:
            del order[bisect_left(order, (old, member))]
        insort(order, (score, member))
        self.scores[member] = score

    def discard(self, member: str) -> None:
        old = self.scores.pop(member, None)
        if old is not None:
            del self._order[bisect_left(self._order, (old, member))]

    def pop_min(self) -> tuple[str, float]:
        score, member = self._order.pop(0)
        del self.scores[member]
        return member, score

    def trim_to(self, size: int) -> list[str]:
        excess = len(self._order) - size
        if excess <= 0:
            return []
        evicted = [member for _, member in self._order[:excess]]
        del self._order[:excess]
        for member in evicted:
            del self.scores[member]
        return evicted

    def ordered(self) -> list[str]:
        return [member for _, member in self._order]

    def top(self, count: int) -> list[tuple[str, float]]:
        if count <= 0:
            return []
        return [(member, score) for score, member in reversed(self._order[-count:])]
