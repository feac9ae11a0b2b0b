"""Item-CF: co-occurrence counts and each item's nearest neighbours, learnt from user windows.

Each user has a *window*: their ``cooccurrence_window`` most recent items, each with an affinity
(:func:`models.similarity.affinity_after`). Items are vectors over users, so
``dot_ij = Σ_u a_ui·a_uj`` and ``norm2_i = Σ_u a_ui²``, summed over the users' current windows.
An event changes them by the :class:`Deltas` that :func:`window_step` returns; an item leaving
a window, or an erased user, takes its contributions back out, so the counts are always the
sums over current windows: bounded, recency-weighted, erasable without a trace.

Deltas of many events add up, so a learner writes one increment per pair per batch, and
learners of different partitions merge by addition. :class:`Cooccurrence` keeps the counts and
the neighbour lists in memory (evaluation, unit tests, the reference the Redis learner is
checked against); ``streams/sources/itemcf.py`` keeps the same in Redis. Both call
:func:`similarities` for the cosine (the maths exists once).

>>> from models.events import Event, EventType
>>> from models.state import StateParams
>>> cf = Cooccurrence(StateParams(shrinkage=0.0))
>>> cf.learn([Event("e1", EventType.VIEW, "u1", 1.0, item_id="a"),
...           Event("e2", EventType.VIEW, "u1", 2.0, item_id="b")])
>>> cf.neighbours("a", 5)
(('b', 1.0),)
>>> cf.erase("u1"), cf.neighbours("a", 5)
(2, ())
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from models.events import Event
from models.shrinkage import ZERO, ShrinkageEstimator
from models.similarity import affinity_after, cosine
from models.sortedset import BoundedSet, RankedSet
from models.state import StateParams

#: A user's window: item -> (affinity, time of the user's latest event on it).
Window = dict[str, tuple[float, float]]


@dataclass(slots=True)
class Deltas:
    """Changes to the counts: per unordered pair (``a < b``) and per item's squared norm."""

    pairs: dict[tuple[str, str], float] = field(default_factory=dict)
    norms: dict[str, float] = field(default_factory=dict)

    def add_pair(self, a: str, b: str, amount: float) -> None:
        key = (a, b) if a < b else (b, a)
        self.pairs[key] = self.pairs.get(key, 0.0) + amount

    def add_norm(self, item: str, amount: float) -> None:
        self.norms[item] = self.norms.get(item, 0.0) + amount


def window_step(
    window: Window, item: str, weight: float, ts: float, params: StateParams, deltas: Deltas
) -> None:
    """Apply one event on ``item`` to the user's ``window`` and add what it changes to
    ``deltas``: ``delta·a_uj`` for each other item j, ``new² − old²`` for the item's norm.
    The oldest items (by time, then id: Redis's order) leave a window that outgrew its size.

    >>> w, d = {}, Deltas()
    >>> window_step(w, "a", 1.0, 1.0, StateParams(), d)
    >>> window_step(w, "b", 3.0, 2.0, StateParams(), d)
    >>> w, d.pairs, d.norms
    ({'a': (1.0, 1.0), 'b': (3.0, 2.0)}, {('a', 'b'): 3.0}, {'a': 1.0, 'b': 9.0})
    """
    previous = window.get(item)
    old = 0.0 if previous is None else previous[0]
    new = affinity_after(old, weight, cap=params.affinity_cap)
    delta = new - old
    if delta != 0.0:
        deltas.add_norm(item, new * new - old * old)
        pairs = deltas.pairs  # Deltas.add_pair inlined: this loop runs for every event
        for other, (affinity, _) in window.items():
            if other != item:
                key = (item, other) if item < other else (other, item)
                pairs[key] = pairs.get(key, 0.0) + delta * affinity
    if new > 0.0:
        window[item] = (new, ts if previous is None else max(previous[1], ts))
    else:
        window.pop(item, None)  # its pair contributions are zero already
    while len(window) > params.cooccurrence_window:
        oldest = min(window, key=lambda i: (window[i][1], i))
        withdraw(window, oldest, deltas)


def withdraw(window: Window, item: str, deltas: Deltas) -> None:
    """Take the user's contributions for ``item`` back out (it left the window)."""
    affinity = window.pop(item)[0]
    deltas.add_norm(item, -affinity * affinity)
    for other, (other_affinity, _) in window.items():
        deltas.add_pair(item, other, -affinity * other_affinity)


def item_events(events: Iterable[Event]) -> Iterable[Event]:
    """The events item-CF learns from: those on an item."""
    return (e for e in events if e.item_id is not None)


def similarities(
    dots: Mapping[tuple[str, str], float | None], norm2: Mapping[str, float], shrinkage: float
) -> dict[tuple[str, str], float]:
    """The cosine of every pair whose count changed (0: the pair is gone, or has no weight).

    >>> similarities({("a", "b"): 2.0, ("a", "c"): None}, {"a": 4.0, "b": 1.0}, 0.0)
    {('a', 'b'): 1.0, ('a', 'c'): 0.0}
    """
    return {
        (a, b): 0.0 if dot is None else cosine(dot, norm2.get(a, 0.0), norm2.get(b, 0.0), shrinkage)
        for (a, b), dot in dots.items()
    }


