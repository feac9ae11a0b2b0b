"""The hybrid and its sources configured as the worker configures them (the sizes are
:mod:`.sources`'): what ``socialrec eval`` builds.
"""

from __future__ import annotations

from collections.abc import Mapping

from models.content import ContentModel
from models.fbt import BasketTracker
from models.followees import FolloweeItems
from models.hybrid.recommender import HybridRecommender
from models.hybrid.sources import (
    MF_FACTORS,
    MF_NEGATIVES,
    MF_POOL,
    USERCF_ITEMS_PER_USER,
    USERCF_NEIGHBOUR_POOL,
    USERCF_USERS_PER_ITEM,
    HybridSources,
    SourcePools,
)
from models.itemknn import ItemKNN
from models.knobs import LearnedKnobs
from models.mf import OnlineMF
from models.ranker import OnlineRanker
from models.recommend import RecommendParams
from models.state import StateParams
from models.usercf import UserCF


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
