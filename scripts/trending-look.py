"""What one trending look costs at a busy window: the global scope with 24 buckets of 5 s of
about 4,000 items each (1,000 events/s over 50,000 items), one event written into the newest
bucket between looks, as a state step writes it (weight, count and the bucket's version).
Prints the first look and the median / min / max of the 40 after it.

Uses the Redis of the environment (SOCIALREC_REDIS_URL; `socialrec infra up` first), under a
key prefix of its own that it deletes at the end.
    usage: .venv/bin/python scripts/trending-look.py
"""

from __future__ import annotations

import asyncio
import math
import random
import time

from models.state import StateParams
from streams.config import Settings
from streams.keys import Keys
from streams.security import redis_client_for
from streams.store import RedisStore, TrendingParams

BUCKET_ITEMS = 4_000
CATALOGUE = 50_000
LOOKS = 41


async def main() -> None:
    client = redis_client_for(Settings())
    keys = Keys(prefix="trending-look:")
    params = TrendingParams(window_s=60.0, bucket_s=5.0)
    now = time.time()
    clock = math.floor(now / params.bucket_s)
    rng = random.Random(3)
    try:
        pipe = client.pipeline(transaction=False)
        for bucket in range(clock - 2 * params.span + 1, clock + 1):
            items = {f"i{rng.randrange(CATALOGUE)}": rng.random() * 5 for _ in range(BUCKET_ITEMS)}
            counts = {item: rng.randrange(1, 5) for item in items}
            pipe.hset(keys.trending(bucket, "global", 0), mapping={**items, "": now})
            pipe.hset(keys.trending(bucket, "global", 0, counts=True), mapping={**counts, "": 1})
        await pipe.execute()
        store = RedisStore(client, StateParams(), keys=keys, trending=params)
        times = []
        for _ in range(LOOKS):
            item = f"i{rng.randrange(CATALOGUE)}"
            await client.hincrbyfloat(keys.trending(clock, "global", 0), item, 1.0)
            await client.hincrby(keys.trending(clock, "global", 0, counts=True), item, 1)
            await client.hincrby(keys.trending(clock, "global", 0, counts=True), "", 1)
            began = time.perf_counter()
            await store.trending(["global"], now, 100)
            times.append((time.perf_counter() - began) * 1e3)
        later = sorted(times[1:])
        print(
            f"first look {times[0]:.1f} ms; later looks: median {later[len(later) // 2]:.1f} "
            f"ms, min {later[0]:.1f} ms, max {later[-1]:.1f} ms"
        )
    finally:
        async for key in client.scan_iter(match=f"{keys.prefix}*", count=1_000):
            await client.delete(key)
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
