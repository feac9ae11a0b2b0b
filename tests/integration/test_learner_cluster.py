"""The learner's sources on a Redis Cluster learn and erase exactly as on one Redis.

Each of their steps is one slot and names a key of it (tests/integration/test_slots.py), so
the project's cluster client (streams/redis_cluster.py) sends each to the master of its slot
and nothing else changes: a simulated stream learnt in the learner's batches (each a
partition after another, as the consumer hands them over), then two users erased, leaves
the same item-CF, MF, user-CF, FBT and followees state on both. (The content source is left
out: its catalogue is still written in a ``MULTI``, docs/cluster.md.)
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from models.simulator import generate_events, generate_world
from streams.config import Settings
from streams.keys import Keys
from streams.metrics import WorkerMetrics
from streams.runtime.worker import state_params
from streams.sources.factory import build_sources
from streams.sources.itemcf import RedisItemCF
from streams.sources.progress import Progress
from streams.sources.snapshots import fbt_state, followees_state, usercf_state
from tests.integration.test_source_mf import stored_rows

T0 = 1_796_000_000.0
BATCH = 150


async def _learnt_then_erased(client: Any, settings: Settings) -> tuple[Any, ...]:
    keys = Keys()
    without_content = settings.model_copy(update={"sources": ("mf", "user_cf", "fbt", "followees")})
    sources, _ = build_sources(client, without_content, state_params(settings), WorkerMetrics())
    world = generate_world(seed=5, users=40, items=60)
    events = list(generate_events(world, seed=5, count=600, start_ts=T0))
    offsets = {e.event_id: n for n, e in enumerate(events)}
    for start in range(0, len(events), BATCH):
        batch = sorted(events[start : start + BATCH], key=lambda e: keys.partition_of(e.user_id))
        positions = {
            e.event_id: (e.user_id, f"events:{keys.partition_of(e.user_id)}", offsets[e.event_id])
            for e in batch
        }
        await sources.learn(batch, Progress(client, keys, positions))
    erased = await sources.erase(sorted({e.user_id for e in events})[:2])
    itemcf = next(m for m in sources.models if isinstance(m, RedisItemCF))
    return (
        erased,
        await itemcf.snapshot(),
        await stored_rows(client, keys.prefix),
        await client.get(keys.global_("mf_sampler")),
        await usercf_state(client, keys),
        await fbt_state(client, keys),
        await followees_state(client, keys),
    )


async def test_the_sources_learn_and_erase_on_a_redis_cluster_as_on_one_redis(
    settings: Settings, redis_client: aioredis.Redis, redis_cluster_client: RedisCluster
) -> None:
    one = await _learnt_then_erased(redis_client, settings)
    assert all(one[1:]), "every source learnt something"
    assert await _learnt_then_erased(redis_cluster_client, settings) == one
