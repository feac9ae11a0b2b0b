"""One evaluation run: the replay (full, temporal split or K-fold by user) and its summary as
the JSON object ``socialrec eval --json`` prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Final

from models.evaluation import (
    EvalParams,
    ModelReport,
    Recommender,
    ReplayReport,
    fold_of,
    replay,
    summarise,
    temporal_cut,
)
from models.events import Event, EventType
from streams.tools.evaluate.build import ReplayPlan

#: Length of the evaluated lists (HR@10, NDCG@10), whatever SOCIALREC_TOP_N the worker uses.
EVAL_K: Final = 10
#: The bound on a file's timestamps, either side of 1970: 10^11 s is over 3,000 years, so any

#: Metrics shown and averaged: (JSON key with k filled in, ModelReport attribute).
METRICS: Final = (
    ("hr@{k}", "hr"),
    ("ndcg@{k}", "ndcg"),
    ("mrr", "mrr"),
    ("auc", "auc"),
    ("auc_warm", "auc_warm"),
    ("auc_pooled", "auc_pooled"),
    ("coverage", "coverage"),
    ("gini", "gini"),
    ("long_tail", "long_tail"),
)
SOURCE_METRICS: Final = (("hr@{k}", "hr"), ("ndcg@{k}", "ndcg"), ("mrr", "mrr"))


@dataclass
class Outcome:
    """Everything the output needs: the JSON object and the replay (with traces for plots)."""

    summary: dict[str, Any]
    report: ReplayReport
    elapsed_s: float


def evaluate(
    events: Sequence[Event],
    make_models: Callable[[ReplayPlan], list[Recommender]],
    *,
    params: EvalParams,
    split: str | None = None,
    train_fraction: float = 0.8,
    frozen: bool = False,
    folds: int | None = None,
    catalog: Sequence[str] = (),
    on_progress: Callable[[int, int], None] | None = None,
) -> Outcome:
    """Full replay, temporal split or K-fold by user; ``on_progress(done, total)`` events.

    K-fold is one replay whose requests are grouped by the user's fold (see
    :func:`models.evaluation.replay` for why that is exactly the K replays).

    >>> from models.evaluation import ItemCFRecommender, PopularityRecommender
    >>> from models.state import StateParams
    >>> evs = [Event(f"e{n}", EventType.VIEW, u, 1e9 + n, item_id=i)
    ...        for n, (u, i) in enumerate([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")])]
    >>> models = lambda _plan: [ItemCFRecommender(StateParams()), PopularityRecommender()]
    >>> out = evaluate(evs, models, params=EvalParams())
    >>> out.summary["evaluated"], out.summary["hr@10"], out.summary["baseline"]["hr@10"]
    (2, 0.5, 0.5)
    """
    total = len(events)
    progress = partial(_with_total, on_progress, total) if on_progress is not None else None
    is_test, group_of, mode = _protocol(events, split, train_fraction, frozen, folds)
    learn_test = not (frozen and split == "temporal")
    with ExitStack() as resources:
        # Before the clock: building them imports the worker's modules (and may start a process).
        models = make_models(
            ReplayPlan(events, is_test, learn_test, resources, params, tuple(catalog))
        )
        started = time.perf_counter()
        report = replay(
            events,
            models,
            params,
            is_test=is_test,
            learn_test=learn_test,
            group_of=group_of,
            catalog=catalog,
            on_progress=progress,
        )
    elapsed = time.perf_counter() - started
    summary = _summary(report, params.k, folds)
    summary.update(mode)
    summary["elapsed_s"] = round(elapsed, 3)
    summary["events_per_s"] = round(total / elapsed, 1) if elapsed > 0 else None
    return Outcome(summary, report, elapsed)


def _with_total(on_progress: Callable[[int, int], None], total: int, done: int) -> None:
    """``on_progress(done, total)``, as the replay reports progress (``done`` only)."""
    on_progress(done, total)


def _protocol(
    events: Sequence[Event],
    split: str | None,
    train_fraction: float,
    frozen: bool,
    folds: int | None,
) -> tuple[Callable[[int, Event], bool] | None, Callable[[Event], int] | None, dict[str, Any]]:
    """Which events are requests (``is_test``), how requests are grouped (``group_of``, by
    the user's fold), and the summary's description of the protocol."""
    if folds:
        user_fold = {u: fold_of(u, folds) for u in {e.user_id for e in events}}
        return None, lambda e: user_fold[e.user_id], {"mode": "cv", "folds": folds}
    if split == "temporal":
        cut = temporal_cut(events, train_fraction)
        mode = {
            "mode": "temporal",
            "train_fraction": train_fraction,
            "train_events": cut,
            "test_events": len(events) - cut,
            "learning": "frozen" if frozen else "continuing",
        }
        return lambda n, _e: n >= cut, None, mode
    return None, None, {"mode": "full"}


def _figures(report: ModelReport, k: int) -> dict[str, Any]:
    return {key.format(k=k): getattr(report, attr) for key, attr in METRICS}


def _fold_dict(reports: Sequence[ModelReport], k: int) -> dict[str, Any]:
    """One model over the folds: the mean of each figure, with a ``std`` object beside it."""
    out: dict[str, Any] = {
        "model": reports[0].name,
        "evaluated": sum(r.evaluated for r in reports),
        "hits": sum(r.hits for r in reports),
    }
    std: dict[str, float | None] = {}
    for key, attr in METRICS:
        name = key.format(k=k)
        out[name], std[name] = summarise([getattr(r, attr) for r in reports])
    sources = sorted({s for r in reports for s in r.per_source})
    out["per_source"] = {
        source: {
            key.format(k=k): summarise(
                [getattr(r.per_source[source], attr) for r in reports if source in r.per_source]
            )[0]
            for key, attr in (*SOURCE_METRICS, ("slot_share", "slot_share"))
        }
        for source in sources
    }
    out["std"] = std
    return out


def _summary(report: ReplayReport, k: int, folds: int | None) -> dict[str, Any]:
    names = list(report.models)
    model, baseline = names[0], names[1] if len(names) > 1 else None
    summary: dict[str, Any] = {"events": report.events}
    groups = [report.groups[g] for g in sorted(report.groups)] if folds else []
    if groups:
        summary.update(_fold_dict([g.models[model] for g in groups], k))
    else:
        summary.update({"model": model, **report.models[model].as_dict(k)})
    summary["evaluated"] = report.evaluated
    summary["cold_targets"] = report.cold_targets
    summary["cold_share"] = report.cold_targets / report.evaluated if report.evaluated else 0.0
    summary["catalog_size"] = report.catalog_size
    if len(names) > 2:
        summary["compared"] = {
            name: (
                _fold_dict([g.models[name] for g in groups], k)
                if groups
                else {"model": name, **report.models[name].as_dict(k)}
            )
            for name in names[2:]
        }
    if baseline is not None:
        summary["baseline"] = (
            _fold_dict([g.models[baseline] for g in groups], k)
            if groups
            else {"model": baseline, **report.models[baseline].as_dict(k)}
        )
    if folds:
        summary["per_fold"] = [
            {
                "fold": g,
                "evaluated": group.evaluated,
                **_figures(group.models[model], k),
                "baseline": _figures(group.models[baseline], k) if baseline else None,
            }
            for g, group in sorted(report.groups.items())
        ]
    return summary


def ghost_followees(events: Sequence[Event]) -> list[Event]:
    """The same stream with every follow (and unfollow) pointed at a user who never acts:
    the same users have the same earlier events, so the same requests are evaluated, but no
    followee's activity can be seen.

    >>> follow = Event("f", EventType.FOLLOW, "u1", 1e9, target_user_id="u2")
    >>> ghost_followees([follow])[0].target_user_id
    'ghost:u2'
    """
    out = []
    for event in events:
        if event.type in (EventType.FOLLOW, EventType.UNFOLLOW) and event.target_user_id:
            event = replace(event, target_user_id=f"ghost:{event.target_user_id}")
        out.append(event)
    return out


def knob_values(models: Sequence[Recommender]) -> dict[str, Any]:
    """The learned knobs each model ended with (the hybrids' blend, half-life and shrinkage;
    the decayed-popularity baseline's half-life), by model name."""
    from models.baselines import LearnedPopularityRecommender
    from models.hybrid import HybridRecommender
    from streams.tools.eval_sources import AskedAhead

    values: dict[str, Any] = {}
    for model in models:
        if isinstance(model, HybridRecommender):
            found: dict[str, Any] = {} if model.knobs is None else model.knobs.values()
            found["shrinkage"] = model.base.cooccurrence.shrinkage
            values[model.name] = found
        elif isinstance(model, LearnedPopularityRecommender):
            values[model.name] = {"half_life_s": model.popularity.half_life_s}
        elif isinstance(model, AskedAhead):
            if model.knobs:
                values[model.name] = model.knobs
        else:
            blend = getattr(model, "blend", None)
            if blend is not None and hasattr(blend, "state"):
                values[model.name] = {"blend_weights": blend.state()["weights"]}
    return values


# ------------------------------------------------------------------------------------------------
# Output
