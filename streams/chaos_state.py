"""The chaos run's checks of what the servers hold at the end, against a clean replay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from models.events import Event
from streams.config import Settings


async def state_checks(settings: Settings, events: Sequence[Event]) -> list[dict[str, Any]]:
    """Dead letters, the worker's state, item-CF's counts and MF (see streams/replay.py)."""
    from streams.bench import TopicReader, partitions_of
    from streams.chaos_mf import compare_mf
    from streams.keys import Keys
    from streams.replay import cf_counts, cf_reference, differences, order_independent
    from streams.sources.itemcf import RedisItemCF
    from streams.store import MemoryStore, RedisStore
    from streams.worker import state_params

    async with TopicReader(settings, "events.dlq") as dlq:
        dead = await dlq.count()
    params = state_params(settings)
    reference = MemoryStore(params)
    await reference.process_batch(list(events))
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        actual = await RedisStore(client, params).snapshot()
        state = differences(
            order_independent(actual), order_independent(await reference.snapshot())
        )
        learnt = await RedisItemCF(client, Keys(), params).snapshot()
        counts = differences(cf_counts(learnt), cf_reference(params, events))
        mf = await compare_mf(client, params, events, partitions_of(settings, "events"))
    finally:
        await client.aclose()
    users = len(actual["users"])
    return [
        check("dead letters", dead == 0, f"{dead} records in events.dlq"),
        check("worker state", not state, _outcome(f"{users} users, exact", state)),
        check("item-CF counts", not counts, _outcome("dot, norm2, windows, exact", counts)),
        check("MF", mf.passed, mf.detail()),
    ]


def _outcome(what: str, found: list[str]) -> str:
    return f"{what}: " + ("equal" if not found else "; ".join(found))


def check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    """One row of the checks table."""
    return {"check": name, "passed": passed, "detail": detail}
