"""How the demo looks: the live screen under a terminal, one status line per tick otherwise."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streams.tools.demo.board import WINDOW_S, Board
from streams.tools.processes import CONSUMED, DEAD_LETTERS

SHOWN_ITEMS: Final = 3
SOURCE_STYLES: Final[Mapping[str, str]] = {"item_cf": "green", "popular": "yellow"}


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}/s"


@dataclass(frozen=True)
class DemoInfo:
    rate: float
    seed: int
    seconds: float
    infra_note: str
    worker_log: Path


def status_line(board: Board, info: DemoInfo) -> str:
    """The plain one-liner printed instead of the live view when stdout is not a terminal."""
    stats, sent_rate = board.window()
    last = board.scrapes[-1] if board.scrapes else None
    consumed = int(last.total(CONSUMED)) if last else 0
    dead = int(last.total(DEAD_LETTERS)) if last else 0
    elapsed = time.monotonic() - board.started
    parts = [
        f"demo t={elapsed:.0f}s",
        f"sent={board.sent} ({_rate(sent_rate)})",
        f"consumed={consumed} ({_rate(stats.consumed_per_s if stats else None)})",
        f"p50={_ms(stats.p50_s if stats else None)}",
        f"p99={_ms(stats.p99_s if stats else None)}",
        f"batch={stats.mean_batch:.1f}" if stats and stats.mean_batch else "batch=–",
        f"dlq={dead}",
        f"recs={board.recs_received}",
    ]
    return " ".join(parts)


def render(board: Board, info: DemoInfo) -> RenderableType:
    """The live screen: a metrics panel above a panel of shoppers' latest recommendations."""
    return Group(_metrics_panel(board, info), _recommendations_panel(board))


def _metrics_panel(board: Board, info: DemoInfo) -> Panel:
    """Rates, latency quantiles, batch size, Redis round trip and dead letters, last few s."""
    stats, sent_rate = board.window()
    last = board.scrapes[-1] if board.scrapes else None
    elapsed = time.monotonic() - board.started

    grid = Table.grid(padding=(0, 3))
    for _ in range(4):
        grid.add_column()
    consumed = int(last.total(CONSUMED)) if last else 0
    dead = last.by_label(DEAD_LETTERS, "reason") if last else {}
    dead_total = int(sum(dead.values()))
    dead_text = Text(str(dead_total), style="bold red" if dead_total else "green")
    if dead_total:
        dead_text.append(
            " (" + ", ".join(f"{k} {int(v)}" for k, v in sorted(dead.items()) if v) + ")"
        )
    grid.add_row(
        Text("Events sent", style="dim"),
        Text(f"{_rate(sent_rate)}  (total {board.sent:,})", style="bold"),
        Text("Event → publish p50", style="dim"),
        Text(_ms(stats.p50_s if stats else None), style="bold cyan"),
    )
    grid.add_row(
        Text("Events consumed", style="dim"),
        Text(f"{_rate(stats.consumed_per_s if stats else None)}  (total {consumed:,})", "bold"),
        Text("Event → publish p99", style="dim"),
        Text(_ms(stats.p99_s if stats else None), style="bold cyan"),
    )
    grid.add_row(
        Text("Lists published", style="dim"),
        Text(_rate(stats.published_per_s if stats else None), style="bold"),
        Text("Batch size (mean)", style="dim"),
        Text(f"{stats.mean_batch:.1f} events" if stats and stats.mean_batch else "–", "bold"),
    )
    grid.add_row(
        Text("Dead letters", style="dim"),
        dead_text,
        Text("Redis round trip (mean)", style="dim"),
        Text(_ms(stats.mean_redis_s if stats else None), style="bold"),
    )
    limit = f" of {info.seconds:.0f}s" if info.seconds > 0 else " (Ctrl-C to stop)"
    return Panel(
        grid,
        title="[b]socialrec demo[/b]",
        subtitle=f"{elapsed:.0f}s{limit} · target {info.rate:g} ev/s · seed {info.seed} · "
        f"last {WINDOW_S:.0f}s · {info.infra_note}",
        border_style="blue",
    )


def _recommendations_panel(board: Board) -> Panel:
    """The most active shoppers' latest lists: item, score, source and why."""
    recs = Table(expand=True, show_edge=False, pad_edge=False)
    recs.add_column("Shopper", no_wrap=True, style="bold magenta")
    recs.add_column("#", justify="right", width=2)
    recs.add_column("Item", ratio=3, no_wrap=True, overflow="ellipsis")
    recs.add_column("Score", justify="right", width=7)
    recs.add_column("Source", no_wrap=True, width=8)
    recs.add_column("Why", ratio=4, no_wrap=True, overflow="ellipsis", style="italic")
    now = time.monotonic()
    for user in board.shown_users():
        for rank, item in enumerate(user.items[:SHOWN_ITEMS], start=1):
            who = ""
            if rank == 1:
                who = user.user_id + (" [dim](cold start)[/dim]" if user.cold_start else "")
            elif rank == 2:
                who = f"[dim]{user.updates} updates[/dim]"
            elif rank == 3:
                who = f"[dim]{now - user.received:.1f}s ago[/dim]"
            recs.add_row(
                who,
                str(rank),
                board.title(item.item_id),
                f"{item.score:.2f}",
                Text(item.source.replace("_", "-"), style=SOURCE_STYLES.get(item.source, "cyan")),
                board.because(user.user_id, item.source, item.reasons, item.people),
            )
        recs.add_section()
    if not board.users:
        recs.add_row("", "", "[dim]waiting for the first recommendations…[/dim]", "", "", "")
    return Panel(
        recs,
        title="Latest recommendations (most active shoppers)",
        subtitle=f"{board.recs_received:,} lists received from the recommendations topic",
        border_style="magenta",
    )
