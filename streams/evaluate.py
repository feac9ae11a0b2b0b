"""``socialrec eval``: offline quality of the recommender on a CSV of events.

Reads the events (our CSV, or the Taobao UserBehavior format), replays them in time order
through the worker's own model code (:mod:`models.evaluation`, in-process, no Kafka) next to a
popularity baseline, and prints the figures: a rich table, or one JSON object with ``--json``.
Progress and warnings go to stderr, so ``--json`` output can be piped. ``--plots DIR`` writes
PNGs (ROC curve, HR@10 along the stream, per-source contribution).

Input formats:

* ``csv`` (default): header ``user_id,item_id,event_type,timestamp`` plus optional
  ``target_user_id,stream_id``; types and required fields as in the event contract
  (:mod:`models.events`; ``follow`` rows have no item), ``timestamp`` in Unix seconds.
* ``taobao``: ``user_id,item_id,category_id,behavior,timestamp`` (header optional, as in the
  published files), behaviours ``pv/fav/cart/buy`` read as ``view/like/cart/purchase``.

A row that cannot be read is counted by reason and reported (the first line numbers too, never
the row's content); it never stops the run. Each row gets the event id ``row-<line>``.

Also a helper that writes the simulator's stream in the CSV format, for quality figures::

    .venv/bin/python -m streams.evaluate simulate --out sim.csv --catalog-out catalog.csv

>>> import io
>>> text = "user_id,item_id,event_type,timestamp\\nu1,a,view,1700000000\\nu1,,view,1700000001\\n"
>>> loaded = read_events(io.StringIO(text))
>>> [e.item_id for e in loaded.events], dict(loaded.bad.by_reason), loaded.bad.lines
(['a'], {'missing_field': 1}, [3])
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Final

import orjson

from models.content import parse_record
from models.evaluation import (
    EvalParams,
    ItemCFRecommender,
    ModelReport,
    PopularityRecommender,
    Recommender,
    ReplayReport,
    fold_of,
    replay,
    roc_points,
    summarise,
    temporal_cut,
)
from models.events import Event, EventType, Rejection, parse_event
from models.recommend import PERSONAL_SOURCES, RecommendParams, Source
from streams.config import Settings

EVENT_COLUMNS: Final = ("user_id", "item_id", "event_type", "timestamp")
OPTIONAL_COLUMNS: Final = ("target_user_id", "stream_id")
TAOBAO_COLUMNS: Final = ("user_id", "item_id", "category_id", "behavior", "timestamp")
TAOBAO_BEHAVIOURS: Final = {
    "pv": EventType.VIEW,
    "fav": EventType.LIKE,
    "cart": EventType.CART,
    "buy": EventType.PURCHASE,
}
#: Length of the evaluated lists (HR@10, NDCG@10), whatever SOCIALREC_TOP_N the worker uses.
EVAL_K: Final = 10
#: The bound on a file's timestamps, either side of 1970: 10^11 s is over 3,000 years, so any
#: real stream passes, while milliseconds (10^12 and more since 1973) are still caught.
FILE_TS_LIMIT_S: Final = 1e11
#: How many offending line numbers a report keeps (enough to find them, never the content).
KEPT_LINES: Final = 20
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


class InputError(Exception):
    """The file as a whole cannot be read (missing, or without the required header)."""


@dataclass
class BadRows:
    """Rows that could not be read: how many, why, and where (line numbers, 1-based)."""

    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    lines: list[int] = field(default_factory=list)

    def add(self, line: int, reason: str) -> None:
        self.total += 1
        self.by_reason[reason] += 1
        if len(self.lines) < KEPT_LINES:
            self.lines.append(line)

    def as_dict(self) -> dict[str, object]:
        return {"total": self.total, "by_reason": dict(self.by_reason), "first_lines": self.lines}


@dataclass
class LoadedEvents:
    """Valid events in time order (file order among equal timestamps) and what was not."""

    events: list[Event]
    rows: int
    bad: BadRows
    item_features: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Catalog:
    items: dict[str, dict[str, str]]
    rows: int
    bad: BadRows


def _rows(stream: IO[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) for every record; a record spanning lines gets its first line."""
    reader = csv.reader(stream)
    line = 1
    for row in reader:
        yield line, row
        line = reader.line_num + 1


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # the contract's check then rejects it as a bad field


