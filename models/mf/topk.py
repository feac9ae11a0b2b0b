"""MF's best items for many users at once, over the whole item matrix.

A refreshed user's candidates are their best of every item row (50,000 in the soak's world). A
matrix-vector product per user reads the whole item matrix for each of them; one matrix
product reads it once for :data:`USERS_A_PRODUCT` users, and each user's scores are then
partitioned as they are (float32): a third of the time a user at that size.

>>> import numpy as np
>>> items = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
>>> users = [np.array([1.0, 0.2], dtype=np.float32), np.array([0.0, 1.0], dtype=np.float32)]
>>> top_k_rows(users, items, ["tea", "cup", "pot"], 2, banned=[[], [1]])
[[('tea', 1.0), ('pot', 0.6000000238418579)], [('pot', 0.5), ('tea', 0.0)]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from models.mf.rows import Vector

#: Users scored by one matrix product (a chunk's scores at 50,000 items: 6 MB of float32).
USERS_A_PRODUCT: Final = 32


def top_k_rows(
    users: Sequence[Vector],
    items: Vector,
    ids: Sequence[str],
    k: int,
    banned: Sequence[Sequence[int]],
) -> list[list[tuple[str, float]]]:
    """Per user vector, the ``k`` best rows of ``items`` as (id, score), best first, ties by id,
    never a row of the user's ``banned`` nor a score that is not finite (a damaged row)."""
    best: list[list[tuple[str, float]]] = []
    for start in range(0, len(users), USERS_A_PRODUCT):
        scores = np.stack(users[start : start + USERS_A_PRODUCT]) @ items.T
        for row, ban in zip(scores, banned[start : start + USERS_A_PRODUCT], strict=True):
            best.append(_best(row, k, ban, ids))
    return best


def _best(
    scores: Vector, k: int, banned: Sequence[int], ids: Sequence[str]
) -> list[tuple[str, float]]:
    scores[list(banned)] = -np.inf
    finite = np.isfinite(scores)
    if finite.sum() > k:
        # Everything tied with the k-th best is kept, so the id tie-break below is honest.
        kept = np.where(finite, scores, -np.inf)
        cut = len(kept) - k
        threshold = kept[np.argpartition(kept, cut)[cut:]].min()
        candidates = np.flatnonzero(kept >= threshold)
    else:
        candidates = np.flatnonzero(finite)
    # (−score, id) pairs sort in C: best first, ties by id.
    negated = (-scores[candidates].astype(np.float64)).tolist()
    ranked = sorted(zip(negated, [ids[r] for r in candidates.tolist()], strict=True))
    return [(item, -negative) for negative, item in ranked[:k]]
