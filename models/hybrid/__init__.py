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

>>> from models.events import Event, EventType
>>> from models.mf import OnlineMF
>>> from models.state import StateParams
>>> sources = HybridSources(StateParams().weights, mf=OnlineMF(factors=4, seed=1))
>>> model = HybridRecommender(StateParams(), sources=sources)
>>> for n, (user, item) in enumerate([("a", "phone"), ("a", "case"), ("b", "phone")]):
...     model.learn(Event(f"e{n}", EventType.PURCHASE, user, 1e9 + n, item_id=item))
>>> [(s.item_id, s.source) for s in model.recommend("b", 1, {"phone"}, now=1e9 + 3)]
[('case', 'item_cf')]
"""

from __future__ import annotations

from models.hybrid.build import build_hybrid, build_sources
from models.hybrid.recommender import HybridRecommender
from models.hybrid.sources import (
    CANDIDATES_PER_SOURCE,
    CO_OCCURRING,
    EXTRA_SOURCES,
    FBT_ANTECEDENTS,
    FBT_CONTEXT_S,
    FBT_PAIRS_PER_ITEM,
    FOLLOWED,
    FOLLOWEE_ITEMS,
    MF_FACTORS,
    MF_NEGATIVES,
    MF_POOL,
    POPULAR_NOW,
    PROFILE_MATCH,
    SIMILAR_SHOPPERS,
    TASTE_MATCH,
    USERCF_ITEMS_PER_USER,
    USERCF_NEIGHBOUR_POOL,
    USERCF_USERS_PER_ITEM,
    HybridSources,
    Request,
    SourcePools,
    fbt_candidates,
    popular_pool,
    source_requests,
)

__all__ = [
    "CANDIDATES_PER_SOURCE",
    "CO_OCCURRING",
    "EXTRA_SOURCES",
    "FBT_ANTECEDENTS",
    "FBT_CONTEXT_S",
    "FBT_PAIRS_PER_ITEM",
    "FOLLOWED",
    "FOLLOWEE_ITEMS",
    "MF_FACTORS",
    "MF_NEGATIVES",
    "MF_POOL",
    "POPULAR_NOW",
    "PROFILE_MATCH",
    "SIMILAR_SHOPPERS",
    "TASTE_MATCH",
    "USERCF_ITEMS_PER_USER",
    "USERCF_NEIGHBOUR_POOL",
    "USERCF_USERS_PER_ITEM",
    "HybridRecommender",
    "HybridSources",
    "Request",
    "SourcePools",
    "build_hybrid",
    "build_sources",
    "fbt_candidates",
    "popular_pool",
    "source_requests",
]