def read_events(stream: IO[str], *, fmt: str = "csv") -> LoadedEvents:
    """Read and validate events; sort them by time.

    Every check of the event contract applies except the live path's clock: a file may hold
    a stream of any era (a 1990s data set, a simulation dated in the future), so a timestamp
    only has to be Unix seconds, within :data:`FILE_TS_LIMIT_S` of 1970 either way.

    >>> import io
    >>> tb = "1,10,7,pv,1511544070\\n1,11,7,buy,1511544080\\n2,10,7,teleport,1511544090\\n"
    >>> loaded = read_events(io.StringIO(tb), fmt="taobao")
    >>> [(e.user_id, e.type.value, e.item_id) for e in loaded.events]
    [('1', 'view', '10'), ('1', 'purchase', '11')]
    >>> dict(loaded.bad.by_reason), loaded.item_features["10"]
    ({'unknown_type': 1}, {'category_id': '7'})
    """
    bad = BadRows()
    events: list[Event] = []
    features: dict[str, dict[str, str]] = {}
    rows = _rows(stream)
    first = next(rows, None)
    if first is None:
        return LoadedEvents([], 0, bad)
    header = [cell.strip() for cell in first[1]]
    if fmt == "taobao":
        convert = _taobao_converter(features)
        columns: Sequence[str] = TAOBAO_COLUMNS
        if header[: len(TAOBAO_COLUMNS)] != list(TAOBAO_COLUMNS):
            rows = _chain([first], rows)  # the published files have no header
    elif fmt == "csv":
        missing = [c for c in EVENT_COLUMNS if c not in header]
        if missing:
            raise InputError(
                f"the header lacks {', '.join(missing)}: expected "
                f"{','.join(EVENT_COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)}]"
            )
        columns = header
        convert = _csv_converter()
    else:
        raise InputError(f"unknown format {fmt!r} (csv or taobao)")

    required = EVENT_COLUMNS if fmt == "csv" else TAOBAO_COLUMNS
    needed = 1 + max(list(columns).index(c) for c in required)
    count = 0
    for line, cells in rows:
        count += 1
        if not cells or cells == [""]:
            bad.add(line, "empty_row")
            continue
        if not needed <= len(cells) <= len(columns):
            bad.add(line, "bad_columns")
            continue
        # Trailing optional cells may be left out (some writers drop empty trailing fields).
        record = dict(zip(columns, cells, strict=False))
        if any("\ufffd" in cell for cell in cells):
            bad.add(line, "not_utf8")
            continue
        body = convert(line, record)
        if isinstance(body, str):
            bad.add(line, body)
            continue
        parsed = parse_event(
            orjson.dumps(body),
            now=FILE_TS_LIMIT_S,
            max_bytes=1 << 20,
            max_future_skew_s=0.0,
            min_ts=-FILE_TS_LIMIT_S,
        )
        if isinstance(parsed, Rejection):
            bad.add(line, parsed.reason.value)
            continue
        events.append(parsed)
    events.sort(key=lambda e: e.ts)  # stable: file order among equal timestamps
    return LoadedEvents(events, count, bad, features)


def _chain(
    head: Iterable[tuple[int, list[str]]], tail: Iterator[tuple[int, list[str]]]
) -> Iterator[tuple[int, list[str]]]:
    yield from head
    yield from tail


Converter = Callable[[int, dict[str, str]], "dict[str, object] | str"]


