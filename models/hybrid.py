"""Every source behind one assembly step, in one process: what ``socialrec eval`` replays.

The worker keeps each model's state in Redis (streams/sources/); this class holds the same
pure models in memory and asks them the same questions, so the evaluation measures the code
the worker runs:

* item-CF (:mod:`models.cooccurrence`), social proof and popularity
  (:class:`models.state.MemoryState`), via :class:`models.evaluation.ItemCFRecommender`;
* online MF (:mod:`models.mf`), content (:mod:`models.content`, only with a catalogue),
  user-CF (:mod:`models.usercf`) and frequently-bought-together (:mod:`models.fbt`);
* the assembly, :func:`models.recommend.recommend`: the fixed blend, or the learned ranker
  (:mod:`models.ranker`) when one is given. The ranker learns exactly as in the worker: the
  items of the last list shown to a user are labelled by the user's next item event.

>>> from models.events import ITEM_TYPES, Event, EventType
>>> from models.state import StateParams
>>> sources = HybridSources(StateParams().weights, mf=OnlineMF(factors=4, seed=1))
>>> model = HybridRecommender(StateParams(), sources=sources)
>>> for n, (user, item) in enumerate([("a", "phone"), ("a", "case"), ("b", "phone")]):
...     model.learn(Event(f"e{n}", EventType.PURCHASE, user, 1e9 + n, item_id=item))
>>> [(s.item_id, s.source) for s in model.recommend("b", 1, {"phone"}, now=1e9 + 3)]
[('case', 'item_cf')]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import NamedTuple, Protocol

from models.content import ContentModel
from models.evaluation import ItemCFRecommender, RequestSelector, Scored
from models.events import ITEM_TYPES, Event, EventType
from models.fbt import BasketTracker, basket_candidates
from models.followees import FolloweeItems
from models.itemknn import ItemKNN
from models.knobs import LearnedKnobs
from models.mf import OnlineMF
from models.popularity import decayed_score
from models.ranker import OnlineRanker
from models.recommend import (
    Blended,
    Candidate,
    CandidateFeatures,
    Pool,
    Reason,
    RecommendParams,
    Source,
    blend_pools,
    excluded_items,
    recommend,
    source_pool,
)
from models.recommend.pools import personal_pools, scored_pool
from models.state import PopularView, StateParams, UserView
from models.usercf import UserCF

#: Candidates each source proposes per request (the assembly ranks their union).
CANDIDATES_PER_SOURCE = 50

#: Source sizes, shared with the worker (streams/sources/factory.py) so the evaluation replays
#: the configuration that runs. User-CF's bounds keep a request at about a millisecond.
MF_FACTORS = 32
MF_NEGATIVES = 4
MF_POOL = 2_000  # recent positives that popularity-sampled negatives are drawn from
USERCF_ITEMS_PER_USER = 30
USERCF_USERS_PER_ITEM = 50
USERCF_NEIGHBOUR_POOL = 30  # the worker reads the rows of the 30 users with most items in common
FOLLOWEE_ITEMS = 5  # followees' latest items as social proof (eval: the `followees` source)


#: The one reason of a candidate from MF, content or user-CF. Shared, not built per candidate
#: (hundreds per request): a lone reason's contribution is always its source's whole share
#: (see models.recommend.recommend), so the value here only has to be positive.
TASTE_MATCH = (Reason(None, 1.0, action="taste_match"),)
PROFILE_MATCH = (Reason(None, 1.0, action="profile_match"),)
SIMILAR_SHOPPERS = (Reason(None, 1.0, action="similar_shoppers"),)
POPULAR_NOW = (Reason(None, 1.0, action="popular"),)
CO_OCCURRING = (Reason(None, 1.0, action="bought_together_by_others"),)
FOLLOWED = (Reason(None, 1.0, action="followees_recent"),)


class Request(NamedTuple):
    """One request as read: the user, the time, their view, every source's pool and the
    popular items."""

    user_id: str
    now: float
    view: UserView
    pools: dict[Source, Pool]
    popular: PopularView


#: FBT context as the worker's (streams.sources.fbt.RedisFBT): the latest basket's last items,
#: while it is at most a day old.
FBT_CONTEXT_S = 86_400.0
FBT_ANTECEDENTS = 10
FBT_PAIRS_PER_ITEM = 50


def fbt_candidates(tracker: BasketTracker, user_id: str, k: int, now: float) -> list[Candidate]:
    """Items that complete the user's current basket (:func:`models.fbt.basket_candidates`),
    each explained by the basket items behind it.

    >>> bt = BasketTracker()
    >>> for user in ("ann", "bob"):
    ...     _ = bt.add(user, "phone", 0.0); _ = bt.add(user, "case", 1.0)
    >>> _ = bt.add("cy", "novel", 0.0); _ = bt.add("dee", "phone", 5.0)
    >>> [(c.item_id, c.reasons[0].item_id) for c in fbt_candidates(bt, "dee", 5, now=6.0)]
    [('case', 'phone')]
    """
    baskets = tracker.users.get(user_id)
    if not baskets or now - baskets[-1].last_ts > FBT_CONTEXT_S:
        return []
    basket = baskets[-1].items[-FBT_ANTECEDENTS:]
    rules = {a: tracker.rules_for(a, FBT_PAIRS_PER_ITEM, min_count=2) for a in basket}
    return [
        Candidate(c.item_id, c.score, tuple(Reason(a, v) for a, v in c.because))
        for c in basket_candidates(basket, rules, k)
    ]


class SourcePools(Protocol):
    """Where a :class:`HybridRecommender` gets the pools of its extra sources: learnt here
    (:class:`HybridSources`), or computed ahead by another process that replays the same
    events (``streams.eval_sources``)."""

    def learn(self, event: Event) -> None: ...

    def pools(self, user_id: str, excluded: AbstractSet[str], now: float) -> dict[Source, Pool]:
        """The sources' candidates for the user, as pools, in :data:`EXTRA_SOURCES` order."""
        ...


