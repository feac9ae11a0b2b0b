"""``socialrec chaos`` on the command line: an isolated run, its table, and docs/reliability.md.

The run gets its own topics (deleted afterwards), app id, web port and an
empty Redis database (claimed like the benchmark's), so it neither sees nor disturbs other
data on the same servers. The servers themselves are broken, though: run it on servers of
your own (``make chaos`` starts and stops them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Final

from streams.config import Settings
from streams.tools.chaos import Plan

#: The part of docs/reliability.md the run rewrites.
BEGIN: Final = "<!-- chaos:begin -->"
END: Final = "<!-- chaos:end -->"


def table(figures: dict[str, Any]) -> str:
    """The faults and the checks as markdown tables.

    >>> print(table({"faults": [{"fault": "redis_kill", "at_event": 9, "outage_s": 1.0,
    ...     "to_next_publish_s": 2.0, "after_repair_s": 1.0}],
    ...     "checks": [{"check": "lists", "passed": True, "detail": "0 users"}]}))
    | fault | at event | outage s | to next publish s | after repair s |
    |---|---:|---:|---:|---:|
    | redis_kill | 9 | 1.0 | 2.0 | 1.0 |
    <BLANKLINE>
    | check | result | detail |
    |---|---|---|
    | lists | pass | 0 users |
    """
    lines = [
        "| fault | at event | outage s | to next publish s | after repair s |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in figures["faults"]:
        lines.append(
            f"| {row['fault']} | {row['at_event']:,} | {row['outage_s']} | "
            f"{row['to_next_publish_s']} | {row['after_repair_s']} |"
        )
    lines += ["", "| check | result | detail |", "|---|---|---|"]
    for check in figures["checks"]:
        result = "pass" if check["passed"] else "**FAIL**"
        lines.append(f"| {check['check']} | {result} | {check['detail']} |")
    return "\n".join(lines)


def write_doc(path: Path, figures: dict[str, Any]) -> None:
    """Put the run's table and figures between the markers of ``path``."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path} has no {BEGIN} … {END} section to keep the run in")
    body = "\n".join(
        [
            BEGIN,
            table(figures),
            "",
            "```json",
            json.dumps(figures, indent=1),
            "```",
            END,
        ]
    )
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    path.write_text(pattern.sub(lambda _: body, text, count=1))


def run_command(settings: Settings, plan: Plan, doc: Path | None) -> int:
    """``socialrec chaos``: 0 if every check passed, 1 if one failed."""
    # The clients' reconnect attempts while a server is down are the point of the run.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    figures = asyncio.run(_isolated(settings, plan))
    print(table(figures))
    if doc is not None:
        write_doc(doc, figures)
        print(f"kept in {doc}")
    return 0 if figures["passed"] else 1


async def _isolated(settings: Settings, plan: Plan) -> dict[str, Any]:
    from streams.ops.topics import apply_topics, delete_topics_with_prefix
    from streams.tools.bench.isolation import claim_redis_db, reset_redis_db, run_settings
    from streams.tools.chaos_run import run_chaos

    run_id = f"{int(time.time())}-chaos"
    _db, redis_url = await claim_redis_db(settings, run_id)
    s = run_settings(settings, run_id, "chaos", "worker", redis_url)
    await apply_topics(s)
    try:
        figures = await run_chaos(s, plan)
    finally:
        await delete_topics_with_prefix(s)
        await reset_redis_db(settings, redis_url, run_id, release=True)
    figures["run"] = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    return figures
