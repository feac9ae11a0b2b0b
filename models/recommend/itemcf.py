"""Item-CF's pool for one user: each candidate scores ``Σ_j a_uj · s_ij`` over the user's
recent items ``j`` whose neighbour lists hold it, with its terms ``(a_uj · s_ij, j)`` as
reasons.

A request walks up to recent × neighbours (20 × 50) pairs. As dict walks in Python that was
most of a list's cost, so the sums are numpy's: each neighbour list carries its candidates'
codes and similarities as arrays (:class:`NeighbourList`, built once per list read, not per
request), the pairs are concatenated, and one ``bincount`` adds each candidate's terms. It
adds them in the order of the recent items, as ``total += a · s`` in a loop would, so the
totals are exactly the loop's.

>>> from models.state import UserView
>>> view = UserView("u", recent=(("phone", 2.0), ("tv", 1.0)), neighbours={
...     "phone": (("case", 0.5),), "tv": (("case", 0.25), ("remote", 0.5))},
...     seen=frozenset(), bought=frozenset(), hidden=frozenset())
>>> item_cf_pool(view, 50)
{'case': (1.25, [(1.0, 'phone'), (0.25, 'tv')]), 'remote': (0.5, [(0.5, 'tv')])}
>>> list(item_cf_pool(view, 1))
['case']
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


def item_cf_pool(view: UserView, size: int) -> Pool:
    """The user's ``size`` best item-CF candidates (all of them, in the order first met, when
    there are no more), best first; equal totals by item id descending (Redis's order).

    Neighbour lists that are plain tuples (or arrays in another table) are coded here, per
    request; the worker's cache hands over :class:`NeighbourList` rows.
    """
    sources: list[tuple[str, float, tuple[tuple[str, float], ...]]] = []
    table: Codes | None = None
    for item, affinity in view.recent:
        row = view.neighbours.get(item)
        if row:
            sources.append((item, affinity, row))
            if table is None and isinstance(row, NeighbourList):
                table = row.table
    if not sources:
        return {}
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
