"""What ``socialrec bench`` prints and the envelope of the JSON it writes.

The table sets the worker next to the baselines run in the same invocation; the ratios say
what Faust and socialrec's own work cost on top of Kafka on this machine, which is more
portable than the absolute figures.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from streams.config import PROJECT_ROOT
from streams.tools.bench.baselines import SYSTEMS

#: How the figures were measured, written with them.
METHOD = {
    "latency": "output LogAppendTime - trigger event LogAppendTime (broker clock, 1 ms)",
    "throughput": "events / (last output append time - first output append time), "
    "all events pre-loaded flat out before the system starts",
    "latency_load": "events produced at a fixed rate (simulator pacing) after warm-up",
    "baseline": "aiokafka getmany(batch_max, batch_within_ms) -> send futures -> gather",
}


def reader_lines(reads: dict[str, Any]) -> list[str]:
    """The readers' figures, a line per kind of read."""
    pace = "closed-loop" if reads.get("rate") is None else f"paced at {reads['rate']:g}/s"
    lines = [
        f"{reads['readers']} readers ({pace}): {reads['requests_per_s']:,} requests/s over "
        f"{reads['seconds']} s, {reads['failed']} failed"
    ]
    names = {"list": "published lists", "trending": "trending global", "computed": "ranked now"}
    for kind, name in names.items():
        k = reads[kind]
        if k["requests"]:
            lines.append(
                f"  {name}: {k['requests']:,} requests, p50 {k['p50_ms']} ms, "
                f"p99 {k['p99_ms']} ms, max {k['max_ms']} ms"
            )
    return lines


def table(figures: dict[str, Any]) -> str:
    """The scenarios' table, then a line per ratio, profile and extra scenario."""
    return "\n".join([_grid(figures), *_notes(figures), *_stage_lines(figures.get("stages"))])


def _cell(value: object) -> str:
    if value is None:
        return "–"
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"


def _grid(figures: dict[str, Any]) -> str:
    """(a) and (b) per system, as a rich table captured to text."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="socialrec bench: the worker next to a forwarding Faust agent and raw aiokafka"
    )
    for name in ("scenario", "system", "events", "events/s", "p50 ms", "p99 ms", "max ms"):
        table.add_column(name, justify="left" if name in ("scenario", "system") else "right")
    tput, lat = figures["throughput"], figures["latency"]
    for system in SYSTEMS:
        r = tput[system]
        table.add_row(
            "a) throughput (pre-loaded)" if system == "worker" else "",
            system,
            _cell(r["events"]),
            _cell(r["events_per_s"]),
            "",
            "",
            "",
        )
    table.add_section()
    for system in SYSTEMS:
        r = lat[system]
        table.add_row(
            f"b) latency at {lat['rate']:g} ev/s" if system == "worker" else "",
            system,
            _cell(r["events"]),
            _cell(r["events_per_s"]),
            _cell(r["p50_ms"]),
            _cell(r["p99_ms"]),
            _cell(r["max_ms"]),
        )
    console = Console(width=110)
    with console.capture() as captured:
        console.print(table)
    return captured.get()


def _notes(figures: dict[str, Any]) -> list[str]:
    """The throughput ratios, the learner's lag, the worker's profile in (a), and (d)."""
    tput, lat = figures["throughput"], figures["latency"]
    lines = []
    ratios = ("worker_vs_passthrough", "worker_vs_faust_forward", "faust_forward_vs_passthrough")
    for name in ratios:
        ratio = tput.get(name)
        if ratio is not None:
            a, _, b = name.partition("_vs_")
            lines.append(f"throughput: {a} = {ratio:.3f} × {b}")
    for scenario, figures_of in (("a", tput), ("b", lat)):
        done = figures_of["worker"].get("learner_done_after_s")
        if done is not None:
            lines.append(f"{scenario}) the learner had learnt every event {done} s after the lists")
    prof = tput["worker"].get("profile") or {}
    if prof.get("batch_processing_s"):
        lines.append(
            f"worker in (a): {prof['batches']} batches of {prof['mean_batch_events']} events; "
            f"{prof['batch_processing_s']}s in batches, of which {prof['redis_roundtrip_s']}s "
            f"in the Redis call (Redis executed {prof['redis_server_lua_s']}s of scripts, the "
            "learner's included)"
        )
    serving = figures.get("serving")
    if serving:
        without = lat["worker"]
        lines.append(
            f"d) event path with readers: p50 {serving['p50_ms']} ms, p99 {serving['p99_ms']} ms, "
            f"max {serving['max_ms']} ms (without, in b: p50 {without['p50_ms']} ms, "
            f"p99 {without['p99_ms']} ms, max {without['max_ms']} ms)"
        )
        lines += [f"   {line}" for line in reader_lines(serving["readers"])]
    return lines


def _stage_lines(stages: dict[str, Any] | None) -> list[str]:
    """(c), the in-process stage profile, and each source's cost per event."""
    if not stages or "error" in stages:
        return []
    lines = [
        f"c) same events without Kafka: store call {stages['store_call_s']}s "
        f"(Lua in Redis {stages['redis_lua_server_s']}s, client side "
        f"{stages['store_client_side_s']}s, hiredis {stages['hiredis']}), sources "
        f"{stages.get('sources_s', 0)}s, ranking {stages['ranking_s']}s, "
        f"JSON {stages['json_s']}s = {stages['events_per_s_without_kafka']} events/s"
    ]
    for name, cost in (stages.get("sources_ms_per_event") or {}).items():
        lines.append(
            f"   source {name}: learn {cost['learn']} ms/event, "
            f"candidates {cost['candidates']} ms/event, Redis CPU meanwhile "
            f"{cost.get('redis_cpu', '?')} ms/event"
        )
    return lines


def code_version() -> str:
    """The commit measured, marked dirty when the working tree differs (figures move with it)."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def envelope(
    figures: dict[str, Any],
    *,
    command: str,
    began: float,
    load_before: Sequence[float],
) -> dict[str, Any]:
    """The figures with what they need to be read later: the command, when, the machine and
    its load, the commit and the method."""
    return {
        "command": command,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - began, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_before": list(load_before),
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "code": code_version(),
        "method": METHOD,
        **figures,
    }