class Cooccurrence:
    """Item-CF in memory: the users' windows, the counts and the neighbour lists.

    A batch's deltas are applied after all its events (as the Redis learner does), each row
    of counts capped at ``cooccurrence_cap`` pairs and each neighbour list at ``neighbours``.
    Each item's row is changed on its own, as the Redis learner changes it in the item's slot:
    every row first takes its side of each pair's increment (a pair whose sum falls to zero
    leaves it), then a row that grew past its cap drops its weakest pairs, and only then do
    those pairs leave the other items' rows (:meth:`apply`). λ is ``params.shrinkage``, or
    learnt from the norms (:class:`models.shrinkage.ShrinkageEstimator`) when
    ``params.shrinkage_scale > 0``.
    """

    def __init__(self, params: StateParams) -> None:
        self.params = params
        self.windows: dict[str, Window] = {}
        self.dot: dict[str, BoundedSet] = {}
        self.norm2: dict[str, float] = {}
        self.sim: dict[str, RankedSet] = {}
        self.estimator = (
            ShrinkageEstimator(params.shrinkage_scale) if params.shrinkage_scale > 0 else None
        )

    @property
    def shrinkage(self) -> float:
        return self.params.shrinkage if self.estimator is None else self.estimator.value

    def learn(self, events: Iterable[Event]) -> None:
        """Learn a batch of new (deduplicated) events, in order."""
        deltas = Deltas()
        for e in item_events(events):
            assert e.item_id is not None
            window = self.windows.setdefault(e.user_id, {})
            window_step(window, e.item_id, self.params.weight(e.type), e.ts, self.params, deltas)
            if not window:
                del self.windows[e.user_id]
        self.apply(deltas)

    def erase(self, user_id: str) -> int:
        """Withdraw the user's window; returns how many items it held."""
        window = self.windows.pop(user_id, {})
        deltas = Deltas()
        for item in list(window):
            withdraw(window, item, deltas)
        self.apply(deltas)
        return len(deltas.norms)

    def apply(self, deltas: Deltas) -> None:
        for item, amount in deltas.norms.items():
            old = self.norm2.get(item, 0.0)
            new = old + amount
            if new > ZERO:
                self.norm2[item] = new
            else:
                self.norm2.pop(item, None)
            if self.estimator is not None:
                self.estimator.update(old, new)
        changed = [pair for pair, amount in deltas.pairs.items() if amount != 0.0]
        grown: set[str] = set()
        for a, b in changed:
            amount = deltas.pairs[a, b]
            for x, y in ((a, b), (b, a)):
                if self._row(x).incr(y, amount) <= ZERO:
                    self._drop(x, y)
                elif amount > 0.0:
                    grown.add(x)
        cap, dropped = self.params.cooccurrence_cap, []
        for x in sorted(grown):
            if len(self.dot[x].scores) > cap:
                for y in self.dot[x].trim_to(cap):
                    self._drop(x, y, evicted=True)
                    dropped.append((y, x))
        for y, x in dropped:  # the other side of each pair a full row dropped
            self._drop(y, x)
        dots = {pair: self._dot(*pair) for pair in changed}
        grown = set()
        sims = self.sim
        for (a, b), s in similarities(dots, self.norm2, self.shrinkage).items():
            for x, y in ((a, b), (b, a)):
                row = sims.get(x)
                if s > 0.0:
                    if row is None:
                        row = sims[x] = RankedSet()
                    row.set(y, s)
                    grown.add(x)
                elif row is not None:
                    row.discard(y)
        size = self.params.neighbours
        for item in grown:  # after the whole batch, as the Redis learner trims
            if len(sims[item].scores) > size:
                sims[item].trim_to(size)

    def _row(self, item: str) -> BoundedSet:
        row = self.dot.get(item)
        if row is None:
            row = self.dot[item] = BoundedSet()
        return row

    def _dot(self, a: str, b: str) -> float | None:
        row = self.dot.get(a)
        return None if row is None else row.scores.get(b)

    def _drop(self, x: str, y: str, *, evicted: bool = False) -> None:
        """Drop ``y`` from ``x``'s row of counts (unless the cap's trim took it already) and
        from its neighbour list."""
        if x in self.dot:
            if not evicted:
                self.dot[x].discard(y)
            if not self.dot[x].scores:
                del self.dot[x]
        if x in self.sim:
            self.sim[x].discard(y)

    def neighbours(self, item: str, k: int) -> tuple[tuple[str, float], ...]:
        """The item's ``k`` most similar items, best first (Redis ZREVRANGE order)."""
        row = self.sim.get(item)
        return () if row is None else tuple(row.top(k))

    def similarity(self, a: str, b: str) -> float:
        """s_ab from the current counts (symmetric by construction)."""
        dot = self._dot(a, b) or 0.0
        return cosine(dot, self.norm2.get(a, 0.0), self.norm2.get(b, 0.0), self.shrinkage)

    def snapshot(self) -> dict[str, object]:
        """The counts and lists as plain data; the Redis learner produces the same shape."""
        return {
            "dot": {k: dict(v.scores) for k, v in self.dot.items() if v.scores},
            "sim": {k: dict(v.scores) for k, v in self.sim.items() if v.scores},
            "norm2": dict(self.norm2),
            "windows": {u: dict(w) for u, w in self.windows.items()},
        }
