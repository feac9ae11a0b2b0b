"""``socialrec bench``: start the infrastructure, run the chosen measurement, print its
figures and write them as JSON (docs/benchmarks.json, docs/scaling.json or docs/soak.json).

Method and scenarios: streams/tools/bench/scenarios.py; ``--workers``: streams/tools/bench/scale.py;
``--soak``: streams/tools/bench/soak.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from streams.config import PROJECT_ROOT, Settings
from streams.tools.bench.isolation import BenchError
from streams.tools.bench.readers import ReadLoad
from streams.tools.bench.report import envelope, table
from streams.tools.bench.run import WARMUP_EVENTS
from streams.tools.bench.scale import run_scale, scale_lines
from streams.tools.bench.scenarios import run_scenarios
from streams.tools.bench.soak import soak, soak_table
from streams.tools.processes import DemoError, ensure_infra, release_infra


def say(msg: str) -> None:
    """A progress line on stderr (stdout carries the figures)."""
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run_bench(
    settings: Settings,
    *,
    events: int,
    output: str | Path,
    seed: int,
    profile: Path | None = None,
    rate: float | None = None,
    seconds: float | None = None,
    soak_chunk: int = 0,
    readers: ReadLoad | None = None,
    workers: Sequence[int] = (),
) -> int:
    """``socialrec bench``: measure, print a table, write the figures to ``output``.

    ``profile`` (not on the command line) runs the throughput worker under cProfile and
    writes the stats there; its figures are then slower than a plain run. ``soak_chunk`` > 0
    runs the soak instead (streams/tools/bench/soak.py): ``events`` in chunks of that many.
    ``readers`` adds scenario (d): (b)'s worker again with those HTTP readers on a
    `socialrec api`. ``workers`` (counts) runs scenario (e) instead (streams/tools/bench/scale.py).
    """
    if events < WARMUP_EVENTS:
        print(f"bench: need --events >= {WARMUP_EVENTS}", file=sys.stderr)
        return 2
    # aiokafka logs (even at error level) while fresh topics elect leaders and while probing
    # for a broker; both are expected and retried here, and real failures raise anyway.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        started = ensure_infra(settings)
    except Exception as exc:
        print(f"bench: could not start the infrastructure: {exc}", file=sys.stderr)
        return 1
    began = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    figures: dict[str, Any]
    try:
        if soak_chunk > 0:
            run = soak(settings, events=events, chunk=soak_chunk, seed=seed, say=say)
            figures = {"soak": asyncio.run(run)}
        elif workers:
            figures = {"scale": asyncio.run(run_scale(settings, workers, events, seed, say))}
        else:
            run = run_scenarios(settings, events, seed, say, profile, rate, seconds, readers)
            figures = asyncio.run(run)
    except (BenchError, DemoError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        release_infra(settings, started)
    command = (
        f"socialrec bench --events {events} --seed {seed}"
        + (f" --rate {rate:g}" if rate is not None else "")
        + (f" --soak --chunk {soak_chunk}" if soak_chunk else "")
        + (f" --readers {readers.readers}" if readers else "")
        + (f" --read-rate {readers.rate:g}" if readers and readers.rate is not None else "")
        + (f" --workers {','.join(map(str, workers))}" if workers else "")
    )
    figures = envelope(figures, command=command, began=began, load_before=load_before)
    _publish(figures, output)
    return 0


def _publish(figures: dict[str, Any], output: str | Path) -> None:
    """Write the figures to ``output`` (relative to the current directory) and print them."""
    path = Path(output)
    if not path.is_absolute():
        path = Path.cwd() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2) + b"\n")
    if "soak" in figures:
        print(soak_table(figures["soak"]))
    elif "scale" in figures:
        print("\n".join(scale_lines(figures["scale"]["workers"])))
    else:
        print(table(figures))
    shown = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
    print(f"figures written to {shown}")
