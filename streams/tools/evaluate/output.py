"""What ``socialrec eval`` shows: rich tables of a summary, and PNG plots of a replay."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from models.evaluation import Trace, roc_points
from streams.tools.evaluate.reading import reasons_text
from streams.tools.evaluate.replay import METRICS, Outcome


def _fmt(value: object, std: object = None) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        text = f"{value:.4f}"
        return f"{text} ± {std:.4f}" if isinstance(std, float) else text
    return str(value)


def print_tables(summary: dict[str, Any], k: int, console: Any) -> None:
    """The summary as tables: the reported model beside the baseline, hits by source, every
    model on the same requests, the learned knobs, and notes on the input and the replay."""
    base = summary.get("baseline") or {}
    _main_table(summary, base, k, console)
    _sources_table(summary, base, k, console)
    _every_table(summary, base, k, console)
    _notes(summary, console)


def _main_table(summary: dict[str, Any], base: dict[str, Any], k: int, console: Any) -> None:
    from rich.table import Table

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


def _sources_table(summary: dict[str, Any], base: dict[str, Any], k: int, console: Any) -> None:
    from rich.table import Table

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


def _every_table(summary: dict[str, Any], base: dict[str, Any], k: int, console: Any) -> None:
    from rich.table import Table

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


def _notes(summary: dict[str, Any], console: Any) -> None:
    bad = summary["bad_rows"]
    notes = [
        f"{summary['events']:,} events replayed from {summary['rows']:,} rows "
        f"({bad['total']:,} bad rows{': ' + reasons_text(bad) if bad['total'] else ''}); "
        f"catalogue {summary['catalog_size']:,} items",
        f"replay: {summary['elapsed_s']:.1f} s, {summary['events_per_s'] or 0:,.0f} events/s",
    ]
    if summary.get("catalog_items") is not None:
        notes.append(f"--catalog: {summary['catalog_items']:,} items read (no content model yet)")
    for note in notes:
        console.print(note)


def write_plots(outcome: Outcome, directory: Path, k: int) -> list[Path]:
    """ROC curve, HR@k along the stream and per-source contribution, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed

    directory.mkdir(parents=True, exist_ok=True)
    names = list(outcome.report.models)[:2]  # the reported model and the baseline
    traces = outcome.report.traces
    summary = outcome.summary
    figures = {"model": summary, "baseline": summary.get("baseline") or {}}
    labels = {names[0]: f"{names[0]} (worker)"}
    if len(names) > 1:
        labels[names[1]] = "popularity (baseline)"
    return [
        _save(_roc_plot(names, figures, traces, labels), directory / "roc.png"),
        _save(_hr_plot(names, traces, labels, k), directory / "hr_over_stream.png"),
        _save(_sources_plot(names, figures, labels, k), directory / "sources.png"),
    ]


def _roc_plot(
    names: Sequence[str],
    figures: dict[str, dict[str, Any]],
    traces: Mapping[str, Trace],
    labels: Mapping[str, str],
) -> Any:
    """The pooled ROC curve of each model, its AUCs in the legend."""
    import matplotlib.pyplot as plt

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
    return fig


def _hr_plot(
    names: Sequence[str], traces: Mapping[str, Trace], labels: Mapping[str, str], k: int
) -> Any:
    """Each model's HR@k as a rolling mean along the stream."""
    import matplotlib.pyplot as plt
    import numpy as np

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
    return fig


def _sources_plot(
    names: Sequence[str], figures: dict[str, dict[str, Any]], labels: Mapping[str, str], k: int
) -> Any:
    """Stacked bars: HR@k by the source of the hit, and the share of slots each source got."""
    import matplotlib.pyplot as plt
    import numpy as np

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
    return fig


def _save(fig: Any, path: Path) -> Path:
    """Write the figure as a PNG and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # keeps a legend placed below the axes
    plt.close(fig)
    return path
