"""The publish path's store through a Redis Cluster master's death: its replica is promoted,
the store carries on by itself once the cluster answers again, and state and offsets agree:
nothing lost, nothing applied twice.

The module kills a master, so it brings its own cluster (not the one the store's other tests
share). The seconds from the kill to the first step applied again are kept in
test-artifacts/recovery.json.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from models.events import Event, EventType
from models.state import StateParams
from streams import redis_cluster as cluster_client
from streams.config import Settings
from streams.keys import Keys
from streams.ops.infra.cluster_kafka import HOST
from streams.runtime.outage import is_outage
from streams.security import redis_connection_kwargs, redis_user_password
from streams.store import MemoryStore, OffsetRange, RedisStore
from tests.conftest import kill_master_of, replica_port_of, replica_stopped, running_redis_cluster
from tests.e2e.conftest import keep_figures
from tests.integration.test_store_contract import assert_close

pytestmark = pytest.mark.slow  # a failover waits out the cluster's node timeout (5 s)

FAILOVER_PORTS_FROM = 21700
T0 = 1_700_000_000.0
KEYS = Keys()
PARTITION = 0
#: A failover takes the node timeout (5 s) and an election; well past that, something broke.
RECOVERY_LIMIT_S = 60.0


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """This module's own cluster, in place of the shared one: its test kills a master.
    (``redis_cluster_client``, tests/integration/conftest.py, is a client on it.)"""
    with running_redis_cluster(tmp_path_factory.mktemp("failover"), FAILOVER_PORTS_FROM) as s:
        yield s


def _users(count: int) -> list[str]:
    """Users whose state sits in :data:`PARTITION`'s slot."""
    found = (f"u{n}" for n in range(100_000))
    return [u for u in found if KEYS.partition_of(u) == PARTITION][:count]


def _batches(users: list[str], count: int, size: int) -> list[list[Event]]:
    kinds = [EventType.VIEW, EventType.LIKE, EventType.CART, EventType.PURCHASE]
    events = [
        Event(f"e{n}", kinds[n % 4], users[n % len(users)], T0 + n, item_id=f"i{n % 13}")
        for n in range(count * size)
    ]
    return [events[b * size : (b + 1) * size] for b in range(count)]


async def _write(client: RedisCluster, key: str, value: str) -> None:
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(key, value)
        await pipe.execute()


async def test_a_pipeline_returns_once_a_replica_holds_its_writes(
    redis_cluster: Settings, redis_cluster_client: RedisCluster
) -> None:
    """What one slot hands another must survive its master's death: a pipeline returns when
    the master's replica holds its writes, and a replica that does not answer is given up on
    (the master written alone for a while) instead of stopping every write."""
    client = cast(cluster_client.FailoverAwareCluster, redis_cluster_client)
    key = f"{KEYS.partition_stem(PARTITION)}probe"
    user, password = redis_user_password(redis_cluster)
    replica = aioredis.Redis(
        host=HOST,
        port=replica_port_of(client, key),
        username=user,
        password=password,
        **redis_connection_kwargs(redis_cluster),
    )
    try:
        await replica.execute_command("READONLY")  # type: ignore[no-untyped-call]
        await _write(client, key, "held")
        assert await replica.get(key) == b"held"  # no wait: the pipeline waited for it
        assert not client.unreplicated

        client.wait_ms = 200
        with replica_stopped(redis_cluster, client, key):
            await _write(client, key, "alone")
        master = client.get_node_from_key(key)
        assert master is not None
        assert master.name in client.unreplicated
    finally:
        await client.delete(key)
        await replica.aclose()


async def test_a_masters_death_loses_nothing_and_applies_nothing_twice(
    redis_cluster: Settings, redis_cluster_client: RedisCluster
) -> None:
    client = redis_cluster_client
    store, reference = RedisStore(cast(Any, client), StateParams()), MemoryStore(StateParams())
    batches = _batches(_users(8), count=12, size=10)
    partition = f"events:{PARTITION}"
    applied, at = -1, 0  # the stored applied offset as this consumer knows it; next offset

    async def step(events: list[Event]) -> Any:
        span = OffsetRange(partition, at, at + len(events) - 1, applied, -1)
        return await store.process_batch(events, offsets=[span])

    for events in batches[:6]:
        await step(events)
        applied = at = at + len(events) - 1
        at += 1
    kill_master_of(redis_cluster, client, KEYS.partition_stem(PARTITION))
    killed = time.monotonic()
    rewinds, recovered = 0, None
    for events in batches[6:]:
        while True:  # as the worker does: a store outage is waited out, then retried
            try:
                result = await step(events)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                assert time.monotonic() - killed < RECOVERY_LIMIT_S, "no failover"
                await asyncio.sleep(0.2)
                continue
            if result.rewinds:  # the replica missed the dead master's last writes: go back
                rewinds += 1
                stored = result.rewinds[partition].applied
                back = [e for b in batches for e in b][stored + 1 : at]
                applied, at = stored, stored + 1
                if back:
                    await step(back)
                    applied = at = at + len(back) - 1
                    at += 1
                continue
            break
        if recovered is None:
            recovered = time.monotonic() - killed
        applied = at = at + len(events) - 1
        at += 1

    for events in batches:
        await reference.process_batch(events)
    assert_close(await store.snapshot(), await reference.snapshot())
    positions = await store.positions([partition])
    assert positions[partition].applied == sum(len(b) for b in batches) - 1
    assert recovered is not None
    keep_figures(
        "store on Redis Cluster, master killed",
        {"seconds": round(recovered, 2), "rewinds": rewinds},
    )
