"""Incremental item-item cosine similarity from weighted co-occurrence.

A user's *affinity* for an item is the clamped sum of the weights of their events on it:
``a_ui = min(cap, max(0, Σ w))``. Items are vectors over users, so

    s_ij = dot_ij / sqrt(norm2_i · norm2_j),   dot_ij = Σ_u a_ui·a_uj,   norm2_i = Σ_u a_ui²

When one affinity changes by ``delta`` the sums change by ``delta·a_uj`` (for every other item
j in the user's history) and ``new² − old²``, so an event costs O(history) updates instead of a
recomputation. Because every update multiplies by the *current* value of the other factor, a
user's contribution to ``dot_ij`` is exactly ``a_ui·a_uj`` while both items are in the user's
history window (and stays frozen at that value once one leaves it).

>>> affinity_after(0.0, 3.0, cap=15.0)
3.0
>>> affinity_after(2.0, -10.0, cap=15.0)
0.0
>>> cosine(6.0, 9.0, 4.0)
1.0
>>> cosine(0.0, 9.0, 4.0)
0.0
"""

from __future__ import annotations

import math


def affinity_after(current: float, weight: float, *, cap: float) -> float:
    """The affinity after one event: weights add up, clamped to ``[0, cap]``.

    Clamping at zero keeps every dot product non-negative, so similarity stays in [0, 1];
    the cap stops one obsessive user from dominating an item's vector.
    """
    return min(cap, max(0.0, current + weight))


def cosine(dot: float, norm2_a: float, norm2_b: float, shrinkage: float = 0.0) -> float:
    """Cosine similarity from a dot product and two squared norms, shrunk, clamped to [0, 1].

    ``shrinkage`` (λ) is added to the denominator: ``dot / (‖a‖·‖b‖ + λ)``. Plain cosine
    calls two items seen together by a single user perfectly similar (1.0), so the rarest
    items crowd every neighbour list; λ discounts pairs with little evidence and leaves
    well-supported pairs nearly untouched. It keeps the measure symmetric and in [0, 1].
    Clamping absorbs floating-point drift of the incremental sums; an item with no weight yet
    is similar to nothing.

    >>> cosine(1.0, 1.0, 1.0), cosine(1.0, 1.0, 1.0, shrinkage=9.0)
    (1.0, 0.1)
    """
    if dot <= 0.0 or norm2_a <= 0.0 or norm2_b <= 0.0:
        return 0.0
    # Two square roots, not one of the product: the product can underflow to zero.
    return min(1.0, dot / (math.sqrt(norm2_a) * math.sqrt(norm2_b) + shrinkage))


def cooccurrence_counts(
    affinities: dict[str, dict[str, float]],
) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    """Batch recomputation of ``dot`` (per unordered pair) and ``norm2`` from affinities.

    ``affinities`` maps user -> item -> affinity. This is the definition the incremental
    updates must agree with; tests compare the two.

    >>> dots, norms = cooccurrence_counts({"u1": {"a": 2.0, "b": 1.0}, "u2": {"a": 1.0}})
    >>> dots[("a", "b")], norms["a"], norms["b"]
    (2.0, 5.0, 1.0)
    """
    dots: dict[tuple[str, str], float] = {}
    norms: dict[str, float] = {}
    for items in affinities.values():
        ordered = sorted(items.items())
        for idx, (item_i, a_i) in enumerate(ordered):
            norms[item_i] = norms.get(item_i, 0.0) + a_i * a_i
            for item_j, a_j in ordered[idx + 1 :]:
                pair = (item_i, item_j)
                dots[pair] = dots.get(pair, 0.0) + a_i * a_j
    return dots, norms
