"""What the learner costs in process at the soak's scale (100,000 users × 50,000 items): the
learner of streams/runtime/learner.py learns the simulator's stream in batches of BATCH
records (2,000 by default: its largest, as when it catches up; one that keeps up at 1,000
events a second gathers about 200) on a real Redis with nothing else (no Kafka: the records
are built here). Before each batch the worker's state step applies it, untimed, so the users'
exclusions are what the learner would read. The records are stamped as if appended at RATE
events a second (default 1,000) from the start, so the learner's lag paces its refreshes as
in its own loop. Per chunk: the learner's events a second, and its milliseconds an event:
learning (each source's own), refreshing the pools (each source's candidates) and the rest.
The sources learn side by side, and propose side by side: their own figures overlap, and
add up to more than the whole.
    usage: [RATE=1000] [BATCH=2000] [KEEP=1] .venv/bin/python scripts/learner-costs.py REDIS_URL
                                                       [EVENTS [CHUNK]]  (200,000 and 50,000)
The Redis database of REDIS_URL is flushed before, and after unless KEEP is set.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from models.simulator import generate_events, generate_world
from streams.config import load_settings
from streams.keys import Keys
from streams.metrics import WorkerMetrics
from streams.pipeline import InboundRecord
from streams.runtime.learner import LEARN_BATCH_MAX, Learner
from streams.runtime.learner_state import LearnerState
from streams.runtime.worker import state_params
from streams.sources.factory import build_sources
from streams.store import EXCLUSIONS_ONLY, RedisStore
from streams.tools.bench.soak import SOAK_ITEMS, SOAK_USERS

#: The rate the records are stamped with (their broker time): the learner's lag, which paces its
#: refreshes (streams/runtime/refresh.py), is measured against it.
RATE = float(os.environ.get("RATE", "1000"))
#: Records a batch (the module's docstring).
BATCH = int(os.environ.get("BATCH", str(LEARN_BATCH_MAX)))


def timed(spent: dict[str, float], name: str, call: Callable[..., Awaitable[Any]]) -> Any:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start

    return wrapper


async def main(url: str, count: int, chunk: int) -> None:
    settings = load_settings(redis_url=url)
    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    params = state_params(settings)
    worker_store = RedisStore(client, params)
    store = RedisStore(client, params, read=EXCLUSIONS_ONLY)
    sources, _ = build_sources(client, settings, store.params, WorkerMetrics())
    learner = Learner(settings, store, sources, LearnerState(client), WorkerMetrics())
    spent: dict[str, float] = defaultdict(float)
    for source in sources.models:
        name = source.source.value
        source.learn = timed(spent, f"learn {name}", source.learn)  # type: ignore[method-assign]
        source.candidates = timed(spent, f"pools {name}", source.candidates)  # type: ignore[method-assign]
    sources.learn = timed(spent, "learn", sources.learn)  # type: ignore[method-assign]
    refresh = timed(spent, "refresh", learner.refresh)

    async def refreshing(users: Sequence[str], now: float) -> None:
        spent["users refreshed"] += len(users)
        await refresh(users, now)

    learner.refresh = refreshing  # type: ignore[method-assign]

    world = generate_world(11, users=SOAK_USERS, items=SOAK_ITEMS)
    topic, keys = settings.topic("events"), Keys()
    offsets: dict[int, int] = defaultdict(int)
    stream = generate_events(world, 11, count=count, start_ts=time.time(), mean_gap_s=0.0)
    done, learnt_s, batch = 0, 0.0, []
    began = time.time()
    print(
        f"{'events':>8} {'events/s':>9}  ms an event: learn (sources), refresh (pools), rest; "
        "users refreshed an event"
    )
    for event in stream:
        batch.append(event)
        if len(batch) < BATCH:
            continue
        await worker_store.process_batch(batch)
        records = []
        for n, e in enumerate(batch, start=done):
            part = keys.partition_of(e.user_id)
            # Appended at RATE events a second from the start, as a producer at that rate would.
            at = began + n / RATE
            value, key = e.to_json(), e.user_id.encode()
            records.append(InboundRecord(value, key, topic, part, offsets[part], at))
            offsets[part] += 1
        start = time.perf_counter()
        await learner.learn(records)
        learnt_s += time.perf_counter() - start
        # As the learner's loop does: the refresh interval follows its lag.
        learner.refreshes.pace(time.time() - records[-1].timestamp)
        done += len(batch)
        batch = []
        if done % chunk == 0:
            print(row(done, chunk, learnt_s, spent), flush=True)
            learnt_s = 0.0
            spent.clear()
    if not os.environ.get("KEEP"):
        await client.flushdb()
    await client.aclose()


def row(done: int, chunk: int, learnt_s: float, spent: dict[str, float]) -> str:
    ms = 1000.0 / chunk

    def each(kind: str) -> str:
        parts = sorted((k.split()[1], v) for k, v in spent.items() if k.startswith(kind + " "))
        return ", ".join(f"{name} {v * ms:.3f}" for name, v in parts if v)

    rest = learnt_s - spent["learn"] - spent["refresh"]
    return (
        f"{done:>8,} {chunk / learnt_s:>9,.0f}  {spent['learn'] * ms:.3f} ({each('learn')}), "
        f"{spent['refresh'] * ms:.3f} ({each('pools')}), {rest * ms:.3f}; "
        f"{spent['users refreshed'] / chunk:.2f} users refreshed an event"
    )


if __name__ == "__main__":
    args = sys.argv[1:] + ["200000", "50000"][len(sys.argv) - 2 :]
    asyncio.run(main(args[0], int(args[1]), int(args[2])))
