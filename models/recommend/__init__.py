"""Turn a user's state and every source's candidates into a ranked, explained top-N list.

* :mod:`.candidates`: the vocabulary (sources, candidates and their reasons, pools, lists);
* :mod:`.pools`: each personal source's candidates, raw scores with reasons (item-CF's
  ``r_ui = Σ_j a_uj · s_ij`` over the user's recent items j, social proof's
  ``w_action · 2^(−age / half-life)``, and the learnt sources' pools);
* :mod:`.blend`: each source's scores over its best for the user, weighed and added up;
* :mod:`.ranking`: the list: the blend's (or a learned ranker's) order, never an excluded item,
  trending then time-decayed popular items to fill (Gorse's "try sources in order until k"); a
  user with no usable history gets the fallbacks only and is marked ``cold_start``;
* :mod:`.diversify`: the category cap and the exploration slots;
* :mod:`.explain`: a chosen item's main source, per-source shares and reasons.

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

from models.recommend.blend import Blended, Scores, blend, blend_pools
from models.recommend.candidates import (
    DEFAULT_SOURCE_WEIGHTS,
    PERSONAL_SOURCES,
    Candidate,
    CandidateFeatures,
    Pool,
    Reason,
    Recommendations,
    RecommendedItem,
    RecommendParams,
    Source,
    excluded_items,
)
from models.recommend.pools import candidate_pools, source_pool, source_pools
from models.recommend.ranking import Ranking, recommend

__all__ = [
    "DEFAULT_SOURCE_WEIGHTS",
    "PERSONAL_SOURCES",
    "Blended",
    "Candidate",
    "CandidateFeatures",
    "Pool",
    "Ranking",
    "Reason",
    "RecommendParams",
    "Recommendations",
    "RecommendedItem",
    "Scores",
    "Source",
    "blend",
    "blend_pools",
    "candidate_pools",
    "excluded_items",
    "recommend",
    "source_pool",
    "source_pools",
]
