"""The short chaos run: 10,000 simulator events at a steady rate while the worker is killed,
Redis is killed and frozen and the broker restarts, once each (streams/tools/chaos.py). Every check
of the run must pass: lists after every user's last event, no dead letter, the worker's state,
item-CF's counts and MF against a clean replay, and a publish after every fault.

It breaks the servers of the test run itself (Redis and Kafka started by `socialrec infra`),
and leaves them running again whatever happens.
"""

from __future__ import annotations

import pytest

from streams.config import Settings
from streams.ops import infra
from streams.tools.chaos import ONE_OF_EACH, Plan
from streams.tools.chaos_report import table
from streams.tools.chaos_run import run_chaos
from streams.tools.processes import free_port
from tests.conftest import unavailable

SHORT = Plan(events=10_000, rate=250.0, seed=3, freeze_s=10.0, faults=ONE_OF_EACH)


@pytest.fixture
def breakable(settings: Settings) -> Settings:
    """The test's settings, once both servers are known to be ``socialrec infra``'s."""
    for service in ("kafka", "redis"):
        if infra.status(settings, service)[0].pid is None:
            unavailable(f"{service} was not started by `socialrec infra up`: cannot break it")
    return settings.model_copy(
        update={"app_id": f"chaos-{settings.topic_prefix.strip('.')}", "web_port": free_port()}
    )


async def test_a_short_chaos_run_loses_nothing(breakable: Settings) -> None:
    figures = await run_chaos(breakable, SHORT)
    print(table(figures))
    assert {row["fault"] for row in figures["faults"]} == set(ONE_OF_EACH)
    failed = [c for c in figures["checks"] if not c["passed"]]
    assert not failed, table(figures)
