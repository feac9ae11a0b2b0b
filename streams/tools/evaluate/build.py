"""The models ``socialrec eval`` replays: the worker's own, configured as the worker, and the
baselines they are measured against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Final

from models.evaluation import (
    EvalParams,
    ItemCFRecommender,
    PopularityRecommender,
    Recommender,
)
from models.events import Event
from models.recommend import PERSONAL_SOURCES, RecommendParams, Source
from streams.config import Settings
from streams.tools.evaluate.reading import InputError

if TYPE_CHECKING:
    from models.evaluation import AnswersAhead
    from models.hybrid import SourcePools
    from models.state import StateParams
    from streams.tools.eval_sources import SourcesProcess

#: Models ``--models`` can name. The first named is the one reported; popularity is always
#: the baseline; any others are reported beside it under ``compared``.
MODEL_NAMES: Final = ("hybrid", "hybrid+ranker", "itemcf")


@dataclass
class ReplayPlan:
    """What the replay will do, known before the models are built: the events, which are
    requests (``is_test``) and learnt (``learn_test``), and where to register processes that
    must stop with the replay; how it evaluates (``params``) and the catalogue it adds to the
    stream's items (both needed to ask models ahead in a second process)."""

    events: Sequence[Event]
    is_test: Callable[[int, Event], bool] | None
    learn_test: bool
    resources: ExitStack
    params: EvalParams = field(default_factory=EvalParams)
    catalog: Sequence[str] = ()


def build_models(
    settings: Settings,
    names: Sequence[str] = ("hybrid",),
    catalog: Mapping[str, Mapping[str, object]] | None = None,
    *,
    plan: ReplayPlan | None = None,
    jobs: int = 1,
    fixed_knobs: bool = False,
    ablation: bool = False,
) -> list[Recommender]:
    """The worker's models, configured exactly as the worker, then the popularity baseline.

    ``hybrid`` is every source behind the fixed blend; ``hybrid+ranker`` the same sources
    behind the online learned ranker; ``itemcf`` item-CF and social proof alone. Content
    needs ``catalog`` (item features); without one the hybrids run without it.

    With ``jobs=2`` and a ``plan``, the hybrids' MF, content, user-CF and FBT run in one
    second process (:mod:`streams.tools.eval_sources`), shared by every hybrid (their sources are
    the same); the figures are those of ``jobs=1``.

    The hybrids learn their knobs from the stream (blend, popularity half-life, shrinkage:
    :mod:`models.knobs`) unless ``fixed_knobs``. Returned: the first model, the decayed
    popularity baseline (with the learned half-life, or the configured one), plain
    popularity, the item-kNN baseline, the other models, and with ``ablation`` the first
    hybrid without each of its sources in turn.
    """
    from models.itemknn import ItemKNN
    from streams.runtime.worker import state_params

    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown or not names:
        raise InputError(f"--models takes a comma-separated list of {', '.join(MODEL_NAMES)}")
    state = state_params(settings)
    if fixed_knobs:
        state = replace(state, shrinkage_scale=0.0)
    baselines = partial(
        _baselines, state, half_life=settings.popularity_half_life_s, fixed_knobs=fixed_knobs
    )
    recommend_params = _recommend_params(settings)
    shared: SourcesProcess | None = None
    if jobs > 1 and plan is not None and any(n != "itemcf" for n in names):
        shared = _sources_process(plan, state, catalog, recommend_params, baselines, fixed_knobs)
    models = [_model(name, state, recommend_params, catalog, shared, fixed_knobs) for name in names]
    # With a second process, the baselines are asked there, ahead of the replay (the same
    # answers: models.evaluation.AnswersAhead); the item-kNN is then the hybrid's own source.
    decayed, *others = (
        shared.asked(["popularity", "popularity-plain", "itemknn"])
        if shared is not None
        else [*baselines(), ItemKNN(state.weights)]
    )
    first = models[0]
    ablations = _ablations(first, catalog, fixed_knobs) if ablation else []
    return [first, decayed, *others, *models[1:], *ablations]