def _csv_converter() -> Converter:
    def convert(line: int, record: dict[str, str]) -> dict[str, object] | str:
        body: dict[str, object] = {"event_id": f"row-{line}", "type": record["event_type"].strip()}
        for name in ("user_id", "item_id", *OPTIONAL_COLUMNS):
            value = record.get(name, "").strip()
            if value:  # empty or left out = absent; the contract says which types need which fields
                body[name] = value
        body["ts"] = _number(record["timestamp"].strip())
        return body

    return convert


def _taobao_converter(features: dict[str, dict[str, str]]) -> Converter:
    def convert(line: int, record: dict[str, str]) -> dict[str, object] | str:
        kind = TAOBAO_BEHAVIOURS.get(record["behavior"].strip())
        if kind is None:
            return "unknown_type"
        body: dict[str, object] = {"event_id": f"row-{line}", "type": kind.value}
        for name in ("user_id", "item_id"):
            value = record[name].strip()
            if value:
                body[name] = value
        body["ts"] = _number(record["timestamp"].strip())
        item, category = record["item_id"].strip(), record["category_id"].strip()
        if item and category:
            features[item] = {"category_id": category}
        return body

    return convert


def read_catalog(stream: IO[str]) -> Catalog:
    """Item features keyed by ``item_id`` (every other column is kept as text).

    >>> import io
    >>> cat = read_catalog(io.StringIO("item_id,category\\na,phones\\n,x\\na,cases\\nb\\n"))
    >>> cat.items, dict(cat.bad.by_reason)
    ({'a': {'category': 'phones'}}, {'missing_field': 1, 'duplicate_item': 1, 'bad_columns': 1})
    """
    bad = BadRows()
    items: dict[str, dict[str, str]] = {}
    rows = _rows(stream)
    first = next(rows, None)
    if first is None:
        return Catalog(items, 0, bad)
    header = [cell.strip() for cell in first[1]]
    if "item_id" not in header:
        raise InputError("the catalog header lacks item_id")
    count = 0
    for line, cells in rows:
        count += 1
        if len(cells) != len(header):
            bad.add(line, "bad_columns")
            continue
        record = dict(zip(header, cells, strict=True))
        item = record.pop("item_id").strip()
        if not item:
            bad.add(line, "missing_field")
        elif item in items:
            bad.add(line, "duplicate_item")
        else:
            items[item] = record
    return Catalog(items, count, bad)


def content_records(
    items: Mapping[str, Mapping[str, str]],
) -> tuple[dict[str, dict[str, object]], int]:
    """Catalogue rows as content records (price a number, ``tags`` split on ``|``), and how
    many rows the content model cannot use (they are left out of content, nothing else).

    >>> content_records({"a": {"category": "phones", "price": "9.5", "tags": "5g|dual-sim"},
    ...                  "b": {"category": "x", "price": "cheap"}})
    ({'a': {'category': 'phones', 'price': 9.5, 'tags': ['5g', 'dual-sim'], 'item_id': 'a'}}, 1)
    """
    records: dict[str, dict[str, object]] = {}
    rejected = 0
    for item_id, row in items.items():
        record: dict[str, object] = {k: v for k, v in row.items() if v.strip()}
        try:
            if "price" in record:
                record["price"] = float(str(record["price"]))
            if "tags" in record:
                record["tags"] = [t for t in str(record["tags"]).split("|") if t]
            record["item_id"] = item_id
            parse_record(record)
        except ValueError:
            rejected += 1
            continue
        records[item_id] = record
    return records, rejected


def _open(path: Path) -> IO[str]:
    try:
        # Undecodable bytes become U+FFFD, so one bad row is reported instead of ending the run.
        # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first column name.
        return path.open(encoding="utf-8-sig", errors="replace", newline="")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


