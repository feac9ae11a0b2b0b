"""Fixtures for tests that inspect the broker directly (the shared ones are in tests/conftest.py).

Everything in this folder is marked ``integration`` and needs the servers ``make test`` starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio.cluster import RedisCluster

from streams.config import Settings, load_settings
from streams.ops.infra import cluster
from streams.ops.infra.cluster_redis import BUS_PORT_OFFSET
from streams.redis_cluster import redis_cluster_client_for
from streams.security import kafka_client_kwargs
from tests.conftest import require_tools
from tests.ports import free_run

#: Where the search for the store's Redis Cluster's free ports starts (tests/ports.py), apart
#: from test_cluster.py's.
STORE_CLUSTER_PORTS_FROM = 21600


@pytest.fixture
async def kafka_admin(infra_ready: Settings) -> AsyncIterator[Any]:
    """A started aiokafka admin client on the configured broker, closed after the test."""
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(infra_ready), client_id="socialrec-tests")
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@contextlib.contextmanager
def running_redis_cluster(data_dir: Path, ports_from: int) -> Iterator[Settings]:
    """A Redis Cluster of the project's own six nodes (three masters, a replica each) on free
    ports from ``ports_from``, stopped afterwards: some 5 s to start."""
    require_tools("redis-server", "redis-cli")
    settings = load_settings(
        data_dir=data_dir, redis_cluster_port=free_run(ports_from, 6, BUS_PORT_OFFSET)
    )
    cluster.up(settings, ("redis",))  # (`infra up --cluster` would start brokers too)
    try:
        yield settings
    finally:
        cluster.down(settings, ("redis",))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The Redis Cluster the store's tests share."""
    with running_redis_cluster(
        tmp_path_factory.mktemp("store-cluster"), STORE_CLUSTER_PORTS_FROM
    ) as settings:
        yield settings


@pytest.fixture
async def redis_cluster_client(redis_cluster: Settings) -> AsyncIterator[RedisCluster]:
    """The project's cluster client on :func:`redis_cluster`, every master flushed first."""
    client = redis_cluster_client_for(redis_cluster)
    await client.initialize()
    await client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    try:
        yield client
    finally:
        await client.aclose()


#: The real servers a store runs on, by test id: the fixture of each one's flushed client.
REAL_CLIENTS = {"redis": "redis_client", "redis-cluster": "redis_cluster_client"}


@pytest.fixture(params=list(REAL_CLIENTS))
def real_client(request: pytest.FixtureRequest) -> Any:
    """A flushed client on one Redis, then on a Redis Cluster (every master flushed)."""
    return request.getfixturevalue(REAL_CLIENTS[request.param])
