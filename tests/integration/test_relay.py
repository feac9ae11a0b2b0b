"""What a step does to users of other partitions is relayed: delivered at most once, never to
a target erased since, found again after a worker died before delivering, and gone from every
relay list once delivered (streams/store/relay.py)."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from models.events import Event, EventType
from models.state import Outcome, StateParams
from streams.keys import Keys, decoded
from streams.store import MemoryStore, RedisStore

T0 = 1_700_000_000.0
KEYS = Keys()


def apart(count: int) -> list[str]:
    """``count`` user ids, each in another partition."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < count:
        found.setdefault(KEYS.partition_of(f"u{n}"), f"u{n}")
        n += 1
    return list(found.values())


def social(ann: str, bob: str) -> list[Event]:
    return [
        Event("e1", EventType.SHARE, ann, T0, item_id="phone", target_user_id=bob),
        Event("e2", EventType.FOLLOW, ann, T0 + 1, target_user_id=bob),
        Event("e3", EventType.VIEW, bob, T0 + 2, item_id="case"),
    ]


async def cannot_deliver(pending: Any) -> None:
    """A delivery that fails after the batch's steps were applied."""
    raise ConnectionError("Redis went away after the steps")


@pytest.fixture
async def undelivered(
    real_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> tuple[RedisStore, str, str]:
    """A store whose batch (ann shares with and follows bob, in another partition) was
    applied but not delivered; its next deliveries work."""
    ann, bob = apart(2)
    store = RedisStore(real_client, StateParams())
    monkeypatch.setattr(store, "_deliver", cannot_deliver)
    result = await store.process_batch(social(ann, bob))  # applied: not failed for that
    monkeypatch.undo()
    assert set(result.outcomes) == {Outcome.APPLIED}
    assert not await real_client.exists(KEYS.user(bob, "followers"))
    assert not await real_client.exists(KEYS.user(bob, "senders"))
    return store, ann, bob


async def relay_lists(client: aioredis.Redis) -> list[str]:
    entries: list[str] = []
    for p in range(KEYS.partitions):
        entries += [decoded(e) for e in await client.lrange(KEYS.partition(p, "relay"), 0, -1)]
    return entries


async def test_a_share_and_a_follow_reach_a_user_of_another_partition(
    real_client: aioredis.Redis,
) -> None:
    ann, bob = apart(2)
    real, reference = RedisStore(real_client, StateParams()), MemoryStore(StateParams())
    events = social(ann, bob)
    assert (await real.process_batch(events)).outcomes == (
        await reference.process_batch(events)
    ).outcomes
    assert await real.snapshot() == await reference.snapshot()
    assert await real_client.zscore(KEYS.user(bob, "inbox"), f"{ann}\tphone") == T0
    assert await real.audience([ann]) == {bob}
    # The next step of ann's partition trims what was delivered.
    await real.process_batch([Event("e4", EventType.VIEW, ann, T0 + 3, item_id="tv")])
    assert await relay_lists(real_client) == []


async def test_an_entry_delivered_twice_changes_nothing(real_client: aioredis.Redis) -> None:
    ann, bob = apart(2)
    store = RedisStore(real_client, StateParams())
    await store.process_batch(social(ann, bob))
    entries = await relay_lists(real_client)
    assert len(entries) == 2
    before = await store.snapshot()
    await real_client.zrem(KEYS.user(bob, "inbox"), f"{ann}\tphone")  # as if bob's list aged
    await store._deliver({KEYS.partition_of(ann): entries})
    assert not await real_client.zscore(KEYS.user(bob, "inbox"), f"{ann}\tphone")
    await real_client.zadd(KEYS.user(bob, "inbox"), {f"{ann}\tphone": T0})
    assert await store.snapshot() == before


async def test_what_was_not_delivered_is_delivered_by_the_next_owner(
    real_client: aioredis.Redis, undelivered: tuple[RedisStore, str, str]
) -> None:
    _, ann, bob = undelivered

    successor = RedisStore(real_client, StateParams())
    await successor.positions([f"events:{KEYS.partition_of(ann)}"])  # on assignment
    reference = MemoryStore(StateParams())
    await reference.process_batch(social(ann, bob))
    assert await successor.snapshot() == await reference.snapshot()
    assert await relay_lists(real_client) == []


async def test_a_target_erased_before_the_delivery_gets_nothing(
    real_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann, bob = apart(2)
    store = RedisStore(real_client, StateParams())
    await store.process_batch([Event("e0", EventType.VIEW, bob, T0 - 5, item_id="tv")])
    held: list[Any] = []

    async def hold(pending: Any) -> None:
        held.append(pending)

    monkeypatch.setattr(store, "_deliver", hold)
    await store.process_batch(social(ann, bob)[:2])
    monkeypatch.undo()
    await store.mark_erased({bob: T0 + 10})  # bob's erasure, after the share arrived
    await store.erase_users([bob])  # delivers what was held: bob gets none of it
    for field in ("inbox", "senders", "followers"):
        assert not await real_client.exists(KEYS.user(bob, field)), field
    # and ann's sets that named him were emptied of him by a delivery back to her slot.
    for field in ("outbox", "following"):
        assert not await real_client.exists(KEYS.user(ann, field)), field
    assert await relay_lists(real_client) == []
    # Ann's share itself is hers: applied, like the reference without its target.
    reference = MemoryStore(StateParams())
    await reference.process_batch([Event("e0", EventType.VIEW, bob, T0 - 5, item_id="tv")])
    await reference.mark_erased({bob: T0 + 10})
    await reference.process_batch(social(ann, bob)[:2])
    await reference.erase_users([bob])
    assert await store.snapshot() == await reference.snapshot()


async def test_an_erasure_leaves_no_relay_entry_naming_the_user(
    real_client: aioredis.Redis,
) -> None:
    ann, bob, cat = apart(3)
    store = RedisStore(real_client, StateParams())
    await store.process_batch([*social(ann, bob), *social(cat, ann)])
    await store.erase_users([ann])
    assert await relay_lists(real_client) == []
    for user in (bob, cat):
        for field in ("inbox", "senders", "followers", "following", "outbox"):
            key = KEYS.user(user, field)
            kind = await real_client.type(key)
            members = (
                await real_client.zrange(key, 0, -1)
                if kind == b"zset"
                else await real_client.smembers(key)
            )
            assert not any(ann.encode() in m for m in members), (user, field)


async def test_what_was_not_delivered_goes_with_the_partitions_next_step(
    real_client: aioredis.Redis, undelivered: tuple[RedisStore, str, str]
) -> None:
    store, ann, bob = undelivered
    await store.process_batch([Event("e9", EventType.VIEW, ann, T0 + 9, item_id="tv")])
    assert await real_client.smembers(KEYS.user(bob, "senders")) == {ann.encode()}
    assert await real_client.smembers(KEYS.user(bob, "followers")) == {ann.encode()}
