"""Turn a user's state into a ranked, explained top-N list.

Two sources score candidates, and their scores add up:

* item-based collaborative filtering: ``r_ui = Σ_j a_uj · s_ij`` over the user's recent items
  j, each contribution explained by the item j behind it;
* social proof: items shared with the user, or bought or liked by people they follow, each
  worth ``w_action · 2^(−age / half-life)`` and explained by who did what.

Each item names its main source and carries the contribution of every source. Items the user
bought, hid or
(optionally) already interacted with, and configured exclusions, are dropped. Remaining slots
are filled with time-decayed popular items (Gorse's "try sources in order until k" pattern);
a user with no usable history gets only popular items and is marked ``cold_start``.

>>> from models.state import UserView, PopularView
>>> view = UserView("u1", recent=(("phone", 2.0),), neighbours={"phone": (("case", 0.5),)},
...                 seen=frozenset({"phone"}), bought=frozenset(), hidden=frozenset())
>>> recs = recommend(view, PopularView((("tv", 9.0),), 0.0), RecommendParams(top_n=2), now=0.0)
>>> [(r.item_id, str(r.source), r.score) for r in recs.items]
[('case', 'item_cf', 1.0), ('tv', 'popular', 9.0)]
>>> recs.items[0].reasons
(Reason(item_id='phone', contribution=1.0, user_id=None, action=None),)
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from enum import StrEnum
from operator import itemgetter
from typing import NamedTuple, Protocol

from models.popularity import decayed_score
from models.state import PopularView, UserView
from models.topk import top_k


class Source(StrEnum):
    ITEM_CF = "item_cf"
    SOCIAL = "social"
    MF = "mf"  # online matrix factorisation (models.mf)
    CONTENT = "content"  # catalog content: profile match and content neighbours (models.content)
    USER_CF = "user_cf"  # people who act like you (models.usercf)
    FBT = "fbt"  # frequently bought together with the user's basket (models.fbt)
    ITEM_KNN = "item_knn"  # co-occurrence cosine over every pair, no caps (models.itemknn)
    FOLLOWEES = "followees"  # followees' latest items, by learned trust (models.followees)
    TRENDING = "trending"
    POPULAR = "popular"
    EXPLORE = "explore"  # the exploration slot: a new or long-tail item


#: Personal sources, in the order their contributions are listed; popularity last, when it is
#: blended in as a source of its own (learned blend weights, models.knobs).
PERSONAL_SOURCES: tuple[Source, ...] = (
    Source.ITEM_CF,
    Source.SOCIAL,
    Source.MF,
    Source.CONTENT,
    Source.USER_CF,
    Source.FBT,
    Source.ITEM_KNN,
    Source.FOLLOWEES,
    Source.POPULAR,
)

#: The fixed blend: what a source's best candidate for a user is worth (see :func:`blend`).
#: Chosen with ``socialrec eval`` (docs/quality.md); a learned ranker replaces it only where
#: it measures better.
DEFAULT_SOURCE_WEIGHTS: dict[Source, float] = {
    Source.ITEM_CF: 1.0,
    Source.SOCIAL: 1.0,
    Source.MF: 0.1,  # at 1.0 MF cost 37 % of HR@10; at 0.1 it still adds a little
    Source.CONTENT: 0.25,
    Source.USER_CF: 0.25,
    Source.FBT: 0.8,
}

#: What one social proof is worth before decay: a share to you persuades more than a
#: followee's purchase, which persuades more than their like.
#: "recent": any other recent item of a followee (read only when asked: ``followee_items``).
DEFAULT_SOCIAL_WEIGHTS = {"share": 1.0, "purchase": 0.8, "like": 0.5, "recent": 0.5}


@dataclass(frozen=True, slots=True)
class RecommendParams:
    top_n: int = 10
    exclude_items: frozenset[str] = frozenset()
    exclude_seen: bool = True
    reasons_per_item: int = 3
    half_life_s: float = 6 * 3600.0
    social_weights: tuple[tuple[str, float], ...] = tuple(DEFAULT_SOCIAL_WEIGHTS.items())
    social_half_life_s: float = 3 * 86400.0
    category_cap: int = 0  # at most this many items per category in a list (0: no cap)
    source_weights: tuple[tuple[Source, float], ...] = ()  # the blend (set in __post_init__)
    explore_slots: int = 0  # positions at the end of the list for new or long-tail items
    pool_size: int = 50  # candidates each source proposes (item-CF's best are kept)

    def __post_init__(self) -> None:
        if not self.source_weights:
            object.__setattr__(self, "source_weights", tuple(DEFAULT_SOURCE_WEIGHTS.items()))


class Reason(NamedTuple):
    """What added to a score: one of the user's items (item-CF), or a person and what they did
    (social: ``user_id`` shared it with the user, or bought/liked it).

    Reasons and candidates are named tuples, not dataclasses: every list decodes about a
    hundred of each from the learner's pools, and a frozen dataclass costs several times as
    much to build."""

    item_id: str | None
    contribution: float
    user_id: str | None = None
    action: str | None = None


class Candidate(NamedTuple):
    """One item a source proposes for a user: the source's own score (higher is better, on the
    source's scale; the assembly normalises) and why."""

    item_id: str
    score: float
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class RecommendedItem:
    item_id: str
    score: float
    source: Source
    reasons: tuple[Reason, ...]
    sources: tuple[tuple[Source, float], ...] = ()  # each source's share of the score