def _recommend_params(settings: Settings) -> RecommendParams:
    """How the worker ranks, as the replay asks for it."""
    return RecommendParams(
        top_n=settings.top_n,
        exclude_items=settings.exclude_items,
        exclude_seen=True,  # the protocol: never recommend what the user already touched
        half_life_s=settings.popularity_half_life_s,
        category_cap=settings.category_cap,  # applied where the catalogue gives categories
        explore_slots=settings.explore_slots,
    )


def _baselines(state: StateParams, *, half_life: float, fixed_knobs: bool) -> list[Recommender]:
    """Decayed popularity (learned half-life, or the configured one), plain popularity."""
    from models.baselines import LearnedPopularityRecommender

    return [
        PopularityRecommender(state.weights, half_life_s=half_life)
        if fixed_knobs
        else LearnedPopularityRecommender(state.weights, start_half_life_s=half_life),
        PopularityRecommender(state.weights, half_life_s=math.inf, name="popularity-plain"),
    ]


def _sources_process(
    plan: ReplayPlan,
    state: StateParams,
    catalog: Mapping[str, Mapping[str, object]] | None,
    recommend_params: RecommendParams,
    baselines: Callable[[], list[Recommender]],
    fixed_knobs: bool,
) -> SourcesProcess:
    """The second process the hybrids' sources (and the baselines, asked ahead) run in,
    registered to stop with the replay."""
    from models.hybrid import build_sources
    from streams.tools.eval_sources import SourcesProcess

    return plan.resources.enter_context(
        SourcesProcess(
            plan.events,
            lambda: build_sources(state, catalog, knn=not fixed_knobs),
            recommend_params.exclude_items,
            is_test=plan.is_test,
            learn_test=plan.learn_test,
            ask=partial(_ask_ahead, plan, state, baselines),
        )
    )


def _ask_ahead(
    plan: ReplayPlan,
    state: StateParams,
    baselines: Callable[[], list[Recommender]],
    sources: SourcePools,
) -> AnswersAhead:
    """In the sources process: the baselines, the item-kNN shared with the hybrid's source."""
    from models.evaluation import AnswersAhead
    from models.hybrid import HybridSources
    from models.itemknn import ItemKNN

    knn = sources.knn if isinstance(sources, HybridSources) else None
    models = [*baselines(), knn or ItemKNN(state.weights)]
    return AnswersAhead(
        models, plan.events, plan.params, plan.catalog, learnt_elsewhere=[knn] if knn else []
    )


def _model(
    name: str,
    state: StateParams,
    recommend_params: RecommendParams,
    catalog: Mapping[str, Mapping[str, object]] | None,
    shared: SourcesProcess | None,
    fixed_knobs: bool,
) -> Recommender:
    """One of :data:`MODEL_NAMES`, configured as the worker."""
    from models.hybrid import build_hybrid
    from streams.store import ReadParams

    if name == "itemcf":
        read = ReadParams()
        return ItemCFRecommender(
            state,
            recommend_params,
            recent_items=read.recent_items,
            neighbours=read.neighbours,
            popular_items=read.popular,
        )
    return build_hybrid(
        state,
        recommend_params,
        catalog=catalog,
        learned_ranker=name == "hybrid+ranker",
        sources=shared.reader() if shared is not None else None,
        learn_knobs=not fixed_knobs,
        followee_items=0,  # with learned knobs the followees source reads them
    )


def _ablations(
    first: Recommender, catalog: Mapping[str, Mapping[str, object]] | None, fixed_knobs: bool
) -> list[Recommender]:
    """The hybrid without each of its sources in turn (nothing for another model). Only the
    sources this hybrid has: the learned-only ones (popularity as a blended source, item-kNN)
    exist only with learned knobs, content only with a catalogue."""
    from models.ablation import AblatedHybrid
    from models.hybrid import HybridRecommender

    if not isinstance(first, HybridRecommender):
        return []
    absent = {Source.POPULAR, Source.ITEM_KNN, Source.FOLLOWEES} if fixed_knobs else set()
    if not catalog:
        absent.add(Source.CONTENT)
    return [AblatedHybrid(first, source) for source in PERSONAL_SOURCES if source not in absent]