#: The sources beside item-CF and social proof, in the order their pools are blended.
EXTRA_SOURCES: tuple[Source, ...] = (
    Source.MF,
    Source.CONTENT,
    Source.USER_CF,
    Source.FBT,
    Source.ITEM_KNN,
)


class HybridSources:
    """MF, content, user-CF and FBT in memory: each learns every item event with its weight
    and proposes its best :data:`CANDIDATES_PER_SOURCE` for a request.

    >>> from models.events import EventType
    >>> sources = HybridSources({EventType.PURCHASE: 5.0}, fbt=BasketTracker())
    >>> bought = [("ann", "phone"), ("ann", "case"), ("bob", "phone"), ("bob", "case"),
    ...           ("cy", "novel"), ("dee", "phone")]
    >>> for n, (user, item) in enumerate(bought):
    ...     sources.learn(Event(f"e{n}", EventType.PURCHASE, user, 1e9 + n, item_id=item))
    >>> {source: list(pool) for source, pool in sources.pools("dee", {"phone"}, 1e9 + 6).items()}
    {<Source.FBT: 'fbt'>: ['case']}
    """

    def __init__(
        self,
        weights: Mapping[EventType, float],
        *,
        mf: OnlineMF | None = None,
        content: ContentModel | None = None,
        usercf: UserCF | None = None,
        fbt: BasketTracker | None = None,
        knn: ItemKNN | None = None,
    ) -> None:
        self.weights = dict(weights)
        self.mf = mf
        self.content = content
        self.usercf = usercf
        self.fbt = fbt
        self.knn = knn

    def learn(self, event: Event) -> None:
        item = event.item_id
        if item is None:
            return
        weight = float(self.weights.get(event.type, 0.0))
        if self.mf is not None:
            self.mf.learn(event.user_id, item, weight)
        if self.content is not None and item in self.content:
            self.content.update_profile(event.user_id, item, weight, event.ts)
        if self.usercf is not None:
            self.usercf.add_weight(event.user_id, item, weight, event.ts)
        if self.fbt is not None:
            self.fbt.add(event.user_id, item, event.ts, event.type)
        if self.knn is not None:
            self.knn.learn(event)

    def pools(self, user_id: str, excluded: AbstractSet[str], now: float) -> dict[Source, Pool]:
        k = CANDIDATES_PER_SOURCE
        pools: dict[Source, Pool] = {}
        if self.mf is not None:
            found = self.mf.top_k(user_id, k, excluded)
            pools[Source.MF] = scored_pool(Source.MF, found, TASTE_MATCH)
        if self.content is not None:
            found = self.content.top_k(user_id, k, excluded, now=now)
            pools[Source.CONTENT] = scored_pool(Source.CONTENT, found, PROFILE_MATCH)
        if self.usercf is not None:
            found = self.usercf.top_k(user_id, k, excluded)
            pools[Source.USER_CF] = scored_pool(Source.USER_CF, found, SIMILAR_SHOPPERS)
        if self.fbt is not None:
            basket = fbt_candidates(self.fbt, user_id, k, now)
            pools[Source.FBT] = source_pool(
                Source.FBT, (c for c in basket if c.item_id not in excluded)
            )
        if self.knn is not None:
            found = self.knn.top_k(user_id, k, excluded, now)
            pools[Source.ITEM_KNN] = scored_pool(Source.ITEM_KNN, found, CO_OCCURRING)
        return {source: pool for source, pool in pools.items() if pool}


