"""The simulator's stream written as ``socialrec eval`` CSV, for quality figures::

.venv/bin/python -m streams.tools.evaluate simulate --out sim.csv --catalog-out catalog.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from streams.tools.evaluate.reading import EVENT_COLUMNS, OPTIONAL_COLUMNS


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
    >>> from streams.tools.evaluate.reading import read_events
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
    """``python -m streams.tools.evaluate simulate --out FILE [...]``: export a simulated stream."""
    parser = argparse.ArgumentParser(prog="python -m streams.tools.evaluate")
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
    with ExitStack() as files:
        events_out = files.enter_context(Path(args.out).open("w", encoding="utf-8", newline=""))
        catalog_out = (
            files.enter_context(Path(args.catalog_out).open("w", encoding="utf-8", newline=""))
            if args.catalog_out
            else None
        )
        rows = export_simulated(
            events_out,
            users=args.users,
            items=args.items,
            events=args.events,
            seed=args.seed,
            catalog_out=catalog_out,
            mean_gap_s=args.mean_gap_s,
        )
    print(f"{rows:,} events written to {args.out}", file=sys.stderr)
    return 0
