"""What the state step costs in process, on the bench's world (500 users, 2,000 items, 20,000
events, seed 11): ``RedisStore.process_batch`` over every event in batches of each SIZE, on a
real Redis with nothing else (no Kafka, no ranking), and of that the plan (models/state/plan.py:
reading the users' facts when they are not kept, and working the events out). One pass each,
seconds in all and microseconds an event.
    usage: .venv/bin/python scripts/state-costs.py REDIS_URL [SIZE ...]   (default 500 30)
The Redis database of REDIS_URL is flushed before and after. It runs on the code before the
plans too (PYTHONPATH=that tree), which has no planning to time.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from models.simulator import generate_events, generate_world
from models.state import StateParams
from streams.store import RedisStore


async def main(url: str, sizes: list[int]) -> None:
    client = aioredis.Redis.from_url(url)
    world = generate_world(11, users=500, items=2000)
    events = list(generate_events(world, 11, count=20_000, start_ts=time.time(), mean_gap_s=0.0))
    for size in sizes:
        await client.flushdb()
        store = RedisStore(client, StateParams())
        planning = [0.0]
        if hasattr(store, "_plans"):  # (a store from before the plans has none to time)
            plans = store._plans

            async def timed(*args: Any, plans: Any = plans, spent: list[float] = planning) -> Any:
                start = time.perf_counter()
                found = await plans(*args)
                spent[0] += time.perf_counter() - start
                return found

            store._plans = timed  # type: ignore[method-assign,assignment]
        start = time.perf_counter()
        for first in range(0, len(events), size):
            await store.process_batch(events[first : first + size])
        total = time.perf_counter() - start
        per_event = 1e6 / len(events)
        print(
            f"batches of {size}: {total:.2f} s ({total * per_event:.0f} us an event), "
            f"of which planning {planning[0]:.2f} s ({planning[0] * per_event:.0f} us an event)"
        )
    await client.flushdb()
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], [int(s) for s in sys.argv[2:]] or [500, 30]))
