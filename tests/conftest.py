"""Fixtures shared by every test suite.

Integration and end-to-end tests (everything under tests/integration and tests/e2e, which
get the ``integration`` marker automatically) talk to the real Kafka broker and Redis that
``make test`` starts with ``socialrec infra up``. If either is unreachable the test is
skipped on a laptop but fails under ``CI=true``: CI must never go green by skipping.

Isolation: the ``settings`` fixture gives each test its own topic prefix (topics applied from
topics.yaml, deleted afterwards) and Redis database 15 (``SOCIALREC_TEST_REDIS_DB``), flushed
before the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from streams.config import Settings, load_settings, redis_url_with_db
from streams.ops import infra
from streams.ops.infra import cluster
from streams.ops.infra.cluster import members
from streams.ops.infra.cluster_redis import BUS_PORT_OFFSET
from streams.ops.topics import apply_topics, delete_topics_with_prefix
from streams.redis_cluster import redis_cluster_client_for
from streams.security import redis_client_for
from tests.ports import free_run

TESTS_DIR = Path(__file__).resolve().parent
SERVER_TEST_DIRS = (TESTS_DIR / "integration", TESTS_DIR / "e2e")
#: Flushed before each test. Two test runs side by side (say, two developers on one dev pair of
#: servers) each set their own SOCIALREC_TEST_REDIS_DB so they do not flush each other.
TEST_REDIS_DB = int(os.environ.get("SOCIALREC_TEST_REDIS_DB", "15"))
#: Where the search for the shared Redis Cluster's free ports starts (tests/ports.py), apart
#: from test_cluster.py's.
STORE_CLUSTER_PORTS_FROM = 21600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration and tests/e2e as needing real servers."""
    for item in items:
        if any(folder in item.path.resolve().parents for folder in SERVER_TEST_DIRS):
            item.add_marker(pytest.mark.integration)


def running_under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(message: str) -> NoReturn:
    """A tool or server the test needs is missing: skip it on a laptop, fail it under
    ``CI=true`` (CI must never go green by skipping)."""
    if running_under_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def require_tools(*tools: str) -> None:
    """``unavailable`` unless every one of ``tools`` is on PATH."""
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        unavailable(f"{', '.join(missing)} not on PATH (`make setup` installs them)")


@pytest.fixture(scope="session")
async def infra_ready() -> Settings:
    """Settings from the environment, once Kafka (admin call) and Redis (PING) both answer."""
    base = load_settings()
    missing = []
    if not await infra.kafka_answers(base):
        missing.append(f"Kafka at {base.kafka_bootstrap}")
    if not await asyncio.to_thread(infra.redis_answers, base):
        missing.append(f"Redis on port {base.redis_port}")
    if missing:
        unavailable(
            f"{' and '.join(missing)} not reachable: start them with "
            "`.venv/bin/socialrec infra up` (or run `make test`, which does)"
        )
    return base


@pytest.fixture(autouse=True)
def _servers_for_integration_tests(request: pytest.FixtureRequest) -> None:
    """Integration tests get the server check even if they use no server fixture."""
    if request.node.get_closest_marker("integration") is not None:
        request.getfixturevalue("infra_ready")


@pytest.fixture
async def settings(infra_ready: Settings) -> AsyncIterator[Settings]:
    """Per-test settings: own topic prefix (topics applied, deleted after), Redis db 15 flushed."""
    test_settings = load_settings(
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        redis_url=redis_url_with_db(infra_ready.redis_url, TEST_REDIS_DB),
    )
    await apply_topics(test_settings)
    await _flush(test_settings)
    try:
        yield test_settings
    finally:
        await delete_topics_with_prefix(test_settings)


@pytest.fixture
async def redis_client(infra_ready: Settings) -> AsyncIterator[aioredis.Redis]:
    """An asyncio Redis client on the flushed test database (15), closed after the test.

    It needs no topics, so Redis-only tests do not pay for creating them; combined with
    ``settings`` it points at the same database.
    """
    url = redis_url_with_db(infra_ready.redis_url, TEST_REDIS_DB)
    await _flush(infra_ready, url)
    client = redis_client_for(infra_ready, url)
    try:
        yield client
    finally:
        await client.aclose()


async def _flush(settings: Settings, url: str | None = None) -> None:
    client = redis_client_for(settings, url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


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


def _pid_at(settings: Settings, port: int) -> int:
    """The pid of the cluster node ``settings`` started on ``port``."""
    (svc,) = [m.svc for m in members(settings, ("redis",)) if m.svc.port == port]
    return int(svc.pid_file.read_text().strip())


def kill_master_of(settings: Settings, client: RedisCluster, key: str) -> None:
    """kill -9 the master serving ``key``'s slot (``client``: an initialised client of the
    cluster ``settings`` started), found by its port among the nodes started."""
    node = client.get_node_from_key(key)
    assert node is not None
    os.kill(_pid_at(settings, int(node.port)), signal.SIGKILL)


def replica_port_of(client: RedisCluster, key: str) -> int:
    """The port of the replica of the master serving ``key``'s slot."""
    _, replica, *_ = client.nodes_manager.slots_cache[client.keyslot(key)]
    return int(replica.port)


@contextlib.contextmanager
def replica_stopped(settings: Settings, client: RedisCluster, key: str) -> Iterator[None]:
    """The replica of ``key``'s master frozen (SIGSTOP) for the block: the master goes on
    taking writes that no replica holds, as when replication falls behind."""
    pid = _pid_at(settings, replica_port_of(client, key))
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