@dataclass(frozen=True, slots=True)
class CandidateFeatures:
    """What the ranker sees of one candidate: each source's normalised score (0 if the source
    did not propose it). The same numbers drive the fixed blend and the learned ranker."""

    item_id: str
    normalised: Mapping[Source, float]
    history: int = 0  # how many recent items the user has (context for a learned ranker)


@dataclass(frozen=True, slots=True)
class Recommendations:
    user_id: str
    items: tuple[RecommendedItem, ...]
    cold_start: bool
    #: The best personal candidates' features, shown or not (to learn from the user's next
    #: event: see models.ranker).
    features: tuple[CandidateFeatures, ...] = ()


def item_cf_scores(view: UserView) -> tuple[dict[str, float], dict[str, list[tuple[float, str]]]]:
    """Candidate -> ``Σ_j a_uj · s_ij`` over the recent items j that point at it, and candidate
    -> [(a_uj · s_ij, j)], the terms in the same order (each total is their sum, left to
    right).

    Plain tuples, not :class:`Reason` objects: this runs for every neighbour of every recent
    item, and only the few chosen candidates need their reasons spelled out.

    >>> view = UserView("u", recent=(("phone", 2.0), ("tv", 1.0)), neighbours={
    ...     "phone": (("case", 0.5),), "tv": (("case", 0.25), ("remote", 0.5))},
    ...     seen=frozenset(), bought=frozenset(), hidden=frozenset())
    >>> totals, terms = item_cf_scores(view)
    >>> totals, terms["case"]
    ({'case': 1.25, 'remote': 0.5}, [(1.0, 'phone'), (0.25, 'tv')])
    """
    totals: dict[str, float] = {}
    contributions: dict[str, list[tuple[float, str]]] = {}
    for source_item, affinity in view.recent:
        for candidate, similarity in view.neighbours.get(source_item, ()):
            contribution = affinity * similarity
            entry = contributions.get(candidate)
            if entry is None:
                contributions[candidate] = [(contribution, source_item)]
                totals[candidate] = contribution
            else:
                entry.append((contribution, source_item))
                totals[candidate] += contribution
    return totals, contributions


