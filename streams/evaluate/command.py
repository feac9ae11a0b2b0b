"""The ``socialrec eval`` command: read the files, replay, print or write the figures."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import orjson

from models.evaluation import (
    EvalParams,
    Recommender,
)
from streams.config import Settings
from streams.evaluate.build import MODEL_NAMES, ReplayPlan, build_models
from streams.evaluate.output import print_tables, write_plots
from streams.evaluate.reading import (
    InputError,
    content_records,
    open_input,
    read_catalog,
    read_events,
    reasons_text,
)
from streams.evaluate.replay import EVAL_K, evaluate, ghost_followees, knob_values


def run_eval(
    settings: Settings,
    events_path: str,
    *,
    fmt: str = "csv",
    catalog_path: str | None = None,
    as_json: bool = False,
    plots: str | None = None,
    split: str | None = None,
    train_fraction: float = 0.8,
    frozen: bool = False,
    folds: int | None = None,
    negatives: int = 20,
    seed: int = 0,
    models: Sequence[str] = ("hybrid",),
    jobs: int | None = None,
    out: IO[str] | None = None,
    fixed_knobs: bool = False,
    ablation: bool = False,
    ghost_follows: bool = False,
) -> int:
    """The ``socialrec eval`` command. 0 on success, 2 when the input cannot be used.

    ``jobs`` (1 or 2; default 2 when this process may use two cores or more) is how many processes
    replay the hybrids (see :func:`build_models`)."""
    from rich.console import Console

    out = out or sys.stdout
    err = Console(stderr=True)
    if folds is not None and folds < 2:
        err.print("socialrec eval: --cv needs at least 2 folds")
        return 2
    if not models or any(name not in MODEL_NAMES for name in models):
        err.print(
            f"socialrec eval: --models takes a comma-separated list of {', '.join(MODEL_NAMES)}"
        )
        return 2
    if not 0.0 < train_fraction < 1.0:
        err.print("socialrec eval: --train-fraction must be between 0 and 1")
        return 2
    if jobs is None:
        # The cores this process may run on (a container may allow fewer than the machine has).
        jobs = 2 if len(os.sched_getaffinity(0)) >= 2 else 1
    if jobs not in (1, 2):
        err.print("socialrec eval: --jobs takes 1 or 2")
        return 2
    try:
        with open_input(Path(events_path)) as stream:
            loaded = read_events(stream, fmt=fmt)
        catalog = None
        if catalog_path is not None:
            with open_input(Path(catalog_path)) as stream:
                catalog = read_catalog(stream)
    except InputError as exc:
        err.print(f"socialrec eval: {exc}")
        return 2
    if loaded.bad.total:
        err.print(
            f"socialrec eval: {loaded.bad.total:,} of {loaded.rows:,} rows skipped "
            f"({reasons_text(loaded.bad.as_dict())}); first lines: {loaded.bad.lines[:10]}"
        )
    if catalog is not None and catalog.bad.total:
        err.print(
            f"socialrec eval: {catalog.bad.total:,} catalog rows skipped "
            f"({reasons_text(catalog.bad.as_dict())}); first lines: {catalog.bad.lines[:10]}"
        )
    if not loaded.events:
        err.print("socialrec eval: no valid events to replay")
        return 2
    if ghost_follows:
        loaded.events = ghost_followees(loaded.events)

    # Content features: the catalogue, or what the events file carries per item (Taobao's
    # category id), so content can rank items nobody has touched yet.
    features: dict[str, dict[str, str]] = dict(loaded.item_features)
    if catalog is not None:
        features.update(catalog.items)
    records, unusable = content_records(
        {
            item: {"category": f.get("category", f.get("category_id", ""))} | f
            for item, f in features.items()
        }
    )
    if unusable:
        err.print(f"socialrec eval: {unusable:,} catalog rows unusable for content (bad price?)")
    params = EvalParams(k=EVAL_K, negatives=negatives, seed=seed)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("replaying"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} events"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    task = progress.add_task("replay", total=len(loaded.events))

    def on_progress(done: int, _total: int) -> None:
        # Started at the first report, not before: the sources process is forked while the
        # models are built, and a fork should not copy a running refresh thread.
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done)

    built: list[Recommender] = []

    def make_models(plan: ReplayPlan) -> list[Recommender]:
        built.extend(
            build_models(
                settings,
                models,
                records,
                plan=plan,
                jobs=jobs,
                fixed_knobs=fixed_knobs,
                ablation=ablation,
            )
        )
        return built

    try:
        outcome = evaluate(
            loaded.events,
            make_models,
            params=params,
            split=split,
            train_fraction=train_fraction,
            frozen=frozen,
            folds=folds,
            catalog=list(catalog.items) if catalog is not None else (),
            on_progress=on_progress,
        )
    finally:
        progress.stop()
    summary = outcome.summary
    summary["rows"] = loaded.rows
    summary["bad_rows"] = loaded.bad.as_dict()
    summary["format"] = fmt
    summary["catalog_items"] = len(catalog.items) if catalog is not None else None
    if catalog is not None:
        summary["catalog_bad_rows"] = catalog.bad.as_dict()
    if loaded.item_features:
        summary["items_with_features"] = len(loaded.item_features)
    summary["negatives"] = negatives
    summary["seed"] = seed
    summary["jobs"] = jobs
    summary["ghost_follows"] = ghost_follows
    summary["knobs"] = knob_values(built)

    if plots is not None:
        written = write_plots(outcome, Path(plots), params.k)
        err.print(f"socialrec eval: plots written: {', '.join(str(p) for p in written)}")
    if as_json:
        out.write(orjson.dumps(summary, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    else:
        print_tables(summary, params.k, Console(file=out))
    return 0
