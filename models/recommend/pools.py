"""Every personal source's candidates for a user as pools (:data:`Pool`): the two read from the
user's state (item-CF, social proof) and those the learnt sources proposed, raw scores with
their reasons. MF's logits go through the sigmoid here, once per pool, not once per list.

>>> from models.state import UserView
>>> view = UserView("u", recent=(("phone", 2.0),), neighbours={"phone": (("case", 0.5),)},
...                 seen=frozenset(), bought=frozenset(), hidden=frozenset())
>>> pools = candidate_pools(view, RecommendParams(), 0.0, {Source.MF: {"tv": (0.5, ())}})
>>> pools[Source.ITEM_CF], list(pools)
({'case': (1.0, [(1.0, 'phone')])}, [<Source.ITEM_CF: 'item_cf'>, <Source.MF: 'mf'>])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from models.recommend.candidates import Candidate, Pool, Reason, RecommendParams, Source
from models.state import UserView
from models.topk import top_k


def item_cf_scores(view: UserView) -> dict[str, float]:
    """Candidate -> ``Σ_j a_uj · s_ij`` over the recent items j that point at it (added in the
    order of the recent items).

    Totals only: this runs for every neighbour of every recent item, and only the candidates
    kept need their terms (:func:`item_cf_terms`).

    >>> view = UserView("u", recent=(("phone", 2.0), ("tv", 1.0)), neighbours={
    ...     "phone": (("case", 0.5),), "tv": (("case", 0.25), ("remote", 0.5))},
    ...     seen=frozenset(), bought=frozenset(), hidden=frozenset())
    >>> item_cf_scores(view)
    {'case': 1.25, 'remote': 0.5}
    """
    totals: dict[str, float] = {}
    get = totals.get
    for source_item, affinity in view.recent:
        for candidate, similarity in view.neighbours.get(source_item, ()):
            totals[candidate] = get(candidate, 0.0) + affinity * similarity
    return totals


def item_cf_terms(view: UserView, candidates: Iterable[str]) -> dict[str, list[tuple[float, str]]]:
    """Each candidate's terms ``(a_uj · s_ij, j)`` in the order :func:`item_cf_scores` adds
    them (its total is their sum, left to right): the reasons of the kept candidates.

    >>> view = UserView("u", recent=(("phone", 2.0), ("tv", 1.0)), neighbours={
    ...     "phone": (("case", 0.5),), "tv": (("case", 0.25), ("remote", 0.5))},
    ...     seen=frozenset(), bought=frozenset(), hidden=frozenset())
    >>> item_cf_terms(view, ["case"])
    {'case': [(1.0, 'phone'), (0.25, 'tv')]}
    """
    terms: dict[str, list[tuple[float, str]]] = {c: [] for c in candidates}
    get = terms.get
    for source_item, affinity in view.recent:
        for candidate, similarity in view.neighbours.get(source_item, ()):
            entry = get(candidate)
            if entry is not None:
                entry.append((affinity * similarity, source_item))
    return terms


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


def sigmoid(x: float) -> float:
    """The logistic function, clipped so it never overflows (MF scores are logits)."""
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, x))))


def personal_pools(view: UserView, params: RecommendParams, now: float) -> dict[Source, Pool]:
    """The two sources read from the user's state: item-CF (its best ``pool_size``) and
    social proof, raw scores with reasons."""
    totals = item_cf_scores(view)
    # Like every other source, item-CF proposes its best ``pool_size``: up to recent ×
    # neighbours (400) weak tails would otherwise dominate the cost of every request.
    kept = (
        top_k(totals, params.pool_size, ties_descending=True)
        if len(totals) > params.pool_size
        else list(totals.items())
    )
    parts = item_cf_terms(view, (item for item, _ in kept))
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