def social_scores(
    view: UserView, params: RecommendParams, now: float
) -> dict[str, list[tuple[float, Reason]]]:
    """Candidate -> [(decayed weight, who did what)] from the user's social proof."""
    weights = dict(params.social_weights)
    out: dict[str, list[tuple[float, Reason]]] = {}
    for proof in view.social:
        weight = weights.get(proof.action, 0.0)
        if weight <= 0.0:
            continue
        age = max(0.0, now - proof.ts)
        value = weight * math.pow(2.0, -age / params.social_half_life_s)
        reason = Reason(None, value, user_id=proof.user_id, action=proof.action)
        out.setdefault(proof.item_id, []).append((value, reason))
    return out


#: An entry of a ranking, resolved into a :class:`RecommendedItem` only if it is chosen: the
#: item, and None for a personal candidate or the fallback source with its score.
Ranked = tuple[str, Source | None, float]


def diversify(
    ranked: Iterable[Ranked],
    excluded: AbstractSet[str],
    top_n: int,
    category_cap: int,
    categories: Mapping[str, str] | None,
) -> list[Ranked]:
    """The first ``top_n`` of ``ranked``, each item once, none excluded, and at most
    ``category_cap`` per category (items of unknown category are not capped). If the cap
    leaves the list short, the best passed-over items fill it: a cap diversifies, it never
    shortens a list.

    >>> ranked = [(i, Source.POPULAR, 1.0) for i in ["a1", "a2", "b1"]]
    >>> [item for item, _, _ in diversify(ranked, frozenset(), 2, 1,
    ...                                   {"a1": "A", "a2": "A", "b1": "B"})]
    ['a1', 'b1']
    """
    cats = categories or {}
    chosen: list[Ranked] = []
    passed_over: list[Ranked] = []
    per_category: dict[str, int] = {}
    taken: set[str] = set()
    for entry in ranked:
        if len(chosen) >= top_n:
            break
        item_id = entry[0]
        if item_id in excluded or item_id in taken:
            continue
        taken.add(item_id)
        category = cats.get(item_id, "")
        if category_cap and category and per_category.get(category, 0) >= category_cap:
            passed_over.append(entry)
            continue
        per_category[category] = per_category.get(category, 0) + 1
        chosen.append(entry)
    return chosen + passed_over[: top_n - len(chosen)]


def excluded_items(view: UserView, params: RecommendParams) -> frozenset[str]:
    """Everything that must never be shown to this user right now."""
    excluded = view.bought | view.hidden | params.exclude_items
    return excluded | view.seen if params.exclude_seen else excluded


#: How many of the best candidates' features a list remembers for the ranker.
RANKER_MEMORY = 50

#: candidate -> (raw score, reasons). Item-CF's reasons stay (contribution, item) tuples until
#: the candidate is chosen: building Reason objects for every neighbour would dominate a request.
Pool = dict[str, tuple[float, Sequence[Reason | tuple[float, str]]]]


def normalise(scores: Mapping[str, float]) -> dict[str, float]:
    """Each score over the best one, so every source speaks on [0, 1] for this user.

    Scale-free across sources (r_ui, cosines, counts), but keeps the *shape* within a
    source: a candidate half as strong as the best gets 0.5 (reciprocal-rank fusion would
    throw that away). Non-positive scores get 0.

    >>> normalise({"a": 4.0, "b": 1.0, "c": -2.0})
    {'a': 1.0, 'b': 0.25, 'c': 0.0}
    """
    best = max(scores.values(), default=0.0)
    if best <= 0.0:
        return {item: 0.0 for item in scores}
    return {item: max(0.0, score) / best for item, score in scores.items()}


