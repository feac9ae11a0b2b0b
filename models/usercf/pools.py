"""Users' places in the numpy arrays user-CF sums over: dense integer codes for ids, and the pool
of users most worth comparing (:func:`pool_order`), counted over arrays of codes
(:func:`pool_of`, which the worker's Redis source calls too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from heapq import nsmallest

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]


class Codes:
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
    indexes: Sequence[tuple[IntArray, FloatArray]],
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
    recency = -latest[edge_users]
    need = size - len(pool)
    if len(edge_users) > need:  # those at least as recent as the need-th, ties included
        kept = recency <= np.partition(recency, need - 1)[need - 1]
        edge_users, recency = edge_users[kept], recency[kept]
    ids = [names[u] for u in edge_users.tolist()]
    rest = sorted(zip(recency.tolist(), ids, strict=True))[:need]
    return pool + [(user, edge) for _, user in rest]
