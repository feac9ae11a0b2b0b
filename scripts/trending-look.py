"""What one trending look costs at a busy window: the global scope with 24 buckets of 5 s of
about 4,000 items each (1,000 events/s over 50,000 items), one event written into the newest
bucket between looks, as a state step writes it (weight, count and the bucket's version).
Prints the first look and the median / min / max of the 40 after it.

With EVENTS, many scopes instead: 2,000 items in 20 categories and 30 merchants, 30 live
streams (81 scopes), two windows of events written by the store's state step, then 40 ticks
of EVENTS events each followed by a look of every scope; prints the looks' mean, median and
largest CPU time (``process_time``: the look alone, nothing else runs).

Uses the Redis of the environment (SOCIALREC_REDIS_URL; `socialrec infra up` first), under a
key prefix of its own that it deletes at the end.
    usage: .venv/bin/python scripts/trending-look.py [EVENTS]
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import sys
import time
from typing import Any

from models.content import CatalogRecord
from models.events import Event, EventType
from models.state import StateParams
from streams.config import Settings
from streams.keys import Keys
from streams.security import redis_client_for
from streams.store import RedisStore, TrendingParams

BUCKET_ITEMS = 4_000
CATALOGUE = 50_000
LOOKS = 41
# The many-scopes world (EVENTS given).
ITEMS, CATEGORIES, MERCHANTS, STREAMS = 2_000, 20, 30, 30


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
            pipe.hset(keys.trending_versions(bucket, 0), "global", 1)
        await pipe.execute()
        store = RedisStore(client, StateParams(), keys=keys, trending=params)
        times = []
        for _ in range(LOOKS):
            item = f"i{rng.randrange(CATALOGUE)}"
            await client.hincrbyfloat(keys.trending(clock, "global", 0), item, 1.0)
            await client.hincrby(keys.trending(clock, "global", 0, counts=True), item, 1)
            version = await client.hincrby(keys.trending(clock, "global", 0, counts=True), "", 1)
            await client.hset(keys.trending_versions(clock, 0), "global", version)
            began = time.perf_counter()
            await store.trending(["global"], now, 100)
            times.append((time.perf_counter() - began) * 1e3)
        later = sorted(times[1:])
        print(
            f"first look {times[0]:.1f} ms; later looks: median {later[len(later) // 2]:.1f} "
            f"ms, min {later[0]:.1f} ms, max {later[-1]:.1f} ms"
        )
    finally:
        await _clean_up(client, keys)


async def _clean_up(client: Any, keys: Keys) -> None:
    """Delete every key under the script's prefix, then close the client."""
    async for key in client.scan_iter(match=f"{keys.prefix}*", count=1_000):
        await client.delete(key)
    await client.aclose()


def _events(rng: random.Random, count: int, arrival: float, tag: str) -> list[Event]:
    """Views of popular-skewed items, a third of them in a live stream."""
    return [
        Event(
            f"{tag}-{n}",
            EventType.VIEW,
            f"u{rng.randrange(500)}",
            arrival,
            item_id=f"i{int(rng.paretovariate(0.8)) % ITEMS}",
            stream_id=f"live-{rng.randrange(STREAMS)}" if rng.random() < 0.3 else None,
        )
        for n in range(count)
    ]


async def many_scopes(per_tick: int) -> None:
    client = redis_client_for(Settings())
    keys = Keys(prefix="trending-look:")
    rng, now = random.Random(1), time.time()
    scopes = ["global", *(f"stream:live-{k}" for k in range(STREAMS))]
    scopes += [f"category:c{k}" for k in range(CATEGORIES)]
    scopes += [f"merchant:m{k}" for k in range(MERCHANTS)]
    try:
        store = RedisStore(client, StateParams(), keys=keys)
        await store.put_items(
            [
                CatalogRecord(
                    f"i{k}", category=f"c{k % CATEGORIES}", merchant_id=f"m{k % MERCHANTS}"
                )
                for k in range(ITEMS)
            ]
        )
        for ago in range(120, 0, -2):  # two windows
            events = _events(rng, 500, now - ago, f"h{ago}")
            await store.process_batch(events, [now - ago] * len(events))
        await store.trending(scopes, now, 100)
        times = []
        for tick in range(LOOKS - 1):
            at = now + tick * 0.5
            events = _events(rng, per_tick, at, f"t{tick}")
            await store.process_batch(events, [at] * len(events))
            began = time.process_time()
            await store.trending(scopes, at + 0.01, 100)
            times.append((time.process_time() - began) * 1e3)
        print(
            f"{len(scopes)} scopes, {per_tick} events a tick: look CPU mean "
            f"{statistics.mean(times):.1f} ms, median {statistics.median(times):.1f} ms, "
            f"max {max(times):.1f} ms"
        )
    finally:
        await _clean_up(client, keys)


if __name__ == "__main__":
    asyncio.run(many_scopes(int(sys.argv[1])) if len(sys.argv) > 1 else main())
