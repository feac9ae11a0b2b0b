"""The assembly: a user's candidates fused into one ranking (:class:`Ranking`), then the list
(:meth:`Ranking.choose`, or :func:`recommend` for both): personal candidates by the fixed blend
or a learned ranker, fallbacks to fill, never an excluded item, the category cap and the
exploration slots.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from models.popularity import decayed_score
from models.recommend.blend import Blended, blend_pools
from models.recommend.candidates import (
    RANKER_MEMORY,
    Pool,
    Ranker,
    Recommendations,
    RecommendedItem,
    RecommendParams,
    Source,
    excluded_items,
)
from models.recommend.diversify import Ranked, diversify, exploration
from models.recommend.explain import personal_item
from models.recommend.pools import candidate_pools
from models.state import PopularView, UserView
from models.topk import top_k


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
        self.excluded = excluded = excluded_items(view, params)
        if pools is None:
            pools = candidate_pools(view, params, now, extra or {})
        self.pools = pools
        self.weights = weights = dict(params.source_weights)
        if blended is None:
            blended = blend_pools(pools, weights, len(view.recent))
        self.blended = blended
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

    def explained(self, candidate: str, *, explain: bool = True) -> RecommendedItem:
        """A personal candidate as the list shows it (:func:`personal_item`): the ranker's score
        if it scored one, else the blend's, and the blend's parts of it."""
        weights, normalised = self.weights, self.blended.normalised(candidate)
        parts = {s: weights.get(s, 0.0) * v for s, v in normalised.items()}
        score = self.learned.get(candidate, self.totals[candidate])
        reasons = self.params.reasons_per_item
        return personal_item(candidate, score, parts, self.pools, reasons, explain=explain)

    def capped_items(self) -> set[str]:
        """Every item whose category :meth:`choose` may read: the candidates it ranks, what
        is trending and the popular items (explored items are not capped)."""
        return {
            *self.best,
            *self.later,
            *(item for item, _ in self.trending),
            *(item for item, _ in self.popular.items),
        }

    def ranked(self) -> Iterator[Ranked]:
        """Personal candidates, then the fallbacks in order: what is trending right now, then
        what has been popular over hours (a cold-start user gets them immediately). Only the
        entries :func:`diversify` keeps are explained, by :meth:`resolve`."""
        totals = self.totals
        for candidate in self.best:
            yield candidate, None, 0.0
        for item_id, count in self.trending:
            # Trending and also personal (a friend shared it): keep its place in the fallback
            # order, but say why it is this user's, not just that it is hot.
            yield item_id, None if item_id in totals else Source.TRENDING, count
        for candidate in self.later:
            yield candidate, None, 0.0
        for item_id, stored in self.popular.items:
            yield item_id, Source.POPULAR, stored

    def resolve(self, entry: Ranked, *, explain: bool = True) -> RecommendedItem:
        """An entry of :meth:`ranked` as the list shows it (popularity decayed to ``now``)."""
        item_id, fallback, score = entry
        if fallback is None:
            return self.explained(item_id, explain=explain)
        if fallback is Source.POPULAR:
            popular, half_life_s = self.popular, self.params.half_life_s
            score = decayed_score(
                score, landmark=popular.landmark, at=self.now, half_life_s=half_life_s
            )
        return RecommendedItem(item_id, score, fallback, (), ((fallback, score),))

    def choose(
        self,
        categories: Mapping[str, str] | None = None,
        *,
        explore: Sequence[str] = (),
        remember: bool = False,
        explain: bool = True,
    ) -> Recommendations:
        """The list: see :func:`recommend`. ``categories`` needs only :meth:`capped_items`."""
        view, popular, params, blended = self.view, self.popular, self.params, self.blended
        totals, learned, excluded = self.totals, self.learned, self.excluded
        cold_start, order = self.cold_start, self.order

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
            self.resolve(entry, explain=explain)
            for entry in diversify(
                self.ranked(), excluded, params.top_n - slots, params.category_cap, categories
            )
        ]
        if slots:
            chosen += exploration(
                explore,
                excluded | {r.item_id for r in chosen},
                slots,
                lambda item: self.explained(item, explain=explain) if item in totals else None,
            )
        if len(chosen) < params.top_n:  # nothing to explore: fill from the ranking
            more = diversify(self.ranked(), excluded, params.top_n, params.category_cap, categories)
            taken = {r.item_id for r in chosen}
            chosen += [self.resolve(e, explain=explain) for e in more if e[0] not in taken][
                : params.top_n - len(chosen)
            ]
        # The ranker learns from the user's next event: the best candidates' features, so the item
        # the user goes on to act on can be compared with the ones shown instead.
        if not remember:
            return Recommendations(view.user_id, tuple(chosen), cold_start)
        remembered = (
            [item for item, _ in top_k(totals, RANKER_MEMORY)] if learned else order[:RANKER_MEMORY]
        )
        return Recommendations(
            view.user_id, tuple(chosen), cold_start, tuple(blended.features(i) for i in remembered)
        )
