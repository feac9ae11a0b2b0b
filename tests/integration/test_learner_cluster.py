"""The learner's sources on a Redis Cluster learn and erase exactly as on one Redis.

Each of their steps is one slot and names a key of it (tests/integration/test_slots.py), so
the project's cluster client (streams/redis_cluster.py) sends each to the master of its slot
and nothing else changes: a simulated stream learnt in the learner's batches (each a
partition after another, as the learner hands them over), after a catalogue put and before
a delete, then two users erased, leaves the same item-CF, MF, user-CF, FBT, followees and
content state on both.
"""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from models.content import CatalogRecord
from models.simulator import generate_events, generate_world
from streams.config import Settings
from streams.keys import Keys, decoded
from streams.metrics import WorkerMetrics
from streams.runtime.worker import state_params
from streams.sources.content import RedisContent
from streams.sources.factory import build_sources
from streams.sources.itemcf import RedisItemCF
from streams.sources.mf_batch import stored_sampler
from streams.sources.progress import Progress
from streams.sources.snapshots import fbt_state, followees_state, usercf_state
from streams.sources.writes import partition_order
from tests.integration.test_source_mf import stored_rows

T0 = 1_796_000_000.0
BATCH = 150


async def _learnt_then_erased(client: Any, settings: Settings) -> tuple[Any, ...]:
    keys = Keys()
    sources, content = build_sources(client, settings, state_params(settings), WorkerMetrics())
    assert isinstance(content, RedisContent)
    world = generate_world(seed=5, users=40, items=60)
    await content.put_items(
        [CatalogRecord(i.item_id, i.title, i.category, i.brand) for i in world.items]
    )
    events = list(generate_events(world, seed=5, count=600, start_ts=T0))
    offsets = {e.event_id: n for n, e in enumerate(events)}
    for start in range(0, len(events), BATCH):
        batch = partition_order(keys, events[start : start + BATCH])
        positions = {
            e.event_id: (e.user_id, f"events:{keys.partition_of(e.user_id)}", offsets[e.event_id])
            for e in batch
        }
        await sources.learn(batch, Progress(client, keys, positions))
    await content.delete_items([world.items[0].item_id])
    erased = await sources.erase(sorted({e.user_id for e in events})[:2])
    itemcf = next(m for m in sources.models if isinstance(m, RedisItemCF))
    return (
        erased,
        await itemcf.snapshot(),
        await stored_rows(client, keys.prefix),
        await stored_sampler(client, keys),
        await usercf_state(client, keys),
        await fbt_state(client, keys),
        await followees_state(client, keys),
        await _content_state(client, keys),
    )


async def _content_state(client: Any, keys: Keys) -> dict[str, Any]:
    """The catalogue's records, and each profile and content neighbour list."""
    found: dict[str, Any] = {"records": await client.hgetall(keys.global_("content_items"))}
    async for raw in client.scan_iter(match=f"{keys.prefix}*", count=1000):
        key = decoded(raw)
        field = keys.parse(key)[2]
        if field == "content_profile":
            found[key] = await client.get(key)
        elif field == "content_sim":
            found[key] = cast(list[Any], await client.zrange(key, 0, -1, withscores=True))
    return found


async def test_the_sources_learn_and_erase_on_a_redis_cluster_as_on_one_redis(
    settings: Settings, redis_client: aioredis.Redis, redis_cluster_client: RedisCluster
) -> None:
    one = await _learnt_then_erased(redis_client, settings)
    assert all(one[1:]), "every source learnt something"
    fields = {Keys().parse(key)[2] for key in one[-1] if key != "records"}
    assert fields == {"content_profile", "content_sim"}, "content learnt profiles and lists"
    assert await _learnt_then_erased(redis_cluster_client, settings) == one
