"""The ``socialrec eval`` command: read the files, replay, print or write the figures."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any

import orjson

from models.evaluation import (
    EvalParams,
    Recommender,
)
from models.events import Event
from streams.config import Settings
from streams.tools.evaluate.build import MODEL_NAMES, ReplayPlan, build_models
from streams.tools.evaluate.output import print_tables, write_plots
from streams.tools.evaluate.reading import (
    Catalog,
    InputError,
    LoadedEvents,
    content_records,
    open_input,
    read_catalog,
    read_events,
    reasons_text,
)
from streams.tools.evaluate.replay import (
    EVAL_K,
    Outcome,
    evaluate,
    ghost_followees,
    knob_values,
)


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
    if jobs is None:
        # The cores this process may run on (a container may allow fewer than the machine has).
        jobs = 2 if len(os.sched_getaffinity(0)) >= 2 else 1
    problem = _option_problem(folds, models, train_fraction, jobs)
    if problem is not None:
        err.print(f"socialrec eval: {problem}")
        return 2
    read = _read_usable(events_path, fmt, catalog_path, err)
    if read is None:
        return 2
    loaded, catalog = read
    if ghost_follows:
        loaded.events = ghost_followees(loaded.events)
    records = _content(loaded, catalog, err)
    params = EvalParams(k=EVAL_K, negatives=negatives, seed=seed)
    built: list[Recommender] = []
    build_options: dict[str, Any] = {"jobs": jobs, "fixed_knobs": fixed_knobs, "ablation": ablation}
    make_models = partial(_build_into, built, settings, models, records, **build_options)
    catalog_items = list(catalog.items) if catalog is not None else ()
    outcome = _evaluate_with_progress(
        loaded.events, make_models, err,
        params=params, split=split, train_fraction=train_fraction, frozen=frozen, folds=folds,
        catalog=catalog_items,
    )  # fmt: skip
    summary = outcome.summary
    summary.update(_input_figures(loaded, catalog, fmt))
    summary.update(negatives=negatives, seed=seed, jobs=jobs, ghost_follows=ghost_follows)
    summary["knobs"] = knob_values(built)
    _write(outcome, params.k, plots, as_json, out, err)
    return 0


def _read_usable(
    events_path: str, fmt: str, catalog_path: str | None, err: Any
) -> tuple[LoadedEvents, Catalog | None] | None:
    """:func:`_read`, or None (said on stderr) when the files give no events to replay."""
    try:
        loaded, catalog = _read(events_path, fmt, catalog_path, err)
    except InputError as exc:
        err.print(f"socialrec eval: {exc}")
        return None
    if not loaded.events:
        err.print("socialrec eval: no valid events to replay")
        return None
    return loaded, catalog


def _evaluate_with_progress(
    events: list[Event],
    make_models: Callable[[ReplayPlan], list[Recommender]],
    err: Any,
    **options: Any,
) -> Outcome:
    """:func:`evaluate` with a progress bar on stderr."""
    bar = _ProgressBar(err, len(events))
    try:
        return evaluate(events, make_models, on_progress=bar.update, **options)
    finally:
        bar.stop()


def _write(
    outcome: Outcome, k: int, plots: str | None, as_json: bool, out: IO[str], err: Any
) -> None:
    """The plots, if asked for, and the summary as JSON or as tables."""
    from rich.console import Console

    if plots is not None:
        written = write_plots(outcome, Path(plots), k)
        err.print(f"socialrec eval: plots written: {', '.join(str(p) for p in written)}")
    if as_json:
        out.write(orjson.dumps(outcome.summary, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    else:
        print_tables(outcome.summary, k, Console(file=out))


def _option_problem(
    folds: int | None, models: Sequence[str], train_fraction: float, jobs: int
) -> str | None:
    """What is wrong with the options, if anything."""
    if folds is not None and folds < 2:
        return "--cv needs at least 2 folds"
    if not models or any(name not in MODEL_NAMES for name in models):
        return f"--models takes a comma-separated list of {', '.join(MODEL_NAMES)}"
    if not 0.0 < train_fraction < 1.0:
        return "--train-fraction must be between 0 and 1"
    if jobs not in (1, 2):
        return "--jobs takes 1 or 2"
    return None


def _read(
    events_path: str, fmt: str, catalog_path: str | None, err: Any
) -> tuple[LoadedEvents, Catalog | None]:
    """The events and the catalogue, with the rows that could not be read reported on
    stderr; :class:`InputError` when a file cannot be used at all."""
    with open_input(Path(events_path)) as stream:
        loaded = read_events(stream, fmt=fmt)
    catalog = None
    if catalog_path is not None:
        with open_input(Path(catalog_path)) as stream:
            catalog = read_catalog(stream)
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
    return loaded, catalog


def _input_figures(loaded: LoadedEvents, catalog: Catalog | None, fmt: str) -> dict[str, Any]:
    """What the summary says about the input: rows read and skipped, format, catalogue."""
    figures: dict[str, Any] = {
        "rows": loaded.rows,
        "bad_rows": loaded.bad.as_dict(),
        "format": fmt,
        "catalog_items": len(catalog.items) if catalog is not None else None,
    }
    if catalog is not None:
        figures["catalog_bad_rows"] = catalog.bad.as_dict()
    if loaded.item_features:
        figures["items_with_features"] = len(loaded.item_features)
    return figures


def _content(
    loaded: LoadedEvents, catalog: Catalog | None, err: Any
) -> dict[str, dict[str, object]]:
    """Content features: the catalogue, or what the events file carries per item (Taobao's
    category id), so content can rank items nobody has touched yet."""
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
    return records


def _build_into(
    built: list[Recommender],
    settings: Settings,
    names: Sequence[str],
    records: dict[str, dict[str, object]],
    plan: ReplayPlan,
    **options: Any,
) -> list[Recommender]:
    """:func:`build_models` for the replay's ``plan``, kept in ``built`` (their learned knobs
    are reported after the replay)."""
    built.extend(build_models(settings, names, records, plan=plan, **options))
    return built


class _ProgressBar:
    """The replay's progress on stderr, started at the first report, not before: the sources
    process is forked while the models are built, and a fork should not copy a running refresh
    thread."""

    def __init__(self, console: Any, total: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("replaying"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} events"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("replay", total=total)

    def update(self, done: int, _total: int) -> None:
        if not self.progress.live.is_started:
            self.progress.start()
        self.progress.update(self.task, completed=done)

    def stop(self) -> None:
        self.progress.stop()
