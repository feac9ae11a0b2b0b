"""Offline quality of the recommender: ranking metrics and a test-then-train replay.

The replay (:func:`replay`) feeds a time-ordered event stream, in-process, through models that
follow the small :class:`Recommender` protocol. Before *learning* an event that is a fresh
interaction (an item event, not ``hide``, on an item its user has never touched, by a user with
at least one earlier event) it asks each model for that user's top ``k``, excluding every item
the user already touched, and scores the list against the item the user actually chose next.
Every model then learns the event. This is the "prequential" (test-then-train) protocol of
stream learning: each event is a test case exactly once, the model never sees its own answer,
and there is no separate training set to leak from.

Two models implement the protocol today: :class:`ItemCFRecommender` (the worker's own code:
:class:`~models.state.MemoryState`, :class:`~models.cooccurrence.Cooccurrence` and
:func:`~models.recommend.recommend`) and
:class:`PopularityRecommender`, a time-decayed popularity baseline. Further sources (matrix
factorisation, content, social, trending) or a learned ranker plug in by implementing
``learn``, ``recommend`` and ``candidate_scores``.

Metrics, per evaluated request with held-out item ``i`` at 1-based rank ``r`` in the top-k
list (``r = None`` when ``i`` is not in it):

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
import random
import statistics
import zlib
from array import array
from bisect import bisect_left, insort
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Final, NamedTuple, Protocol

import numpy as np

from models.cooccurrence import Cooccurrence
from models.events import DEFAULT_WEIGHTS, ITEM_TYPES, Event, EventType
from models.popularity import (
    decayed_score,
    forward_weight,
    needs_rebase,
    rebase_factor,
)
from models.recommend import (
    RecommendParams,
    blend_pools,
    candidate_pools,
    excluded_items,
)
from models.recommend import recommend as rank_for_user
from models.state import MemoryState, Outcome, PopularView, StateParams, UserView

#: Item events that can be a test case. A ``hide`` is a negative answer, never a hit to find.
TARGET_TYPES: Final = ITEM_TYPES - {EventType.HIDE}

# ------------------------------------------------------------------------------------------------
# Metrics (pure functions of ranks, scores and exposure counts)
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# The protocol every evaluated model implements
# ------------------------------------------------------------------------------------------------


class Scored(NamedTuple):
    """One recommended item: its id, the model's score and the source that proposed it."""

    item_id: str
    score: float
    source: str


class Recommender(Protocol):
    """What the replay needs from a model (all of it pure and in-process).

    ``recommend`` returns at most ``k`` items, best first, none of them in ``exclude`` (the
    items the user already touched). ``candidate_scores`` returns one number per item whose
    *order* is the order in which the model would rank those items for the user now, and 0 for
    an item it could not rank at all; only comparisons within one call matter (see
    :func:`request_auc`), so a learned ranker can return probabilities and a heuristic any
    monotone score.
    """

    @property
    def name(self) -> str: ...

    def learn(self, event: Event) -> None: ...

    def recommend(
        self, user_id: str, k: int, exclude: AbstractSet[str], now: float
    ) -> list[Scored]: ...

    def candidate_scores(
        self, user_id: str, item_ids: Sequence[str], now: float
    ) -> list[float]: ...


