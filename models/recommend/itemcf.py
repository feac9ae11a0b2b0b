"""Item-CF's pool for one user: each candidate scores ``Σ_j a_uj · s_ij`` over the user's
recent items ``j`` whose neighbour lists hold it, with its terms ``(a_uj · s_ij, j)`` as
reasons.

A request walks up to recent × neighbours (20 × 50) pairs. As dict walks in Python that was
most of a list's cost at that size, so there the sums are numpy's: each neighbour list
carries its candidates' codes and similarities as arrays (:class:`NeighbourList`, built once
per list read, not per request), the pairs are concatenated, and one ``bincount`` adds each
candidate's terms in the order of the recent items, as ``total += a · s`` in a loop would:
the totals are exactly the loop's. A young user's few pairs are cheaper in the loop.

>>> from models.state import UserView
>>> view = UserView("u", recent=(("phone", 2.0), ("tv", 1.0)), neighbours={
...     "phone": (("case", 0.5),), "tv": (("case", 0.25), ("remote", 0.5))},
...     seen=frozenset(), bought=frozenset(), hidden=frozenset())
>>> item_cf_pool(view, 50)
{'case': (1.25, [(1.0, 'phone'), (0.25, 'tv')]), 'remote': (0.5, [(0.5, 'tv')])}
>>> list(item_cf_pool(view, 1))
['case']
>>> sources = [(j, a, view.neighbours[j]) for j, a in view.recent]
>>> summed_pool(sources, 50) == looped_pool(sources, 50) == item_cf_pool(view, 50)
True
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from models.codes import Codes, FloatArray, IntArray
from models.recommend.candidates import Pool
from models.state import UserView
from models.topk import top_k


class NeighbourList(tuple[tuple[str, float], ...]):
    """An item's neighbours, ``(item, similarity)`` best first, as every reader sees them, and
    the same as arrays: the items' codes in ``table`` and the similarities.

    >>> table = Codes()
    >>> row = NeighbourList((("case", 0.5), ("cable", 0.25)), table)
    >>> row == (("case", 0.5), ("cable", 0.25)), row.codes.tolist(), table.names
    (True, [0, 1], ['case', 'cable'])
    """

    table: Codes
    codes: IntArray
    similarities: FloatArray

    def __new__(cls, pairs: Iterable[tuple[str, float]], table: Codes) -> NeighbourList:
        row = super().__new__(cls, pairs)
        add = table.add
        row.table = table
        row.codes = np.fromiter((add(item) for item, _ in row), dtype=np.intp, count=len(row))
        row.similarities = np.fromiter((s for _, s in row), dtype=np.float64, count=len(row))
        return row


#: (recent item, neighbour) pairs from which numpy's sums are cheaper than a loop's: each
#: numpy call costs a few microseconds however small its arrays, a loop about 0.3 µs a pair.
#: The two cross between 200 and 500 pairs (scripts/itemcf-cost.py; docs/benchmarks.md).
SUMMED_FROM_PAIRS = 256

Sources = list[tuple[str, float, tuple[tuple[str, float], ...]]]


def item_cf_pool(view: UserView, size: int) -> Pool:
    """The user's ``size`` best item-CF candidates (all of them, in the order first met, when
    there are no more), best first; equal totals by item id descending (Redis's order).

    Few pairs are added in a loop (:func:`looped_pool`), many by numpy (:func:`summed_pool`);
    both give the same pool to the last bit.
    """
    sources: Sources = []
    pairs = 0
    for item, affinity in view.recent:
        row = view.neighbours.get(item)
        if row:
            sources.append((item, affinity, row))
            pairs += len(row)
    if not sources:
        return {}
    return (looped_pool if pairs < SUMMED_FROM_PAIRS else summed_pool)(sources, size)


def looped_pool(sources: Sources, size: int) -> Pool:
    """:func:`item_cf_pool` over ``(recent item, affinity, neighbours)`` by dict walks."""
    totals: dict[str, float] = {}
    get = totals.get
    for _, affinity, row in sources:
        for candidate, similarity in row:
            totals[candidate] = get(candidate, 0.0) + affinity * similarity
    kept = top_k(totals, size, ties_descending=True) if len(totals) > size else list(totals.items())
    reasons: dict[str, list[tuple[float, str]]] = {item: [] for item, _ in kept}
    found = reasons.get
    for source, affinity, row in sources:
        for candidate, similarity in row:
            terms = found(candidate)
            if terms is not None:
                terms.append((affinity * similarity, source))
    return {item: (total, reasons[item]) for item, total in kept}


def summed_pool(sources: Sources, size: int) -> Pool:
    """:func:`item_cf_pool` over ``(recent item, affinity, neighbours)`` by numpy: rows
    that are plain tuples (or arrays in another table) are coded here, per request; the
    worker's cache hands over :class:`NeighbourList` rows."""
    if not sources:
        return {}
    table = next((r.table for _, _, r in sources if isinstance(r, NeighbourList)), None)
    if table is None:
        table = Codes()
    rows = [
        row if isinstance(row, NeighbourList) and row.table is table else NeighbourList(row, table)
        for _, _, row in sources
    ]
    lengths = [len(row) for row in rows]
    codes = np.concatenate([row.codes for row in rows])
    terms = np.concatenate([row.similarities for row in rows]) * np.repeat(
        np.array([affinity for _, affinity, _ in sources]), lengths
    )
    found, group = np.unique(codes, return_inverse=True)
    totals = np.bincount(group, weights=terms, minlength=len(found))
    names = table.names
    if len(found) > size:
        # Everything tied with the size-th best goes to top_k, whose tie-break is the rule.
        edge = np.partition(totals, len(found) - size)[len(found) - size]
        near = np.flatnonzero(totals >= edge)
        groups = dict(zip([names[c] for c in found[near].tolist()], near.tolist(), strict=True))
        kept = top_k(
            dict(zip(groups, totals[near].tolist(), strict=True)), size, ties_descending=True
        )
        wanted = np.zeros(len(found), dtype=np.bool_)
        wanted[[groups[item] for item, _ in kept]] = True
        at = np.flatnonzero(wanted[group])
    else:  # every candidate, in the order first met
        first = np.unique(group, return_index=True)[1]
        order = np.argsort(first, kind="stable")
        kept = list(
            zip([names[c] for c in found[order].tolist()], totals[order].tolist(), strict=True)
        )
        at = np.arange(len(codes))
    reasons: dict[str, list[tuple[float, str]]] = {item: [] for item, _ in kept}
    source_of = np.repeat(np.arange(len(sources)), lengths)[at].tolist()
    for code, term, source in zip(codes[at].tolist(), terms[at].tolist(), source_of, strict=True):
        reasons[names[code]].append((term, sources[source][0]))
    return {item: (total, reasons[item]) for item, total in kept}
