"""The worker's full recommender in-process (:class:`HybridRecommender`): the state's item-CF and
social proof, the extra sources' pools (:mod:`.sources`), the learned knobs and the assembly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace

from models.evaluation import ItemCFRecommender, Scored
from models.events import ITEM_TYPES, Event
from models.followees import FolloweeItems
from models.hybrid.sources import (
    CANDIDATES_PER_SOURCE,
    FOLLOWED,
    HybridSources,
    Request,
    SourcePools,
    popular_pool,
)
from models.knobs import LearnedKnobs
from models.popularity import decayed_score
from models.ranker import OnlineRanker
from models.recommend import (
    Blended,
    CandidateFeatures,
    Pool,
    RecommendParams,
    Scores,
    Source,
    blend_pools,
    excluded_items,
    recommend,
)
from models.recommend.pools import personal_pools, scored_pool
from models.state import (
    NEIGHBOURS_READ,
    POPULAR_READ,
    RECENT_READ,
    PopularView,
    StateParams,
    UserView,
)


class HybridRecommender:
    """The worker's full recommender in-process, for the evaluation's replay protocol."""

    def __init__(
        self,
        state_params: StateParams,
        recommend_params: RecommendParams | None = None,
        *,
        sources: SourcePools | None = None,
        ranker: OnlineRanker | None = None,
        categories: Mapping[str, str] | None = None,
        name: str = "hybrid",
        recent_items: int = RECENT_READ,
        neighbours: int = NEIGHBOURS_READ,
        popular_items: int = POPULAR_READ,
        knobs: LearnedKnobs | None = None,
        followee_items: int = 0,
        followees: FolloweeItems | None = None,
    ) -> None:
        # The followees source (with learned knobs: its decay is the learned half-life).
        self.followees = followees
        self.base = ItemCFRecommender(
            state_params,
            recommend_params,
            recent_items=recent_items,
            neighbours=neighbours,
            popular_items=popular_items,
            followee_items=followee_items,
        )
        # Learned knobs (None: the configured blend and half-life, fixed).
        self.knobs = knobs
        self.popular_items = popular_items
        # Per user: the candidates of the last list, until the user's next item event teaches
        # the blend (only with knobs).
        self._choices: dict[str, Scores] = {}
        # The last request as read: (user, time, view, pools, popular items), shared with the
        # ablations (models.ablation), which rank the same candidates without one source.
        self.request: Request | None = None
        self.params = self.base.params
        self.weights = state_params.weights
        self.sources = HybridSources(state_params.weights) if sources is None else sources
        self.ranker = ranker
        self.categories = categories  # for the category cap, as the worker reads them
        self.name = name
        # Per user: the last list's remembered candidates (what the ranker learns from).
        self._shown: dict[str, tuple[CandidateFeatures, ...]] = {}
        self._params_for_k: dict[int, RecommendParams] = {}
        # The last request's candidates, reused by candidate_scores for the same user and time.
        self._last: tuple[str, float, UserView, Blended] | None = None
        self._weights = dict(self.params.source_weights)

    # ---- learning ----------------------------------------------------------------------------
    def learn(self, event: Event) -> None:
        self._last = None
        self.base.learn(event)
        if self.followees is not None:
            self.followees.learn(event)
        item = event.item_id
        if item is None:
            return
        shown = self._shown.pop(event.user_id, None)
        if self.ranker is not None and shown is not None and self.weights.get(event.type, 0) > 0:
            self.ranker.learn(shown, item)
        knobs = self.knobs
        if knobs is not None and event.type in ITEM_TYPES:
            weight = self.base.state.params.weight(event.type)
            knobs.learn_event(item, weight, event.ts)
            chosen = self._choices.pop(event.user_id, None)
            if chosen is not None and weight > 0:
                knobs.learn_choice(chosen, item)
        self.sources.learn(event)

    # ---- the request's parameters --------------------------------------------------------------
    def params_for(self, k: int) -> RecommendParams:
        """The assembly's parameters for a list of ``k``; with knobs, the learned blend and
        the learned half-life for social proof."""
        params = self._params_for_k.get(k)
        if params is None:
            params = self._params_for_k[k] = replace(self.params, top_n=k)
        knobs = self.knobs
        if knobs is None:
            return params
        return replace(
            params,
            source_weights=tuple(knobs.blend.weights.items()),
            social_half_life_s=knobs.popularity.half_life_s,
        )

    def popular_for(self, now: float) -> PopularView:
        """The popular fallback: the state's, or with knobs the learned popularity's (as
        decayed scores at ``now``, so ``now`` is their landmark)."""
        if self.knobs is None:
            return self.base.popular_view()
        return PopularView(tuple(self.knobs.popularity.top(self.popular_items, now)), now)

    def popularity_at(self, item: str, now: float) -> float:
        """``item``'s popularity decayed to ``now``, from the same source as
        :meth:`popular_for` (0 for an item the state's popularity does not hold)."""
        if self.knobs is not None:
            return self.knobs.popularity.score(item, now)
        state = self.base.state
        if item not in state.popularity.scores:
            return 0.0
        stored, landmark = state.popularity.scores[item], state.landmark or 0.0
        return decayed_score(stored, landmark=landmark, at=now, half_life_s=self.params.half_life_s)

    # ---- candidates ----------------------------------------------------------------------------
    def _blend(self, view: UserView, now: float) -> tuple[dict[Source, Pool], Blended]:
        """Every source's candidates for the user and their blend, remembered for
        :meth:`candidate_scores` at the same request."""
        params = self.params_for(self.params.top_n)
        excluded = excluded_items(view, params)
        pools = personal_pools(view, params, now)
        pools.update(self.sources.pools(view.user_id, excluded, now))
        popular = self.popular_for(now)
        if self.followees is not None and self.knobs is not None:
            found = self.followees.top_k(
                view.user_id,
                CANDIDATES_PER_SOURCE,
                excluded,
                now=now,
                half_life_s=self.knobs.popularity.half_life_s,
            )
            pools[Source.FOLLOWEES] = scored_pool(Source.FOLLOWEES, found, FOLLOWED)
        if self.knobs is not None:
            # Popularity as a source of its own, so the blend can learn how much it is worth.
            pools[Source.POPULAR] = popular_pool(popular, excluded)
        pools = {source: pool for source, pool in pools.items() if pool}
        weights = self._weights if self.knobs is None else self.knobs.blend.weights
        blended = blend_pools(pools, weights, len(view.recent))
        self._last = (view.user_id, now, view, blended)
        self.request = Request(view.user_id, now, view, pools, popular)
        return pools, blended

    def assemble(
        self, request: Request, pools: dict[Source, Pool], blended: Blended, params: RecommendParams
    ) -> list[Scored]:
        """The list the assembly makes of these candidates (the ablations call it too)."""
        recs = recommend(
            request.view,
            request.popular,
            params,
            now=request.now,
            ranker=self.ranker,
            categories=self.categories,
            pools=pools,
            blended=blended,
            remember=self.ranker is not None,
            explain=False,  # the replay reads items, scores and sources only
        )
        if self.ranker is not None:
            self._shown[request.user_id] = recs.features
        return [Scored(r.item_id, r.score, r.source.value) for r in recs.items]

    def recommend(
        self, user_id: str, k: int, exclude: AbstractSet[str], now: float
    ) -> list[Scored]:
        view = self.base.view_for(user_id, exclude)
        pools, blended = self._blend(view, now)
        if self.knobs is not None:
            self._choices[user_id] = blended.scores()
        assert self.request is not None
        return self.assemble(self.request, pools, blended, self.params_for(k))

    def candidate_scores(self, user_id: str, item_ids: Sequence[str], now: float) -> list[float]:
        """The order :meth:`recommend` would give with no limit on its length: every source's
        candidates by the ranker's (or the blend's) score, squashed into (1, 2); then every
        item in the popularity ranking by decayed popularity, in (0, 1); excluded items and
        the rest 0.

        Only the sources' own candidates are scored (as in the worker): MF and content could
        score any item, but an item no source proposes is never shown above a popular one.
        """
        last = self._last
        if last is not None and last[0] == user_id and last[1] == now:
            view, blended = last[2], last[3]
        else:
            view = self.base.view_for(user_id, frozenset())
            _, blended = self._blend(view, now)
        return self.scores_of(view, blended, item_ids, now)

    def scores_of(
        self, view: UserView, blended: Blended, item_ids: Sequence[str], now: float
    ) -> list[float]:
        """:meth:`candidate_scores` of given candidates (the ablations call it too)."""
        excluded = excluded_items(view, self.params)
        wanted = [i for i in item_ids if i in blended.totals and i not in excluded]
        if self.ranker is not None and view.recent:
            personal = dict(
                zip(wanted, self.ranker.score([blended.features(i) for i in wanted]), strict=True)
            )
        else:
            personal = {i: blended.totals[i] for i in wanted}
        scores = []
        for item in item_ids:
            if item in personal:
                value = personal[item]
                scores.append(1.0 + value / (1.0 + value))
            elif item in excluded:
                scores.append(0.0)
            else:
                p = self.popularity_at(item, now)
                scores.append(p / (1.0 + p))
        return scores
