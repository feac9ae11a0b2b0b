"""The store's layout record: an empty store gets it, a store laid out for another partition
count, of an older key layout or of the layout before partition tags is refused with what
to do."""

from __future__ import annotations

import redis.asyncio as aioredis

from streams.keys import LAYOUT_VERSION, Keys
from streams.store.layout import check_layout


async def test_an_empty_store_gets_the_record_and_passes_from_then_on(
    redis_client: aioredis.Redis,
) -> None:
    keys = Keys()
    assert await check_layout(redis_client, keys) is None
    stored = await redis_client.hgetall(keys.layout())
    assert stored == {b"version": str(LAYOUT_VERSION).encode(), b"partitions": b"6"}
    assert await check_layout(redis_client, keys) is None


async def test_a_store_laid_out_for_another_partition_count_is_refused(
    redis_client: aioredis.Redis,
) -> None:
    assert await check_layout(redis_client, Keys(partitions=3)) is None
    problem = await check_layout(redis_client, Keys())
    assert problem is not None
    assert "laid out for 3 partitions" in problem
    assert "declares 6" in problem
    assert "rebuild the state" in problem


async def test_a_store_of_an_older_key_layout_is_refused(redis_client: aioredis.Redis) -> None:
    keys = Keys()
    await redis_client.hset(keys.layout(), mapping={"version": "2", "partitions": "6"})
    problem = await check_layout(redis_client, keys)
    assert problem is not None
    assert f"key layout 2, and this version of socialrec reads layout {LAYOUT_VERSION}" in problem
    assert "rebuild the state" in problem


async def test_state_of_the_layout_before_partition_tags_is_refused(
    redis_client: aioredis.Redis,
) -> None:
    await redis_client.hset("sr:offsets", "events:0", 41)  # how layout 1 kept every offset
    problem = await check_layout(redis_client, Keys())
    assert problem is not None
    assert "older key layout" in problem
    assert not await redis_client.exists(Keys().layout()), "nothing written for a refused store"
