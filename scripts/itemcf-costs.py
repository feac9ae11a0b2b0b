"""What item-CF's learning costs, alone, on the bench's world (500 users × 2,000 items): the
learner's item-CF source (streams/sources/itemcf.py) learns the simulator's stream in batches
of BATCH events, each batch one partition's users after another as the learner's consumer
hands them over, against the Redis of the environment (SOCIALREC_REDIS_URL). WARM events
first fill the windows, rows and neighbour lists; then EVENTS are timed: the process's CPU and
Redis's (`INFO`) in microseconds an event, and the Redis commands the scripts ran, an event.
    usage: .venv/bin/python scripts/itemcf-costs.py [EVENTS [BATCH [WARM]]]  (20,000 200 20,000)
The Redis database is flushed before and after.
"""

from __future__ import annotations

import asyncio
import sys
import time

from models.simulator import generate_events, generate_world
from streams.config import Settings
from streams.keys import Keys
from streams.runtime.worker import state_params
from streams.security import redis_client_for
from streams.sources.itemcf import RedisItemCF
from streams.sources.writes import partition_order
from streams.tools.bench.isolation import redis_cpu_s
from streams.tools.bench.scenarios import ITEMS, USERS
from streams.tools.bench.stages import redis_commands


async def main(count: int, batch: int, warm: int) -> None:
    settings = Settings()
    client = redis_client_for(settings)
    await client.flushdb()
    keys = Keys()
    itemcf = RedisItemCF(client, keys, state_params(settings))
    world = generate_world(11, users=USERS, items=ITEMS)
    stream = generate_events(world, 11, count=warm + count, start_ts=time.time(), mean_gap_s=1e-3)
    events = list(stream)  # stamped as at 1,000 events a second
    batches = [partition_order(keys, events[n : n + batch]) for n in range(0, len(events), batch)]
    try:
        for chunk in batches[: warm // batch]:
            await itemcf.learn(chunk)
        before = await client.info("all")
        began = time.process_time()
        for chunk in batches[warm // batch :]:
            await itemcf.learn(chunk)
        process = time.process_time() - began
        after = await client.info("all")
    finally:
        await client.flushdb()
        await client.aclose()
    redis = redis_cpu_s(after) - redis_cpu_s(before)
    scripts = after["cmdstat_evalsha"]["calls"] - before.get("cmdstat_evalsha", {}).get("calls", 0)
    calls = {name: n for name, (n, _) in redis_commands(before, after, top=1_000).items()}
    commands = sorted(calls.items(), key=lambda kv: -kv[1])
    print(
        f"{count:,} events in batches of {batch}: learner {1e6 * process / count:.0f} µs an "
        f"event, Redis {1e6 * redis / count:.0f} µs; {scripts / count:.2f} scripts and "
        f"{sum(calls.values()) / count:.1f} commands an event: "
        + ", ".join(f"{name} {n / count:.1f}" for name, n in commands[:8])
    )


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    asyncio.run(main(*(args + [20_000, 200, 20_000][len(args) :])))