# ------------------------------------------------------------------------------------------------
# Running the evaluation
# ------------------------------------------------------------------------------------------------


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
    second process (:mod:`streams.eval_sources`), shared by every hybrid (their sources are
    the same); the figures are those of ``jobs=1``.

    The hybrids learn their knobs from the stream (blend, popularity half-life, shrinkage:
    :mod:`models.knobs`) unless ``fixed_knobs``. Returned: the first model, the decayed
    popularity baseline (with the learned half-life, or the configured one), plain
    popularity, the item-kNN baseline, the other models, and with ``ablation`` the first
    hybrid without each of its sources in turn.
    """
    from models.ablation import AblatedHybrid
    from models.baselines import LearnedPopularityRecommender
    from models.evaluation import AnswersAhead
    from models.hybrid import (
        HybridRecommender,
        HybridSources,
        SourcePools,
        build_hybrid,
        build_sources,
    )
    from models.itemknn import ItemKNN
    from streams.eval_sources import SourcesProcess
    from streams.store import ReadParams
    from streams.worker import state_params

    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown or not names:
        raise InputError(f"--models takes a comma-separated list of {', '.join(MODEL_NAMES)}")
    state = state_params(settings)
    if fixed_knobs:
        state = replace(state, shrinkage_scale=0.0)
    read = ReadParams()
    recommend_params = RecommendParams(
        top_n=settings.top_n,
        exclude_items=settings.exclude_items,
        exclude_seen=True,  # the protocol: never recommend what the user already touched
        half_life_s=settings.popularity_half_life_s,
        category_cap=settings.category_cap,  # applied where the catalogue gives categories
        explore_slots=settings.explore_slots,
    )

    half_life = settings.popularity_half_life_s

    def baselines() -> list[Recommender]:
        """Decayed popularity (learned half-life, or the configured one), plain popularity."""
        return [
            PopularityRecommender(state.weights, half_life_s=half_life)
            if fixed_knobs
            else LearnedPopularityRecommender(state.weights, start_half_life_s=half_life),
            PopularityRecommender(state.weights, half_life_s=math.inf, name="popularity-plain"),
        ]

    def ask_ahead(sources: SourcePools) -> AnswersAhead:
        """In the child: the baselines, the item-kNN shared with the hybrid's source."""
        assert plan is not None
        knn = sources.knn if isinstance(sources, HybridSources) else None
        models = [*baselines(), knn or ItemKNN(state.weights)]
        return AnswersAhead(
            models, plan.events, plan.params, plan.catalog, learnt_elsewhere=[knn] if knn else []
        )

    shared: SourcesProcess | None = None
    if jobs > 1 and plan is not None and any(n != "itemcf" for n in names):
        shared = plan.resources.enter_context(
            SourcesProcess(
                plan.events,
                lambda: build_sources(state, catalog, knn=not fixed_knobs),
                recommend_params.exclude_items,
                is_test=plan.is_test,
                learn_test=plan.learn_test,
                ask=ask_ahead,
            )
        )

    def make(name: str) -> Recommender:
        if name == "itemcf":
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

    models = [make(n) for n in names]
    # With a second process, the baselines are asked there, ahead of the replay (the same
    # answers: models.evaluation.AnswersAhead); the item-kNN is then the hybrid's own source.
    decayed, *others = (
        shared.asked(["popularity", "popularity-plain", "itemknn"])
        if shared is not None
        else [*baselines(), ItemKNN(state.weights)]
    )
    ablations: list[Recommender] = []
    first = models[0]
    if ablation and isinstance(first, HybridRecommender):
        # Only the sources this hybrid has: the learned-only ones (popularity as a blended
        # source, item-kNN) exist only with learned knobs, content only with a catalogue.
        absent = {Source.POPULAR, Source.ITEM_KNN, Source.FOLLOWEES} if fixed_knobs else set()
        if not catalog:
            absent.add(Source.CONTENT)
        sources = [s for s in PERSONAL_SOURCES if s not in absent]
        ablations = [AblatedHybrid(first, source) for source in sources]
    return [first, decayed, *others, *models[1:], *ablations]


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

    >>> from models.state import StateParams
    >>> evs = [Event(f"e{n}", EventType.VIEW, u, 1e9 + n, item_id=i)
    ...        for n, (u, i) in enumerate([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")])]
    >>> models = lambda _plan: [ItemCFRecommender(StateParams()), PopularityRecommender()]
    >>> out = evaluate(evs, models, params=EvalParams())
    >>> out.summary["evaluated"], out.summary["hr@10"], out.summary["baseline"]["hr@10"]
    (2, 0.5, 0.5)
    """
    total = len(events)

    def progress(done: int) -> None:
        if on_progress is not None:
            on_progress(done, total)

    is_test: Callable[[int, Event], bool] | None = None
    group_of: Callable[[Event], int] | None = None
    mode: dict[str, Any] = {"mode": "full"}
    if folds:
        user_fold = {u: fold_of(u, folds) for u in {e.user_id for e in events}}
        group_of = lambda e: user_fold[e.user_id]  # noqa: E731 - one expression, named once
        mode = {"mode": "cv", "folds": folds}
    elif split == "temporal":
        cut = temporal_cut(events, train_fraction)
        is_test = lambda n, _e: n >= cut  # noqa: E731
        mode = {
            "mode": "temporal",
            "train_fraction": train_fraction,
            "train_events": cut,
            "test_events": len(events) - cut,
            "learning": "frozen" if frozen else "continuing",
        }
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
    from streams.eval_sources import AskedAhead

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
# ------------------------------------------------------------------------------------------------


def _fmt(value: object, std: object = None) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        text = f"{value:.4f}"
        return f"{text} ± {std:.4f}" if isinstance(std, float) else text
    return str(value)


def print_tables(summary: dict[str, Any], k: int, console: Any) -> None:
    from rich.table import Table

    base = summary.get("baseline") or {}
    title = {
        "full": "full replay, test-then-train",
        "temporal": (
            f"temporal split: first {summary.get('train_fraction', 0):.0%} trains, "
            f"the rest is tested ({summary.get('learning')} learning)"
        ),
        "cv": f"{summary.get('folds')}-fold by user (mean ± sample std over folds)",
    }[summary["mode"]]
    table = Table(title=f"socialrec eval: {title}")
    table.add_column("metric")
    table.add_column(f"{summary.get('model')} (worker)", justify="right")
    table.add_column(f"{base.get('model', 'baseline')} (baseline)", justify="right")
    std, base_std = summary.get("std", {}), base.get("std", {})
    for name in (key.format(k=k) for key, _ in METRICS):
        table.add_row(
            name, _fmt(summary.get(name), std.get(name)), _fmt(base.get(name), base_std.get(name))
        )
    table.add_row("evaluated requests", _fmt(summary["evaluated"]), _fmt(base.get("evaluated")))
    table.add_row(
        "held-out item never seen before",
        f"{summary['cold_share']:.1%}",
        f"{summary['cold_share']:.1%}",
    )
    console.print(table)

    sources = Table(title="hits by the source of the hit item (they add up to the totals)")
    sources.add_column("model")
    sources.add_column("source")
    for name in (f"hr@{k}", f"ndcg@{k}", "mrr", "slot_share"):
        sources.add_column(name, justify="right")
    for label, figures in ((summary.get("model"), summary), (base.get("model"), base)):
        for source, m in (figures.get("per_source") or {}).items():
            sources.add_row(
                str(label),
                source,
                *(_fmt(m.get(n)) for n in (f"hr@{k}", f"ndcg@{k}", "mrr", "slot_share")),
            )
    console.print(sources)

    every = Table(title="every model on the same requests (baselines, compared, ablations)")
    every.add_column("model")
    shown = ("hr@{k}", "ndcg@{k}", "mrr", "auc", "coverage", "gini")
    for key in shown:
        every.add_column(key.format(k=k), justify="right")
    rows = [summary, base, *(summary.get("compared") or {}).values()]
    for figures in rows:
        if figures:
            every.add_row(
                str(figures.get("model")), *(_fmt(figures.get(key.format(k=k))) for key in shown)
            )
    console.print(every)
    for name, knobs in (summary.get("knobs") or {}).items():
        console.print(f"knobs of {name}: " + orjson.dumps(knobs).decode())

    bad = summary["bad_rows"]
    notes = [
        f"{summary['events']:,} events replayed from {summary['rows']:,} rows "
        f"({bad['total']:,} bad rows{': ' + _reasons(bad) if bad['total'] else ''}); "
        f"catalogue {summary['catalog_size']:,} items",
        f"replay: {summary['elapsed_s']:.1f} s, {summary['events_per_s'] or 0:,.0f} events/s",
    ]
    if summary.get("catalog_items") is not None:
        notes.append(f"--catalog: {summary['catalog_items']:,} items read (no content model yet)")
    for note in notes:
        console.print(note)


def _reasons(bad: dict[str, Any]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(bad["by_reason"].items()))


def write_plots(outcome: Outcome, directory: Path, k: int) -> list[Path]:
    """ROC curve, HR@k along the stream and per-source contribution, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    names = list(outcome.report.models)[:2]  # the reported model and the baseline
    traces = outcome.report.traces
    summary = outcome.summary
    figures = {"model": summary, "baseline": summary.get("baseline") or {}}
    labels = {names[0]: f"{names[0]} (worker)"}
    if len(names) > 1:
        labels[names[1]] = "popularity (baseline)"
    written: list[Path] = []

    fig, ax = plt.subplots(figsize=(6, 6))
    for name, figure in zip(names, figures.values(), strict=False):
        trace = traces[name]
        if not len(trace.positive_scores) or not len(trace.negative_scores):
            continue
        fpr, tpr = roc_points(trace.positive_scores, trace.negative_scores)
        ax.plot(
            fpr,
            tpr,
            label=f"{labels[name]}: AUC {_fmt(figure.get('auc'))} per request, "
            f"{_fmt(figure.get('auc_pooled'))} pooled",
        )
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate")
    ax.set_title("ROC: held-out item vs sampled unseen items (pooled)")
    ax.legend(loc="lower right", fontsize=8)
    written.append(_save(fig, directory / "roc.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name in names:
        trace = traces[name]
        if not trace.hits:
            continue
        order = np.argsort(np.asarray(trace.positions), kind="stable")
        hits = np.frombuffer(bytes(trace.hits), dtype=np.uint8)[order].astype(np.float64)
        positions = np.asarray(trace.positions)[order]
        window = max(50, len(hits) // 40)
        if len(hits) >= window:
            rolling = np.convolve(hits, np.ones(window) / window, mode="valid")
            ax.plot(positions[window - 1 :], rolling, label=labels[name])
    ax.set(xlabel="event index in the stream", ylabel=f"HR@{k} (rolling mean)")
    ax.set_title(f"HR@{k} along the stream (window of ~1/40 of the requests)")
    ax.legend()
    written.append(_save(fig, directory / "hr_over_stream.png"))
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    sources = sorted({s for f in figures.values() for s in (f.get("per_source") or {})})
    xs = np.arange(len(names))
    bottom_hr, bottom_slots = np.zeros(len(names)), np.zeros(len(names))
    for source in sources:
        hr = [
            f.get("per_source", {}).get(source, {}).get(f"hr@{k}") or 0.0 for f in figures.values()
        ]
        slots = [
            f.get("per_source", {}).get(source, {}).get("slot_share") or 0.0
            for f in figures.values()
        ]
        hr, slots = hr[: len(names)], slots[: len(names)]
        left.bar(xs, hr, bottom=bottom_hr, label=source)
        right.bar(xs, slots, bottom=bottom_slots, label=source)
        bottom_hr += hr
        bottom_slots += slots
    for axis, title in ((left, f"HR@{k} by source of the hit"), (right, "share of shown slots")):
        axis.set_xticks(xs, [labels[n] for n in names], fontsize=8)
        axis.set_title(title)
    right.set_ylim(0, 1.05)
    # One legend for both panels, below them, so it never covers a bar.
    handles, legend_labels = right.get_legend_handles_labels()
    fig.legend(
        handles,
        legend_labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncols=min(len(sources), 8),
        fontsize=8,
    )
    written.append(_save(fig, directory / "sources.png"))
    plt.close(fig)
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # keeps a legend placed below the axes
    return path


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
        with _open(Path(events_path)) as stream:
            loaded = read_events(stream, fmt=fmt)
        catalog = None
        if catalog_path is not None:
            with _open(Path(catalog_path)) as stream:
                catalog = read_catalog(stream)
    except InputError as exc:
        err.print(f"socialrec eval: {exc}")
        return 2
    if loaded.bad.total:
        err.print(
            f"socialrec eval: {loaded.bad.total:,} of {loaded.rows:,} rows skipped "
            f"({_reasons(loaded.bad.as_dict())}); first lines: {loaded.bad.lines[:10]}"
        )
    if catalog is not None and catalog.bad.total:
        err.print(
            f"socialrec eval: {catalog.bad.total:,} catalog rows skipped "
            f"({_reasons(catalog.bad.as_dict())}); first lines: {catalog.bad.lines[:10]}"
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


# ------------------------------------------------------------------------------------------------
# Exporting the simulator's stream
# ------------------------------------------------------------------------------------------------


def export_simulated(
    events_out: IO[str],
    *,
    users: int,
    items: int,
    events: int,
    seed: int,
    catalog_out: IO[str] | None = None,
    mean_gap_s: float = 0.5,
) -> int:
    """Write the simulator's stream (and optionally its catalogue) as eval CSV; return rows.

    >>> import io
    >>> buf = io.StringIO()
    >>> export_simulated(buf, users=20, items=50, events=3, seed=1)
    3
    >>> buf.getvalue().splitlines()[0]
    'user_id,item_id,event_type,timestamp,target_user_id,stream_id'
    >>> len(read_events(io.StringIO(buf.getvalue())).events)
    3
    """
    from models.simulator import generate_events, generate_world

    world = generate_world(seed=seed, users=users, items=items)
    writer = csv.writer(events_out, lineterminator="\n")
    writer.writerow([*EVENT_COLUMNS, *OPTIONAL_COLUMNS])
    count = 0
    for event in generate_events(world, seed=seed, count=events, mean_gap_s=mean_gap_s):
        writer.writerow(
            [
                event.user_id,
                event.item_id or "",
                event.type.value,
                repr(event.ts),
                event.target_user_id or "",
                event.stream_id or "",
            ]
        )
        count += 1
    if catalog_out is not None:
        cat = csv.writer(catalog_out, lineterminator="\n")
        cat.writerow(["item_id", "title", "category", "brand", "merchant_id", "price", "tags"])
        for item in world.items:
            cat.writerow(
                [
                    item.item_id,
                    item.title,
                    item.category,
                    item.brand,
                    item.merchant_id,
                    item.price,
                    "|".join(item.tags),
                ]
            )
    return count


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streams.evaluate simulate --out FILE [...]``: export a simulated stream."""
    parser = argparse.ArgumentParser(prog="python -m streams.evaluate")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("simulate", help="write a simulated stream (and catalogue) as eval CSV")
    p.add_argument("--out", required=True, help="events CSV to write")
    p.add_argument("--catalog-out", help="catalogue CSV to write")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--items", type=int, default=5000)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--mean-gap-s", type=float, default=0.5, help="mean seconds between events")
    args = parser.parse_args(argv)
    with Path(args.out).open("w", encoding="utf-8", newline="") as events_out:
        if args.catalog_out:
            with Path(args.catalog_out).open("w", encoding="utf-8", newline="") as catalog_out:
                rows = export_simulated(
                    events_out,
                    users=args.users,
                    items=args.items,
                    events=args.events,
                    seed=args.seed,
                    catalog_out=catalog_out,
                    mean_gap_s=args.mean_gap_s,
                )
        else:
            rows = export_simulated(
                events_out,
                users=args.users,
                items=args.items,
                events=args.events,
                seed=args.seed,
                mean_gap_s=args.mean_gap_s,
            )
    print(f"{rows:,} events written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
