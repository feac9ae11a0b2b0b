"""The simulator's stream written as ``socialrec eval`` CSV, for quality figures::

.venv/bin/socialrec simulate --csv sim.csv --catalog-csv catalog.csv --users 2000 --items 5000
"""

from __future__ import annotations

import csv
import sys
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


def write_simulated(
    events_path: str,
    catalog_path: str | None,
    *,
    users: int,
    items: int,
    events: int,
    seed: int,
    mean_gap_s: float,
) -> int:
    """``socialrec simulate --csv``: :func:`export_simulated` into files; the exit status."""
    with ExitStack() as files:
        events_out = files.enter_context(Path(events_path).open("w", encoding="utf-8", newline=""))
        catalog_out = (
            files.enter_context(Path(catalog_path).open("w", encoding="utf-8", newline=""))
            if catalog_path
            else None
        )
        rows = export_simulated(
            events_out,
            users=users,
            items=items,
            events=events,
            seed=seed,
            catalog_out=catalog_out,
            mean_gap_s=mean_gap_s,
        )
    print(f"{rows:,} events written to {events_path}", file=sys.stderr)
    return 0