@dataclass(frozen=True, slots=True)
class Blended:
    """Every candidate's total under the fixed blend, computed once per request, and its
    normalised score per source (see :func:`normalise`) on demand: the ranking needs only the
    totals, the explanations the per-source split of the few items shown. Candidates no
    source scores above 0 are left out.

    >>> b = blend_pools({Source.ITEM_CF: {"a": (2.0, ()), "b": (1.0, ())},
    ...                  Source.MF: {"b": (0.5, ())}}, {Source.ITEM_CF: 1.0, Source.MF: 0.5})
    >>> b.totals
    {'a': 1.0, 'b': 1.0}
    >>> b.normalised("b")
    {<Source.ITEM_CF: 'item_cf'>: 0.5, <Source.MF: 'mf'>: 1.0}
    """

    pools: Mapping[Source, Pool]
    best: dict[Source, float]  # each source's best raw score (only sources with one > 0)
    totals: dict[str, float]
    history: int = 0

    def normalised(self, item_id: str) -> dict[Source, float]:
        """Each source's score for the candidate over that source's best, in pool order."""
        out: dict[Source, float] = {}
        for source, best in self.best.items():
            entry = self.pools[source].get(item_id)
            if entry is not None and entry[0] > 0.0:
                out[source] = entry[0] / best
        return out

    def features(self, item_id: str) -> CandidateFeatures:
        return CandidateFeatures(item_id, self.normalised(item_id), self.history)


_first = itemgetter(0)


def blend_pools(
    pools: Mapping[Source, Pool], weights: Mapping[Source, float], history: int = 0
) -> Blended:
    """Normalise every source's pool and add up the blend: one pass per source (not per
    candidate and source), plain floats (no object per candidate): this runs on every request.
    """
    best_of: dict[Source, float] = {}
    totals: dict[str, float] = {}
    for source, pool in pools.items():
        best = max(map(_first, pool.values()), default=0.0)
        if best <= 0.0:
            continue
        best_of[source] = best
        weight = weights.get(source, 0.0)
        get = totals.get
        for item, (raw, _) in pool.items():
            if raw > 0.0:
                # 0.0 + x is x: the first source's term is stored exactly as before.
                totals[item] = get(item, 0.0) + weight * (raw / best)
    return Blended(pools, best_of, totals, history)


def candidate_features(
    pools: Mapping[Source, Pool], history: int = 0
) -> dict[str, CandidateFeatures]:
    """Per candidate, every source's normalised score (see :func:`normalise`); candidates no
    source scores above 0 are left out."""
    blended = blend_pools(pools, {}, history)
    return {item: blended.features(item) for item in blended.totals}


def blend(features: CandidateFeatures, weights: Mapping[Source, float]) -> dict[Source, float]:
    """Each source's contribution to the candidate's score: weight × normalised score.

    >>> blend(CandidateFeatures("x", {Source.ITEM_CF: 0.5, Source.MF: 1.0}),
    ...       {Source.ITEM_CF: 1.0, Source.MF: 0.5})
    {<Source.ITEM_CF: 'item_cf'>: 0.5, <Source.MF: 'mf'>: 0.5}
    """
    return {s: weights.get(s, 0.0) * v for s, v in features.normalised.items()}


def sigmoid(x: float) -> float:
    """The logistic function, clipped so it never overflows (MF scores are logits)."""
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, x))))


def personal_pools(view: UserView, params: RecommendParams, now: float) -> dict[Source, Pool]:
    """The two sources read from the user's state: item-CF (its best ``pool_size``) and
    social proof, raw scores with reasons."""
    totals, parts = item_cf_scores(view)
    # Like every other source, item-CF proposes its best ``pool_size``: up to recent ×
    # neighbours (400) weak tails would otherwise dominate the cost of every request.
    kept = (
        top_k(totals, params.pool_size, ties_descending=True)
        if len(totals) > params.pool_size
        else totals.items()
    )
    cf: Pool = {item: (total, parts[item]) for item, total in kept}
    social: Pool = {}
    for candidate, social_parts in social_scores(view, params, now).items():
        social[candidate] = (sum(c for c, _ in social_parts), [r for _, r in social_parts])
    return {Source.ITEM_CF: cf, Source.SOCIAL: social}