def source_requests(
    events: Iterable[Event],
    sources: SourcePools,
    exclude_items: AbstractSet[str] = frozenset(),
    *,
    is_test: Callable[[int, Event], bool] | None = None,
    learn_test: bool = True,
    on_request: Callable[[Event, AbstractSet[str]], None] | None = None,
    on_learn: Callable[[Event], None] | None = None,
) -> Iterator[tuple[str, float, int, dict[Source, Pool]]]:
    """Replay ``events`` through ``sources`` with the protocol of
    :func:`models.evaluation.replay`, yielding each request's ``(user, time, hash of the
    excluded set, pools)`` before the event is learnt. The replay excludes every item the user
    touched, which covers everything the user's state excludes (bought, hidden, seen), so the
    excluded set is the touched items and ``exclude_items``. ``on_request(event, touched)`` is
    called at each request after its pools (before anything learns the event), ``on_learn``
    with each event the sources learn: to ask other models the same requests alongside
    (:class:`models.evaluation.AnswersAhead`).

    >>> from models.events import EventType
    >>> evs = [Event(f"e{n}", EventType.PURCHASE, u, 1e9 + n, item_id=i) for n, (u, i)
    ...        in enumerate([("a", "phone"), ("a", "case"), ("b", "phone"), ("b", "case")])]
    >>> [(user, sorted(p)) for user, _, _, p in source_requests(evs, HybridSources(
    ...     {EventType.PURCHASE: 5.0}, usercf=UserCF()))]
    [('a', []), ('b', [<Source.USER_CF: 'user_cf'>])]
    """
    requests = RequestSelector()
    for position, event in enumerate(events):
        test = is_test is None or is_test(position, event)
        if test and requests.is_request(event):
            excluded = frozenset(requests.touched_by(event.user_id)) | exclude_items
            pools = sources.pools(event.user_id, excluded, event.ts)
            if on_request is not None:
                on_request(event, requests.touched_by(event.user_id))
            yield event.user_id, event.ts, hash(excluded), pools
        if not test or learn_test:
            sources.learn(event)
            if on_learn is not None:
                on_learn(event)
        requests.advance(event)


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
        recent_items: int = 20,
        neighbours: int = 20,
        popular_items: int = 100,
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
        self._choices: dict[str, Blended] = {}
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
            best = [(i, p) for i, p in popular.items if i not in excluded]
            pools[Source.POPULAR] = scored_pool(
                Source.POPULAR, best[:CANDIDATES_PER_SOURCE], POPULAR_NOW
            )
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
            self._choices[user_id] = blended
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
        state = self.base.state
        landmark = state.landmark or 0.0
        wanted = [i for i in item_ids if i in blended.totals and i not in excluded]
        if self.ranker is not None and view.recent:
            personal = dict(
                zip(wanted, self.ranker.score([blended.features(i) for i in wanted]), strict=True)
            )
        else:
            personal = {i: blended.totals[i] for i in wanted}
        scores = []
        if self.knobs is not None:
            popularity = self.knobs.popularity
            for item in item_ids:
                if item in personal:
                    value = personal[item]
                    scores.append(1.0 + value / (1.0 + value))
                elif item in excluded:
                    scores.append(0.0)
                else:
                    p = popularity.score(item, now)
                    scores.append(p / (1.0 + p))
            return scores
        for item in item_ids:
            if item in personal:
                value = personal[item]
                scores.append(1.0 + value / (1.0 + value))
            elif item in excluded or item not in state.popularity.scores:
                scores.append(0.0)
            else:
                p = decayed_score(
                    state.popularity.scores[item],
                    landmark=landmark,
                    at=now,
                    half_life_s=self.params.half_life_s,
                )
                scores.append(p / (1.0 + p))
        return scores


