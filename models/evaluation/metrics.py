"""Ranking metrics: pure functions of ranks, scores and exposure counts.

Per evaluated request with held-out item ``i`` at 1-based rank ``r`` in the top-k list
(``r = None`` when ``i`` is not in it):

* HR@k = 1 if ``r`` is not None; NDCG@k = ``1 / log2(r + 1)`` (one relevant item, so the
  ideal DCG is 1); reciprocal rank = ``1 / r`` (0 beyond k, so the reported MRR is MRR@k).
  Each is averaged over requests, and split by the ``source`` of the hit item: the per-source
  figures add up to the overall one.
* AUC, the model's scores read as a classifier of "will the user pick this item next". For
  a request of user ``u`` at time ``t`` with held-out item ``i``, draw ``N`` distinct items
  ``j_1..j_N`` uniformly from the catalogue less ``i`` and the items ``u`` touched before
  ``t`` (the same draws for every model); ``s = candidate_scores(u, [i, j_1..j_N], t)``, where
  an item the model cannot rank at all scores 0. The request's AUC is
  ``(1/N)·Σ_n [s_i > s_jn] + ½·[s_i = s_jn]`` (:func:`request_auc`); ``auc`` is its mean over
  requests (per-user AUC as in BPR, so scores need only be comparable within a request).
  ``auc_warm`` is the same mean over requests whose ``i`` had an earlier event (no model that
  learns from events can score a never-seen item above 0); ``auc_pooled`` compares every
  positive with every negative across requests (:func:`pooled_auc`, the area under the ROC
  curve of :func:`roc_points`), which suits a ranker with calibrated scores.
* Coverage, exposure Gini and long-tail share describe the lists shown: see
  :func:`coverage`, :func:`gini` and :func:`long_tail_share`.

>>> ranks = [1, None, 2, 5]
>>> hit_rate(ranks), round(ndcg(ranks), 4), round(mrr(ranks), 4)
(0.75, 0.5044, 0.425)
>>> request_auc(0.7, [0.1, 0.7, 0.9, 0.0])
0.625
>>> gini([5, 5, 5]), round(gini([0, 0, 9]), 4)
(0.0, 0.6667)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet

import numpy as np


def rank_of(item_id: str, ranked: Sequence[str]) -> int | None:
    """1-based position of ``item_id`` in ``ranked``, or None if it is absent.

    >>> rank_of("b", ["a", "b"]), rank_of("z", ["a", "b"])
    (2, None)
    """
    for position, candidate in enumerate(ranked, start=1):
        if candidate == item_id:
            return position
    return None


def ndcg_gain(rank: int | None) -> float:
    """NDCG of one list with one relevant item at ``rank`` (the ideal DCG is 1).

    >>> ndcg_gain(1), round(ndcg_gain(3), 4), ndcg_gain(None)
    (1.0, 0.5, 0.0)
    """
    return 0.0 if rank is None else 1.0 / math.log2(rank + 1)


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0


def hit_rate(ranks: Iterable[int | None]) -> float:
    """Share of requests whose held-out item was in the list (HR@k for lists of k)."""
    return _mean(0.0 if r is None else 1.0 for r in ranks)


def ndcg(ranks: Iterable[int | None]) -> float:
    """Mean NDCG over requests (NDCG@k for lists of k)."""
    return _mean(ndcg_gain(r) for r in ranks)


def mrr(ranks: Iterable[int | None]) -> float:
    """Mean reciprocal rank; an item missing from the list counts 0 (so MRR@k for lists of k)."""
    return _mean(0.0 if r is None else 1.0 / r for r in ranks)


def request_auc(positive: float, negatives: Sequence[float]) -> float:
    """AUC of one request: how often the held-out item outscores a sampled negative.

    ``P(s_pos > s_neg) + ½·P(s_pos = s_neg)`` over the negatives: the Mann-Whitney statistic
    of one positive, ties counting half (so a model that scores everything 0 gets 0.5).

    >>> request_auc(0.5, [0.1, 0.2]), request_auc(0.0, [0.0, 0.0]), request_auc(0.0, [1.0])
    (1.0, 0.5, 0.0)
    """
    if not negatives:
        raise ValueError("AUC needs at least one negative")
    below = sum(1 for s in negatives if s < positive)
    ties = sum(1 for s in negatives if s == positive)
    return (below + 0.5 * ties) / len(negatives)


def pooled_auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """AUC of all scores pooled across requests (Mann-Whitney with mid-ranks for ties).

    Only meaningful when scores are comparable across users (a calibrated ranker); it is what
    the ROC curve of :func:`roc_points` shows.

    >>> pooled_auc([0.9, 0.4], [0.1, 0.4, 0.5])
    0.75
    """
    if not positives or not negatives:
        raise ValueError("AUC needs positives and negatives")
    pos = np.asarray(positives, dtype=np.float64)
    neg = np.asarray(negatives, dtype=np.float64)
    neg_sorted = np.sort(neg)
    below = np.searchsorted(neg_sorted, pos, side="left")
    not_above = np.searchsorted(neg_sorted, pos, side="right")
    wins = below.sum() + 0.5 * (not_above - below).sum()
    return float(wins / (len(pos) * len(neg)))


def roc_points(
    positives: Sequence[float], negatives: Sequence[float]
) -> tuple[list[float], list[float]]:
    """The ROC curve (false positive rates, true positive rates) of pooled scores.

    One point per distinct score threshold, from (0, 0) to (1, 1); tied scores move both
    rates at once (a diagonal segment), so the area under the points is :func:`pooled_auc`.

    >>> roc_points([0.9, 0.4], [0.1, 0.4, 0.5])
    ([0.0, 0.0, 0.3333333333333333, 0.6666666666666666, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    scores = np.concatenate(
        [np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)]
    )
    labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    # The last index of each run of equal scores: thresholds between distinct values.
    last = np.flatnonzero(np.append(np.diff(scores) != 0, True))
    tps = np.cumsum(labels)[last]
    fps = (last + 1) - tps
    tpr = np.concatenate([[0.0], tps / max(len(positives), 1)])
    fpr = np.concatenate([[0.0], fps / max(len(negatives), 1)])
    return [float(x) for x in fpr], [float(y) for y in tpr]


def coverage(recommended: Collection[str], catalog_size: int) -> float:
    """Share of the catalogue that appeared in at least one recommendation list.

    >>> coverage({"a", "b"}, 8)
    0.25
    """
    if catalog_size <= 0:
        return 0.0
    return min(1.0, len(recommended) / catalog_size)


def gini(exposures: Iterable[int], catalog_size: int | None = None) -> float:
    """Gini coefficient of how often each catalogue item was recommended.

    0 when every item is shown equally often, ``(n - 1) / n`` when one item of ``n`` takes
    every slot. Items never shown count as zeros: pass ``catalog_size`` to add the ones that
    ``exposures`` leaves out. Computed as ``Σ_i (2i − n − 1)·x_i / (n·Σx)`` over the counts
    sorted ascending (``i`` 1-based), the standard sample form.

    >>> gini([1, 1, 1, 1]), gini([0, 0, 0, 4]), gini([4], catalog_size=4), gini([])
    (0.0, 0.75, 0.75, 0.0)
    """
    counts = sorted(exposures)
    n = len(counts)
    if catalog_size is not None and catalog_size > n:
        counts = [0] * (catalog_size - n) + counts
        n = catalog_size
    total = sum(counts)
    if n == 0 or total == 0:
        return 0.0
    weighted = sum((2 * i - n - 1) * x for i, x in enumerate(counts, start=1))
    return max(0.0, weighted / (n * total))


def short_head(popularity: Mapping[str, int], head_share: float = 0.2) -> frozenset[str]:
    """The most interacted-with ``head_share`` of the items (ties broken by item id).

    >>> sorted(short_head({"a": 9, "b": 5, "c": 1, "d": 1, "e": 1}, head_share=0.4))
    ['a', 'b']
    """
    ranked = sorted(popularity, key=lambda item: (-popularity[item], item))
    return frozenset(ranked[: math.ceil(len(ranked) * head_share)])


def long_tail_share(exposure: Mapping[str, int], head: AbstractSet[str]) -> float:
    """Share of recommendation slots given to items outside the short head.

    >>> long_tail_share({"a": 3, "x": 1}, frozenset({"a"}))
    0.25
    """
    total = sum(exposure.values())
    if total == 0:
        return 0.0
    return sum(n for item, n in exposure.items() if item not in head) / total