def _fill(
    pool: Pool, source: Source, entries: Iterable[tuple[str, float, Sequence[Reason]]]
) -> Pool:
    """Add ``(item, score, reasons)`` to ``pool``: the first proposal of an item counts, and
    only finite positive scores. MF scores are logits, so they go through the sigmoid; every
    other source's are non-negative already. Non-finite scores are dropped (checked before the
    sigmoid, which would turn a NaN logit into its top)."""
    is_mf = source is Source.MF
    isfinite = math.isfinite
    for item_id, score, reasons in entries:
        if not isfinite(score):
            continue
        raw = sigmoid(score) if is_mf else score
        if raw > 0.0 and item_id not in pool:
            pool[item_id] = (raw, reasons)
    return pool


def source_pool(source: Source, candidates: Iterable[Candidate], pool: Pool | None = None) -> Pool:
    """A source's candidates as a pool (added to ``pool`` if given), as :func:`_fill` keeps
    them.

    >>> source_pool(Source.MF, [Candidate("a", 0.0), Candidate("b", float("nan"))])
    {'a': (0.5, ())}
    """
    return _fill(
        {} if pool is None else pool, source, ((c.item_id, c.score, c.reasons) for c in candidates)
    )


def scored_pool(
    source: Source, scored: Iterable[tuple[str, float]], reasons: tuple[Reason, ...]
) -> Pool:
    """:func:`source_pool` of ``(item, score)`` pairs that all share one explanation (MF's
    "taste match", content's "profile match"...), without a Candidate per pair.

    >>> scored_pool(Source.MF, [("a", 0.0), ("a", 5.0), ("b", float("inf"))], ())
    {'a': (0.5, ())}
    """
    if source is Source.MF:
        return _fill({}, source, ((item_id, score, reasons) for item_id, score in scored))
    # The same rule as _fill without the sigmoid, in one loop: this runs for every source of
    # every request.
    pool: Pool = {}
    isfinite = math.isfinite
    for item_id, score in scored:
        if score > 0.0 and item_id not in pool and isfinite(score):
            pool[item_id] = (score, reasons)
    return pool


def source_pools(candidates: Mapping[Source, Iterable[Candidate]]) -> dict[Source, Pool]:
    """Every source's candidates as pools (:func:`source_pool`), sources left with none left
    out: the form the learner keeps and the assembly reads, so the sigmoid and the checks run
    once per learnt pool, not once per list.

    >>> source_pools({Source.MF: [Candidate("a", 0.0)], Source.FBT: []})
    {<Source.MF: 'mf'>: {'a': (0.5, ())}}
    """
    return {s: pool for s, found in candidates.items() if (pool := source_pool(s, found))}


def candidate_pools(
    view: UserView,
    params: RecommendParams,
    now: float,
    extra: Mapping[Source, Pool],
) -> dict[Source, Pool]:
    """Every personal source's candidates for the user, raw scores with reasons: the two
    read from the user's state and the ``extra`` pools the learnt sources proposed (a pool of
    a source already here adds only the items it lacks; ``extra`` is not changed)."""
    pools = personal_pools(view, params, now)
    for source, pool in extra.items():
        mine = pools.get(source)
        if mine:
            for item, entry in pool.items():
                mine.setdefault(item, entry)
        else:
            pools[source] = pool
    return {s: p for s, p in pools.items() if p}


class Ranker(Protocol):
    """A learned scorer of candidates (see models.ranker); higher is better."""

    def score(self, features: Sequence[CandidateFeatures]) -> list[float]: ...


