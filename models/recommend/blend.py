"""The fixed blend: each source's scores over its best for the user (:func:`normalise`), weighed
and added up (:func:`blend_pools`). The same normalised scores are the features a learned ranker
reads (:class:`CandidateFeatures`, models.ranker).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter

from models.recommend.candidates import CandidateFeatures, Pool, Source


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

    def scores(self) -> Scores:
        """The raw scores of the sources that scored something, without the reasons: all the
        blend learner reads (models/blendlearn.py).

        >>> b = blend_pools({Source.MF: {"a": (2.0, [(1.0, "x")])}, Source.FBT: {}},
        ...                 {Source.MF: 1.0})
        >>> b.scores().pools, b.scores().totals == b.totals
        ({<Source.MF: 'mf'>: {'a': 2.0}}, True)
        """
        pools = {s: {item: e[0] for item, e in self.pools[s].items()} for s in self.best}
        return Scores(pools, self.best, self.totals, self.history)

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


@dataclass(frozen=True, slots=True)
class Scores:
    """A request's candidates as the blend learner reads them (:meth:`Blended.scores`), in a
    form a worker can hold for thousands of users: dicts of ids and floats, which the cyclic
    garbage collector never tracks. With their reasons a request was about 200 objects that
    every full pass walked; as ``(score, ())`` pairs, a tracked tuple a candidate until a
    young pass had walked it."""

    pools: dict[Source, dict[str, float]]  # each source's raw score per candidate
    best: dict[Source, float]
    totals: dict[str, float]
    history: int = 0


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