class _TopCache:
    """The top ``size`` members of a score map, in Redis ZREVRANGE order, kept incrementally.

    Valid while scores only grow (popularity under forward decay does); :meth:`update` reports
    a shrinking score so the owner can rebuild from the full map instead.

    >>> top = _TopCache(2)
    >>> for member, score in [("a", 1.0), ("b", 3.0), ("c", 2.0), ("a", 5.0)]:
    ...     _ = top.update(member, score)
    >>> top.top()
    [('a', 5.0), ('b', 3.0)]
    """

    __slots__ = ("asc", "keys", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.asc: list[tuple[float, bytes, str]] = []  # lowest first: (score, bytes, member)
        self.keys: dict[str, tuple[float, bytes, str]] = {}

    def reset(self, pairs: Iterable[tuple[str, float]]) -> None:
        self.asc = sorted((score, member.encode(), member) for member, score in pairs)
        self.asc = self.asc[-self.size :] if self.size else []
        self.keys = {key[2]: key for key in self.asc}

    def update(self, member: str, score: float) -> bool:
        """Record ``member``'s new score; False if it went down (the cache may now be wrong)."""
        old = self.keys.get(member)
        if old is not None:
            if score < old[0]:
                return False
            del self.asc[bisect_left(self.asc, old)]
        key = (score, member.encode(), member)
        if old is None and len(self.asc) >= self.size:
            if not self.asc or key <= self.asc[0]:
                return True
            del self.keys[self.asc.pop(0)[2]]
        insort(self.asc, key)
        self.keys[member] = key
        return True

    def __len__(self) -> int:
        return len(self.asc)

    def top(self) -> list[tuple[str, float]]:
        """Highest first, ties by member bytes descending (as ``SortedSet.top``)."""
        return [(member, score) for score, _, member in reversed(self.asc)]

    def descending(self) -> Iterator[tuple[str, float]]:
        """:meth:`top` one at a time, for callers that usually stop early."""
        return ((member, score) for score, _, member in reversed(self.asc))


# ------------------------------------------------------------------------------------------------
# The two models we have
# ------------------------------------------------------------------------------------------------


class ItemCFRecommender:
    """The worker's recommender, in-process: :class:`MemoryState` and item-CF's
    :class:`Cooccurrence` (learnt one event at a time) + :func:`recommend`.

    Reads the user exactly as the worker does (``recent_items`` and ``neighbours`` per recent
    item, the ``popular_items`` most popular items for fill-in; the defaults are
    ``streams.store.ReadParams``). Two evaluation-only details:

    * the state's ``seen`` set is the user's history *window* (``history_size`` items), so
      ``exclude_seen`` alone would let an item touched long ago come back; the items in
      ``exclude`` are added to ``seen`` so that "excluding items the user already touched"
      holds whatever the window;
    * the popular list is kept incrementally from the state's popularity scores (identical to
      ``MemoryState.popular``, which sorts every item on each call: too slow to run per event).

    >>> model = ItemCFRecommender(StateParams())
    >>> for n, item in enumerate(["phone", "case", "phone"]):
    ...     model.learn(Event(f"e{n}", EventType.PURCHASE, f"u{n // 2}", 1e9 + n, item_id=item))
    >>> [(s.item_id, s.source) for s in model.recommend("u1", 2, {"phone"}, now=1e9 + 3)]
    [('case', 'item_cf')]
    """

    name = "itemcf"

    def __init__(
        self,
        state_params: StateParams,
        recommend_params: RecommendParams | None = None,
        *,
        recent_items: int = 20,
        neighbours: int = 20,
        popular_items: int = 100,
        followee_items: int = 0,
    ) -> None:
        params = recommend_params or RecommendParams(half_life_s=state_params.half_life_s)
        if not params.exclude_seen:
            raise ValueError("evaluation excludes items the user touched: set exclude_seen")
        self.state = MemoryState(state_params)
        self.cooccurrence = Cooccurrence(state_params)
        self.params = params
        self.recent_items = recent_items
        self.neighbours = neighbours
        self.popular_items = popular_items
        self.followee_items = followee_items
        self._popular = _TopCache(popular_items)
        self._landmark: float | None = None
        self._params_for_k: dict[int, RecommendParams] = {}
        # The last user read, reused by candidate_scores for the same request.
        self._cached: tuple[str, UserView] | None = None

    def learn(self, event: Event) -> None:
        self._cached = None
        if self.state.apply(event) is not Outcome.APPLIED or event.item_id is None:
            return
        self.cooccurrence.learn((event,))
        state = self.state
        if state.params.weight(event.type) <= 0.0:
            return  # popularity only counts positive weights
        score = state.popularity.scores.get(event.item_id)
        if (
            state.landmark != self._landmark  # a rebase rescaled every score
            or score is None  # trimmed away at once: the cache may hold stale members
            or state.params.popularity_cap <= self.popular_items
            or not self._popular.update(event.item_id, score)
        ):
            self._landmark = state.landmark
            self._popular.reset(state.popular(self.popular_items).items)

    def popular_view(self) -> PopularView:
        """What ``MemoryState.popular(popular_items)`` would return, without sorting it all."""
        return PopularView(tuple(self._popular.top()), self.state.landmark or 0.0)

    def view_for(self, user_id: str, exclude: AbstractSet[str]) -> UserView:
        """The user as the worker reads them, with ``exclude`` counted as seen."""
        view = self.state.user_view(
            user_id,
            recent_items=self.recent_items,
            neighbours=self.neighbours,
            followee_items=self.followee_items,
            similar=self.cooccurrence.neighbours,
        )
        if not exclude <= view.seen:
            view = replace(view, seen=view.seen | exclude)
        return view

    def recommend(
        self, user_id: str, k: int, exclude: AbstractSet[str], now: float
    ) -> list[Scored]:
        params = self._params_for_k.get(k)
        if params is None:
            params = self._params_for_k[k] = replace(self.params, top_n=k)
        view = self.view_for(user_id, exclude)
        self._cached = (user_id, view)
        recs = rank_for_user(view, self.popular_view(), params, now=now)
        return [Scored(r.item_id, r.score, r.source.value) for r in recs.items]

    def candidate_scores(self, user_id: str, item_ids: Sequence[str], now: float) -> list[float]:
        """The order :func:`recommend` would give with no limit on ``k`` or on popular items.

        Personal candidates rank first (by the blend of item-CF and social proof), then every
        item in the state's popularity ranking (by decayed popularity), then everything else
        (0). The two tiers are squashed
        into (2, 3) and (1, 2) by ``x / (1 + x)`` so one number carries the order.
        """
        cached = self._cached
        view = cached[1] if cached is not None and cached[0] == user_id else None
        if view is None:
            view = self.view_for(user_id, frozenset())
        # The blend recommend() ranks by: every source's normalised score, weighted.
        pools = candidate_pools(view, self.params, now, {})
        cf = blend_pools(pools, dict(self.params.source_weights)).totals
        excluded = excluded_items(view, self.params)
        popularity = self.state.popularity.scores
        landmark = self.state.landmark or 0.0
        half_life = self.params.half_life_s
        scores = []
        for item in item_ids:
            if item in excluded:
                scores.append(0.0)
            elif item in cf:
                scores.append(2.0 + cf[item] / (1.0 + cf[item]))
            elif item in popularity:
                p = decayed_score(
                    popularity[item], landmark=landmark, at=now, half_life_s=half_life
                )
                scores.append(1.0 + p / (1.0 + p))
            else:
                scores.append(0.0)
        return scores


class PopularityRecommender:
    """Baseline: every user gets the items with the most time-decayed weighted events.

    The same event weights and half-life as the state's popularity, with no cap on items.

    >>> model = PopularityRecommender(half_life_s=3600.0)
    >>> for n, item in enumerate(["a", "b", "b"]):
    ...     model.learn(Event(f"e{n}", EventType.VIEW, "u1", 1e9 + n, item_id=item))
    >>> [s.item_id for s in model.recommend("u2", 5, set(), now=1e9 + 3)]
    ['b', 'a']
    >>> model.candidate_scores("u2", ["b", "a", "zzz"], now=1e9 + 3)[2]
    0.0
    """

    def __init__(
        self,
        weights: Mapping[EventType, float] | None = None,
        *,
        half_life_s: float = 6 * 3600.0,
        cache_size: int = 200,
        name: str = "popularity",
    ) -> None:
        self.name = name
        self.weights = dict(weights or DEFAULT_WEIGHTS)
        self.half_life_s = half_life_s
        self.scores: dict[str, float] = {}
        self.landmark: float | None = None
        self._top = _TopCache(cache_size)

    def learn(self, event: Event) -> None:
        if event.item_id is None or event.type not in ITEM_TYPES:
            return
        weight = self.weights.get(event.type, DEFAULT_WEIGHTS[event.type])
        if weight <= 0.0:
            return
        if self.landmark is None:
            self.landmark = event.ts
        elif needs_rebase(ts=event.ts, landmark=self.landmark, half_life_s=self.half_life_s):
            factor = rebase_factor(
                old_landmark=self.landmark, new_landmark=event.ts, half_life_s=self.half_life_s
            )
            self.scores = {item: s * factor for item, s in self.scores.items()}
            self.landmark = event.ts
            self._top.reset(self.scores.items())
        amount = forward_weight(
            weight, ts=event.ts, landmark=self.landmark, half_life_s=self.half_life_s
        )
        score = self.scores[event.item_id] = self.scores.get(event.item_id, 0.0) + amount
        self._top.update(event.item_id, score)

    def _decayed(self, stored: float, now: float) -> float:
        return decayed_score(
            stored, landmark=self.landmark or 0.0, at=now, half_life_s=self.half_life_s
        )

    def recommend(
        self, user_id: str, k: int, exclude: AbstractSet[str], now: float
    ) -> list[Scored]:
        chosen = self._pick(self._top.descending(), k, exclude, now)
        if len(chosen) < k and len(self._top) < len(self.scores):
            # The user touched most of the cached top: rank every item (rare, and correct).
            ranked = sorted(
                self.scores.items(), key=lambda kv: (kv[1], kv[0].encode()), reverse=True
            )
            chosen = self._pick(iter(ranked), k, exclude, now)
        return chosen

    def _pick(
        self, ranked: Iterator[tuple[str, float]], k: int, exclude: AbstractSet[str], now: float
    ) -> list[Scored]:
        chosen: list[Scored] = []
        for item, stored in ranked:
            if len(chosen) >= k:
                break
            if item not in exclude:
                chosen.append(Scored(item, self._decayed(stored, now), "popular"))
        return chosen

    def candidate_scores(self, user_id: str, item_ids: Sequence[str], now: float) -> list[float]:
        return [self._decayed(self.scores.get(item, 0.0), now) for item in item_ids]


# ------------------------------------------------------------------------------------------------
# The replay
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvalParams:
    """How the replay evaluates. ``negatives`` are sampled per request for the AUC."""

    k: int = 10
    negatives: int = 20
    seed: int = 0
    head_share: float = 0.2  # the short head: the most popular 20% of items


@dataclass(frozen=True, slots=True)
class SourceMetrics:
    """The part of a model's figures due to hits from one source, and its share of slots."""

    hr: float
    ndcg: float
    mrr: float
    hits: int
    slots: int
    slot_share: float


@dataclass(frozen=True, slots=True)
class ModelReport:
    """Figures of one model over one replay. ``auc`` is None when no request had negatives."""

    name: str
    evaluated: int
    hits: int
    hr: float
    ndcg: float
    mrr: float
    auc: float | None
    auc_warm: float | None
    auc_pooled: float | None
    coverage: float
    gini: float
    long_tail: float
    per_source: Mapping[str, SourceMetrics]

    def as_dict(self, k: int) -> dict[str, object]:
        """The JSON shape: ``hr@k``, ``ndcg@k``, ``mrr``, ``auc``, ... and ``per_source``."""
        return {
            "evaluated": self.evaluated,
            "hits": self.hits,
            f"hr@{k}": self.hr,
            f"ndcg@{k}": self.ndcg,
            "mrr": self.mrr,
            "auc": self.auc,
            "auc_warm": self.auc_warm,
            "auc_pooled": self.auc_pooled,
            "coverage": self.coverage,
            "gini": self.gini,
            "long_tail": self.long_tail,
            "per_source": {
                source: {
                    f"hr@{k}": m.hr,
                    f"ndcg@{k}": m.ndcg,
                    "mrr": m.mrr,
                    "hits": m.hits,
                    "slots": m.slots,
                    "slot_share": m.slot_share,
                }
                for source, m in sorted(self.per_source.items())
            },
        }


@dataclass
class Trace:
    """Per-request detail kept for plots: where each request was and what it scored."""

    positions: array[int] = field(default_factory=lambda: array("q"))  # event index
    hits: bytearray = field(default_factory=bytearray)
    positive_scores: array[float] = field(default_factory=lambda: array("d"))
    negative_scores: array[float] = field(default_factory=lambda: array("d"))


@dataclass
class _Tally:
    """Running sums for one model during a replay."""

    evaluated: int = 0
    hits: int = 0
    ndcg: float = 0.0
    rr: float = 0.0
    auc_sum: float = 0.0
    auc_requests: int = 0
    warm_auc_sum: float = 0.0
    warm_auc_requests: int = 0
    source_hits: Counter[str] = field(default_factory=Counter)
    source_ndcg: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    source_rr: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    source_slots: Counter[str] = field(default_factory=Counter)
    exposure: Counter[str] = field(default_factory=Counter)
    trace: Trace = field(default_factory=Trace)

    def record(self, position: int, target: str, recs: Sequence[Scored]) -> None:
        self.evaluated += 1
        for rec in recs:
            self.exposure[rec.item_id] += 1
            self.source_slots[rec.source] += 1
        rank = rank_of(target, [r.item_id for r in recs])
        self.trace.positions.append(position)
        self.trace.hits.append(rank is not None)
        if rank is None:
            return
        source = recs[rank - 1].source
        gain, rr = ndcg_gain(rank), 1.0 / rank
        self.hits += 1
        self.ndcg += gain
        self.rr += rr
        self.source_hits[source] += 1
        self.source_ndcg[source] += gain
        self.source_rr[source] += rr

    def record_scores(self, scores: Sequence[float], *, cold: bool) -> None:
        positive, negatives = scores[0], scores[1:]
        if not negatives:
            return
        auc = request_auc(positive, negatives)
        self.auc_sum += auc
        self.auc_requests += 1
        if not cold:
            self.warm_auc_sum += auc
            self.warm_auc_requests += 1
        self.trace.positive_scores.append(positive)
        self.trace.negative_scores.extend(negatives)

    def report(
        self, name: str, catalog_size: int, head: AbstractSet[str], sources: Iterable[str]
    ) -> ModelReport:
        n = self.evaluated
        slots = sum(self.source_slots.values())
        per_source = {
            source: SourceMetrics(
                hr=self.source_hits[source] / n if n else 0.0,
                ndcg=self.source_ndcg.get(source, 0.0) / n if n else 0.0,
                mrr=self.source_rr.get(source, 0.0) / n if n else 0.0,
                hits=self.source_hits[source],
                slots=self.source_slots[source],
                slot_share=self.source_slots[source] / slots if slots else 0.0,
            )
            for source in sorted({*sources, *self.source_slots})
        }
        trace = self.trace
        pooled = (
            pooled_auc(trace.positive_scores, trace.negative_scores)
            if len(trace.positive_scores) and len(trace.negative_scores)
            else None
        )
        return ModelReport(
            name=name,
            evaluated=n,
            hits=self.hits,
            hr=self.hits / n if n else 0.0,
            ndcg=self.ndcg / n if n else 0.0,
            mrr=self.rr / n if n else 0.0,
            auc=self.auc_sum / self.auc_requests if self.auc_requests else None,
            auc_warm=(
                self.warm_auc_sum / self.warm_auc_requests if self.warm_auc_requests else None
            ),
            auc_pooled=pooled,
            coverage=coverage(self.exposure.keys(), catalog_size),
            gini=gini(self.exposure.values(), catalog_size),
            long_tail=long_tail_share(self.exposure, head),
            per_source=per_source,
        )


@dataclass(frozen=True, slots=True)
class GroupReport:
    """The figures of the requests of one group (e.g. the users of one fold)."""

    evaluated: int
    cold_targets: int
    models: Mapping[str, ModelReport]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """The result of one replay: figures per model (in the order given) and their traces,
    and per group when the replay was given ``group_of``."""

    events: int
    evaluated: int
    cold_targets: int
    catalog_size: int
    models: Mapping[str, ModelReport]
    traces: Mapping[str, Trace]
    groups: Mapping[int, GroupReport] = field(default_factory=dict)


#: Every replay's sources, so a model that never used one still reports it (as zeros).
KNOWN_SOURCES: Final = ("item_cf", "popular")


class RequestSelector:
    """Which events of a replay are requests: a fresh interaction (an item event, not
    ``hide``, on an item its user has not touched) by a user with an earlier event; and what
    each user has touched so far (what a request excludes).

    >>> sel = RequestSelector()
    >>> first, again = (Event(f"e{n}", EventType.VIEW, "u1", 1e9 + n, item_id=i)
    ...                 for n, i in enumerate(["a", "b"]))
    >>> sel.is_request(first); sel.advance(first); sel.is_request(again)
    False
    True
    >>> sel.touched_by("u1")
    {'a'}
    """

    def __init__(self) -> None:
        self._touched: dict[str, set[str]] = {}
        self._active: set[str] = set()  # users with at least one event so far

    def is_request(self, event: Event) -> bool:
        item = event.item_id
        return (
            item is not None
            and event.type in TARGET_TYPES
            and event.user_id in self._active
            and item not in self._touched.get(event.user_id, ())
        )

    def touched_by(self, user_id: str) -> set[str]:
        """The items the user touched so far (the live set: it grows as the replay goes on)."""
        return self._touched.get(user_id, set())

    def advance(self, event: Event) -> None:
        """Record the event (every event, learnt or not: the record of who touched what always
        advances)."""
        self._active.add(event.user_id)
        if event.item_id is not None and event.type in ITEM_TYPES:
            self._touched.setdefault(event.user_id, set()).add(event.item_id)


def replay(
    events: Sequence[Event],
    models: Sequence[Recommender],
    params: EvalParams | None = None,
    *,
    is_test: Callable[[int, Event], bool] | None = None,
    learn_test: bool = True,
    group_of: Callable[[Event], int] | None = None,
    catalog: Collection[str] = (),
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 2000,
) -> ReplayReport:
    """Replay ``events`` (time-ordered) test-then-train through every model.

    An event at index ``n`` is a test case when ``is_test(n, event)`` (default: all events)
    and it is a fresh interaction: a non-``hide`` item event on an item its user has not
    touched, by a user with an earlier event. Each model is asked for the top ``k`` excluding
    the user's touched items, and for :meth:`Recommender.candidate_scores` of the held-out item
    followed by ``negatives`` items sampled uniformly (the same for every model) from the
    catalogue, leaving out the items the user has touched and the held-out item. Then every
    model learns the event, except test events when ``learn_test`` is False (a frozen model);
    the replay's own record of who touched what always advances. ``cold_targets`` counts the
    requests whose held-out item had no earlier event at all: no model that learns only from
    events can find those, which bounds what any of them can score; ``auc_warm`` is the AUC
    over the other requests.

    Coverage and Gini are over the catalogue = ``catalog`` ∪ items in ``events``; the short
    head is the most-interacted ``head_share`` of that catalogue over the whole stream.

    With ``group_of``, each request is also tallied in its event's group, and the report has
    the figures of every group. K-fold validation by user uses this (see :func:`fold_of`):
    when every fold replays the whole stream test-then-train, every model learns every event
    in every fold, so the K replays are one and the same and only *which requests are scored*
    differs. One replay, grouped by the user's fold, gives exactly the K folds' figures for a
    K-th of the cost.

    >>> evs = [Event(f"e{n}", EventType.VIEW, u, 1e9 + n, item_id=i)
    ...        for n, (u, i) in enumerate([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")])]
    >>> report = replay(evs, [ItemCFRecommender(StateParams()), PopularityRecommender()])
    >>> cf = report.models["itemcf"]
    >>> report.evaluated, cf.hr, cf.per_source["item_cf"].hits, cf.per_source["popular"].hits
    (2, 0.5, 1, 0)
    """
    params = params or EvalParams()
    rng = random.Random(params.seed)
    tallies = [_Tally() for _ in models]
    group_tallies: dict[int, tuple[list[_Tally], list[int]]] = {}  # group -> tallies, [n, cold]
    requests = RequestSelector()
    catalogue = catalogue_of(events, catalog)
    universe = set(catalogue)
    interactions: Counter[str] = Counter()
    evaluated = cold = 0
    k = params.k
    wanted_negatives = params.negatives

    for position, event in enumerate(events):
        user = event.user_id
        item = event.item_id
        test = is_test is None or is_test(position, event)
        if test and item is not None and requests.is_request(event):
            evaluated += 1
            is_cold = item not in interactions
            cold += is_cold
            exclude = requests.touched_by(user)
            negatives = _sample_negatives(rng, catalogue, exclude, item, wanted_negatives)
            targets = [tallies]
            if group_of is not None:
                group, counts = group_tallies.setdefault(
                    group_of(event), ([_Tally() for _ in models], [0, 0])
                )
                counts[0] += 1
                counts[1] += is_cold
                targets.append(group)
            for m, model in enumerate(models):
                recs = model.recommend(user, k, exclude, event.ts)
                scores = (
                    model.candidate_scores(user, [item, *negatives], event.ts) if negatives else []
                )
                for target in targets:
                    target[m].record(position, item, recs)
                    if negatives:
                        target[m].record_scores(scores, cold=is_cold)
        if not test or learn_test:
            for model in models:
                model.learn(event)
        requests.advance(event)
        if item is not None and event.type in ITEM_TYPES:
            interactions[item] += 1
        if on_progress is not None and (position + 1) % progress_every == 0:
            on_progress(position + 1)
    if on_progress is not None:
        on_progress(len(events))

    head = short_head({i: interactions.get(i, 0) for i in universe}, params.head_share)
    reports = {
        model.name: tally.report(model.name, len(universe), head, KNOWN_SOURCES)
        for model, tally in zip(models, tallies, strict=True)
    }
    traces = {model.name: tally.trace for model, tally in zip(models, tallies, strict=True)}
    groups = {
        g: GroupReport(
            counts[0],
            counts[1],
            {
                model.name: tally.report(model.name, len(universe), head, KNOWN_SOURCES)
                for model, tally in zip(models, group, strict=True)
            },
        )
        for g, (group, counts) in sorted(group_tallies.items())
    }
    return ReplayReport(len(events), evaluated, cold, len(universe), reports, traces, groups)


def catalogue_of(events: Sequence[Event], catalog: Collection[str] = ()) -> list[str]:
    """The replay's catalogue, sorted: every item of the stream (even those that appear later:
    they exist, and a cold item must be able to lose to them) plus the given catalogue."""
    universe = {e.item_id for e in events if e.item_id is not None and e.type in ITEM_TYPES}
    universe.update(catalog)
    return sorted(universe)


#: A model's answers to one request, asked ahead: its list (as plain tuples), its scores of the
#: held-out item and the negatives, and a hash of those items (which the replay checks).
Answer = tuple[list[tuple[str, float, str]], list[float], int]


class AnswersAhead:
    """Ask some models the replay's questions ahead of the replay, in another process: the
    same requests in the same order, the same negatives (the same draws of the same seeded
    generator over the same catalogue), so the answers are exactly those :func:`replay` would
    get from the models itself. The replay then reads them back (``streams.eval_sources``).

    ``answer(event, touched)`` at each request, before anything learns the event; ``learn`` at
    each event the models learn. A model in ``learnt_elsewhere`` (one the caller already
    teaches, such as an item-kNN shared with a source) is asked, never taught here.

    >>> evs = [Event(f"e{n}", EventType.VIEW, u, 1e9 + n, item_id=i)
    ...        for n, (u, i) in enumerate([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")])]
    >>> ahead = AnswersAhead([PopularityRecommender()], evs, EvalParams(negatives=1))
    >>> for event in evs[:2]:
    ...     ahead.learn(event)
    >>> [([r[0] for r in recs], len(scores)) for recs, scores, _ in ahead.answer(evs[2], {"a"})]
    [(['b'], 2)]
    """

    def __init__(
        self,
        models: Sequence[Recommender],
        events: Sequence[Event],
        params: EvalParams,
        catalog: Collection[str] = (),
        *,
        learnt_elsewhere: Collection[Recommender] = (),
    ) -> None:
        self.models = list(models)
        self.params = params
        self._rng = random.Random(params.seed)
        self._catalogue = catalogue_of(events, catalog)
        self._taught = [m for m in self.models if not any(m is o for o in learnt_elsewhere)]

    def answer(self, event: Event, touched: AbstractSet[str]) -> list[Answer]:
        """Every model's answers to the request ``event`` (by a user who touched ``touched``),
        drawing the negatives exactly as :func:`replay` does."""
        item = event.item_id
        assert item is not None
        negatives = _sample_negatives(
            self._rng, self._catalogue, touched, item, self.params.negatives
        )
        asked = [item, *negatives]
        key = hash(tuple(asked))
        answers: list[Answer] = []
        for model in self.models:
            recs = model.recommend(event.user_id, self.params.k, touched, event.ts)
            scores = model.candidate_scores(event.user_id, asked, event.ts) if negatives else []
            answers.append(([(r.item_id, r.score, r.source) for r in recs], scores, key))
        return answers

    def learn(self, event: Event) -> None:
        for model in self._taught:
            model.learn(event)

    def values(self) -> dict[str, dict[str, object]]:
        """The knobs the models learnt, by name: a learned popularity's half-life."""
        found: dict[str, dict[str, object]] = {}
        for model in self.models:
            popularity = getattr(model, "popularity", None)
            if popularity is not None and hasattr(popularity, "half_life_s"):
                found[model.name] = {"half_life_s": popularity.half_life_s}
        return found


def _sample_negatives(
    rng: random.Random, items: Sequence[str], exclude: AbstractSet[str], target: str, count: int
) -> list[str]:
    """Up to ``count`` distinct items, uniformly from ``items``, not in ``exclude`` nor the
    target. Bounded attempts: a user who touched nearly everything just gets fewer."""
    chosen: dict[str, None] = {}
    if not items or count <= 0:
        return []
    # Draw in batches with random.choices (one C loop) rather than one randrange per draw.
    for _ in range(4):
        for candidate in rng.choices(items, k=count):
            if candidate != target and candidate not in exclude:
                chosen[candidate] = None
                if len(chosen) >= count:
                    return list(chosen)
    return list(chosen)


# ------------------------------------------------------------------------------------------------
# Offline splits
# ------------------------------------------------------------------------------------------------


def temporal_cut(events: Sequence[Event], train_fraction: float) -> int:
    """Index of the first test event when the first ``train_fraction`` (by time) trains.

    Events with the same timestamp as the cut stay together on the training side.

    >>> evs = [Event(f"e{n}", EventType.VIEW, "u", float(t), item_id="a")
    ...        for n, t in enumerate([1, 2, 2, 3, 4])]
    >>> temporal_cut(evs, 0.4), temporal_cut(evs, 0.0), temporal_cut(evs, 1.0)
    (3, 0, 5)
    """
    if not 0.0 <= train_fraction <= 1.0:
        raise ValueError("train_fraction must be within [0, 1]")
    cut = math.floor(len(events) * train_fraction)
    while 0 < cut < len(events) and events[cut].ts == events[cut - 1].ts:
        cut += 1
    return cut


def fold_of(user_id: str, folds: int) -> int:
    """The user's fold: a stable hash (CRC-32 of the id), so runs and machines agree.

    >>> fold_of("u1", 5) == fold_of("u1", 5), 0 <= fold_of("u1", 5) < 5
    (True, True)
    """
    return zlib.crc32(user_id.encode()) % folds


def summarise(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n − 1) of the values that are not None.

    >>> [round(x, 4) for x in summarise([0.2, 0.4, None]) if x is not None]
    [0.3, 0.1414]
    """
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    std = statistics.stdev(present) if len(present) > 1 else 0.0
    return statistics.fmean(present), std