def recommend(
    view: UserView,
    popular: PopularView,
    params: RecommendParams,
    *,
    now: float,
    trending: Sequence[tuple[str, float]] = (),
    categories: Mapping[str, str] | None = None,
    extra: Mapping[Source, Pool] | None = None,
    explore: Sequence[str] = (),
    ranker: Ranker | None = None,
    pools: Mapping[Source, Pool] | None = None,
    blended: Blended | None = None,
    remember: bool = False,
    explain: bool = True,
) -> Recommendations:
    """The user's top-N: every source's candidates fused, fallbacks to fill, never an excluded
    one, at most ``category_cap`` per category, and ``explore_slots`` for new or long-tail
    items (``explore``, best first) at the end of the list.

    A warm user's candidates are ranked by the fixed blend of :func:`blend` (or by
    ``ranker`` when one is given). A cold user (no history) gets, in order: content
    candidates, what is trending, their social proof, then long-run popularity.

    ``now`` converts stored popularity into a decayed count and ages social proof.
    ``pools`` (from :func:`candidate_pools`) and ``blended`` (:func:`blend_pools` of them with
    ``params.source_weights``) save building them again when the caller has. With
    ``remember``, the result carries the best candidates' features for a learned ranker to
    learn from (see :class:`Recommendations`). Without ``explain``, a personal item carries
    no reasons (its score, source and per-source shares are the same): for callers that
    read only the list, such as the evaluation's replay.

    The same as :class:`Ranking` then :meth:`Ranking.choose`, which a caller that looks the
    categories up uses to ask only for the items the cap may read.
    """
    ranking = Ranking(
        view,
        popular,
        params,
        now=now,
        trending=trending,
        extra=extra,
        ranker=ranker,
        pools=pools,
        blended=blended,
    )
    return ranking.choose(categories, explore=explore, remember=remember, explain=explain)