def build_sources(
    state_params: StateParams,
    catalog: Mapping[str, Mapping[str, object]] | None = None,
    seed: int = 0,
    knn: bool = False,
) -> HybridSources:
    """MF, content (with a catalogue), user-CF and FBT, configured as the worker configures
    them; with ``knn``, the uncapped item-kNN too (a source only where the blend is learned:
    the fixed blend has no weight for it)."""
    content = None
    if catalog:
        content = ContentModel()
        for item_id, record in catalog.items():
            content.add_item({**record, "item_id": item_id})  # already validated
    return HybridSources(
        state_params.weights,
        mf=OnlineMF(
            factors=MF_FACTORS,
            negatives=MF_NEGATIVES,
            sampling="popularity",
            pool_size=MF_POOL,
            seed=seed,
        ),
        content=content,
        usercf=UserCF(
            items_per_user=USERCF_ITEMS_PER_USER,
            users_per_item=USERCF_USERS_PER_ITEM,
            weights=dict(state_params.weights),
            neighbour_pool=USERCF_NEIGHBOUR_POOL,
        ),
        fbt=BasketTracker(),
        knn=ItemKNN(state_params.weights) if knn else None,
    )


def build_hybrid(
    state_params: StateParams,
    recommend_params: RecommendParams | None = None,
    *,
    catalog: Mapping[str, Mapping[str, object]] | None = None,
    learned_ranker: bool = False,
    seed: int = 0,
    sources: SourcePools | None = None,
    learn_knobs: bool = False,
    followee_items: int = 0,
    name: str | None = None,
) -> HybridRecommender:
    """The hybrid with every source configured as the worker configures it (``sources``, if
    given, stands for :func:`build_sources` of the same arguments). With ``learn_knobs`` the
    blend and the popularity half-life are learned from the stream (:mod:`models.knobs`),
    starting from ``recommend_params``'; the shrinkage is learned if ``state_params`` asks
    (``shrinkage_scale``)."""
    params = recommend_params or RecommendParams(half_life_s=state_params.half_life_s)
    knobs = (
        LearnedKnobs.start(dict(params.source_weights), half_life_s=params.half_life_s)
        if learn_knobs
        else None
    )
    categories = {
        item_id: str(record["category"])
        for item_id, record in (catalog or {}).items()
        if record.get("category")
    }
    return HybridRecommender(
        state_params,
        recommend_params,
        sources=(
            build_sources(state_params, catalog, seed, knn=learn_knobs)
            if sources is None
            else sources
        ),
        ranker=OnlineRanker() if learned_ranker else None,
        categories=categories or None,
        name=name or ("hybrid+ranker" if learned_ranker else "hybrid"),
        knobs=knobs,
        followee_items=followee_items,
        followees=FolloweeItems(state_params.weights) if learn_knobs else None,
    )
