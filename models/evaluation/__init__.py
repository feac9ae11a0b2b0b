"""Offline quality of the recommender: ranking metrics and a test-then-train replay.

The replay (:func:`replay`) feeds a time-ordered event stream, in-process, through models that
follow the small :class:`Recommender` protocol. Before *learning* an event that is a fresh
interaction (an item event, not ``hide``, on an item its user has never touched, by a user with
at least one earlier event) it asks each model for that user's top ``k``, excluding every item
the user already touched, and scores the list against the item the user actually chose next.
Every model then learns the event. This is the "prequential" (test-then-train) protocol of
stream learning: each event is a test case exactly once, the model never sees its own answer,
and there is no separate training set to leak from.

:mod:`.metrics` holds the measures, :mod:`.recommenders` the protocol and the two models that
define it, :mod:`.reports` what a replay reports, :mod:`.replay` the replay and the splits.
"""

from __future__ import annotations

from models.evaluation.metrics import (
    coverage,
    gini,
    hit_rate,
    long_tail_share,
    mrr,
    ndcg,
    ndcg_gain,
    pooled_auc,
    rank_of,
    request_auc,
    roc_points,
    short_head,
)
from models.evaluation.recommenders import (
    ItemCFRecommender,
    PopularityRecommender,
    Recommender,
    Scored,
)
from models.evaluation.replay import (
    KNOWN_SOURCES,
    TARGET_TYPES,
    Answer,
    AnswersAhead,
    RequestSelector,
    catalogue_of,
    fold_of,
    replay,
    summarise,
    temporal_cut,
)
from models.evaluation.reports import (
    EvalParams,
    GroupReport,
    ModelReport,
    ReplayReport,
    SourceMetrics,
    Trace,
)

__all__ = [
    "KNOWN_SOURCES",
    "TARGET_TYPES",
    "Answer",
    "AnswersAhead",
    "EvalParams",
    "GroupReport",
    "ItemCFRecommender",
    "ModelReport",
    "PopularityRecommender",
    "Recommender",
    "ReplayReport",
    "RequestSelector",
    "Scored",
    "SourceMetrics",
    "Trace",
    "catalogue_of",
    "coverage",
    "fold_of",
    "gini",
    "hit_rate",
    "long_tail_share",
    "mrr",
    "ndcg",
    "ndcg_gain",
    "pooled_auc",
    "rank_of",
    "replay",
    "request_auc",
    "roc_points",
    "short_head",
    "summarise",
    "temporal_cut",
]