class Ranking:
    """A user's candidates blended and in order: a list but for the category cap. The cap
    reads the categories of only the items :meth:`capped_items` names (a few dozen of the
    hundreds of candidates), so a caller that fetches categories asks for those.

    >>> from models.state import UserView, PopularView
    >>> view = UserView("u1", recent=(("phone", 2.0),), seen=frozenset({"phone"}),
    ...     neighbours={"phone": (("case", 0.5), ("cable", 0.4), ("sim", 0.3))},
    ...     bought=frozenset(), hidden=frozenset())
    >>> params = RecommendParams(top_n=2, category_cap=1)
    >>> ranking = Ranking(view, PopularView((("tv", 9.0),), 0.0), params, now=0.0)
    >>> sorted(ranking.capped_items())
    ['cable', 'case', 'sim', 'tv']
    >>> categories = {"case": "cases", "cable": "cases", "sim": "sims"}
    >>> [r.item_id for r in ranking.choose(categories).items]
    ['case', 'sim']
    """

    def __init__(
        self,
        view: UserView,
        popular: PopularView,
        params: RecommendParams,
        *,
        now: float,
        trending: Sequence[tuple[str, float]] = (),
        extra: Mapping[Source, Pool] | None = None,
        ranker: Ranker | None = None,
        pools: Mapping[Source, Pool] | None = None,
        blended: Blended | None = None,
    ) -> None:
        self.view, self.popular, self.params = view, popular, params
        self.now, self.trending = now, trending
        self.excluded = excluded_items(view, params)
        if pools is None:
            pools = candidate_pools(view, params, now, extra or {})
        self.pools = pools
        self.weights = weights = dict(params.source_weights)
        if blended is None:
            blended = blend_pools(pools, weights, len(view.recent))
        self.blended = blended
        excluded = self.excluded
        self.totals = totals = {i: t for i, t in blended.totals.items() if i not in excluded}
        self.cold_start = cold_start = not view.recent  # no usable history: all fallbacks
        self.learned: dict[str, float] = {}
        if ranker is not None and totals and not cold_start:
            scores = ranker.score([blended.features(i) for i in totals])
            self.learned = dict(zip(totals, scores, strict=True))
        # With a category cap some of the best may be passed over: look a little deeper.
        depth = (params.top_n + params.explore_slots) * (4 if params.category_cap else 1)
        if self.learned or cold_start:
            self.order = self.full_order()
        else:
            # A warm user's list reads only the best few hundredths of the candidates: rank a
            # prefix (the best `depth`, the exploration pool, what the ranker would remember)
            # and sort everything only if exploration runs past it.
            prefix = max(depth + params.top_n, RANKER_MEMORY)
            self.order = [item for item, _ in top_k(totals, prefix)]
        if cold_start:
            # Content first, then trending, then social proof (popular fills whatever is left).
            normalised = blended.normalised
            self.best = [i for i in self.order if Source.CONTENT in normalised(i)][:depth]
            self.later = [i for i in self.order if Source.SOCIAL in normalised(i)][:depth]
        else:
            self.best, self.later = self.order[:depth], []

    def full_order(self) -> list[str]:
        """Every candidate, best first."""
        totals, learned = self.totals, self.learned
        if learned:
            return sorted(totals, key=lambda i: (-learned[i], -totals[i], i))
        return [item for item, _ in top_k(totals, len(totals))]

    def capped_items(self) -> set[str]:
        """Every item whose category :meth:`choose` may read: the candidates it ranks, what
        is trending and the popular items (explored items are not capped)."""
        return {
            *self.best,
            *self.later,
            *(item for item, _ in self.trending),
            *(item for item, _ in self.popular.items),
        }

    def choose(
        self,
        categories: Mapping[str, str] | None = None,
        *,
        explore: Sequence[str] = (),
        remember: bool = False,
        explain: bool = True,
    ) -> Recommendations:
        """The list: see :func:`recommend`. ``categories`` needs only :meth:`capped_items`."""
        view, popular, params, now = self.view, self.popular, self.params, self.now
        pools, weights, blended, totals = self.pools, self.weights, self.blended, self.totals
        learned, excluded, cold_start = self.learned, self.excluded, self.cold_start
        normalised, trending, order = blended.normalised, self.trending, self.order
        best, later = self.best, self.later

        def personal(candidate: str) -> RecommendedItem:
            parts = {s: weights.get(s, 0.0) * v for s, v in normalised(candidate).items()}
            score = learned.get(candidate, totals[candidate])
            if not explain:
                ordered = sorted(
                    parts.items(), key=lambda sv: (-sv[1], PERSONAL_SOURCES.index(sv[0]))
                )
                shares = tuple((s, v) for s, v in ordered if v > 0)
                return RecommendedItem(candidate, score, ordered[0][0], (), shares)
            # Every reason as its sort key (biggest contribution first, then by item, then by
            # person) followed by its fields; the position keeps equal keys in order, as a stable
            # sort would. Reason objects are built only for the ``reasons_per_item`` kept.
            keyed: list[tuple[float, str, str, int, str | None, float, str | None, str | None]] = []
            for source, share in parts.items():
                _, source_reasons = pools[source][candidate]
                # A source's share of the score is split over its reasons by their own weights
                # (evenly if those are not positive, e.g. an MF logit below zero).
                own = [r.contribution if isinstance(r, Reason) else r[0] for r in source_reasons]
                total = sum(w for w in own if w > 0)
                for r, w in zip(source_reasons, own, strict=True):
                    part = max(0.0, share * w / total if total > 0 else share / len(own))
                    if isinstance(r, Reason):
                        item, user = r.item_id, r.user_id
                        keyed.append(
                            (-part, item or "", user or "", len(keyed), item, part, user, r.action)
                        )
                    else:
                        keyed.append((-part, r[1], "", len(keyed), r[1], part, None, None))
            keyed.sort()
            reasons = tuple(
                Reason(item, part, user, action)
                for *_, item, part, user, action in keyed[: params.reasons_per_item]
            )
            ordered = sorted(parts.items(), key=lambda sv: (-sv[1], PERSONAL_SOURCES.index(sv[0])))
            return RecommendedItem(
                candidate, score, ordered[0][0], reasons, tuple((s, v) for s, v in ordered if v > 0)
            )

        def ranked() -> Iterator[Ranked]:
            """Personal candidates, then the fallbacks in order: what is trending right now, then
            what has been popular over hours (a cold-start user gets them immediately). Only the
            entries :func:`diversify` keeps are explained, by :func:`resolve`."""
            for candidate in best:
                yield candidate, None, 0.0
            for item_id, count in trending:
                # Trending and also personal (a friend shared it): keep its place in the fallback
                # order, but say why it is this user's, not just that it is hot.
                yield item_id, None if item_id in totals else Source.TRENDING, count
            for candidate in later:
                yield candidate, None, 0.0
            for item_id, stored in popular.items:
                yield item_id, Source.POPULAR, stored

        def resolve(entry: Ranked) -> RecommendedItem:
            item_id, fallback, score = entry
            if fallback is None:
                return personal(item_id)
            if fallback is Source.POPULAR:
                score = decayed_score(
                    score, landmark=popular.landmark, at=now, half_life_s=params.half_life_s
                )
            return RecommendedItem(item_id, score, fallback, (), ((fallback, score),))

        if params.explore_slots and not explore and not cold_start:
            # The user's own long tail: personal candidates outside the popular head (new items
            # have no events, so they are always here), best first. One slot shows the user
            # something the head would crowd out, and gives the item its first exposure.
            head = {item for item, _ in popular.items}
            explore = [i for i in order if i not in head][: params.top_n]
            if len(explore) < params.top_n and len(order) < len(totals):
                explore = [i for i in self.full_order() if i not in head][: params.top_n]
        slots = min(params.explore_slots, params.top_n - 1) if explore else 0
        chosen = [
            resolve(entry)
            for entry in diversify(
                ranked(), excluded, params.top_n - slots, params.category_cap, categories
            )
        ]
        if slots:
            chosen += exploration(
                explore,
                excluded | {r.item_id for r in chosen},
                slots,
                lambda item: personal(item) if item in totals else None,
            )
        if len(chosen) < params.top_n:  # nothing to explore: fill from the ranking
            more = diversify(ranked(), excluded, params.top_n, params.category_cap, categories)
            taken = {r.item_id for r in chosen}
            chosen += [resolve(e) for e in more if e[0] not in taken][: params.top_n - len(chosen)]
        # The ranker learns from the user's next event: the best candidates' features, so the item
        # the user goes on to act on can be compared with the ones shown instead.
        if not remember:
            return Recommendations(view.user_id, tuple(chosen), cold_start)
        remembered = (
            heapq.nsmallest(RANKER_MEMORY, totals, key=lambda i: (-totals[i], i))
            if learned
            else order[:RANKER_MEMORY]
        )
        return Recommendations(
            view.user_id, tuple(chosen), cold_start, tuple(blended.features(i) for i in remembered)
        )


def exploration(
    pool: Sequence[str],
    excluded: AbstractSet[str],
    slots: int,
    explain: Callable[[str], RecommendedItem | None] = lambda _: None,
) -> list[RecommendedItem]:
    """The first ``slots`` items of the exploration pool the user may see, as
    :data:`Source.EXPLORE`, keeping the reasons ``explain`` gives for an item (a personal
    candidate's), if any.

    >>> [r.item_id for r in exploration(["new1", "seen", "new2"], {"seen"}, 1)]
    ['new1']
    """
    chosen: list[RecommendedItem] = []
    taken = set(excluded)
    for item_id in pool:
        if len(chosen) >= slots:
            break
        if item_id in taken:
            continue
        taken.add(item_id)
        known = explain(item_id)
        if known is None:
            chosen.append(
                RecommendedItem(item_id, 0.0, Source.EXPLORE, (), ((Source.EXPLORE, 0.0),))
            )
        else:
            chosen.append(replace(known, source=Source.EXPLORE))
    return chosen
