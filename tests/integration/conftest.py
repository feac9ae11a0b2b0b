"""Fixtures for tests that inspect the broker directly (the shared ones, the Redis Cluster's
included, are in tests/conftest.py).

Everything in this folder is marked ``integration`` and needs the servers ``make test`` starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.config import Settings
from streams.security import kafka_client_kwargs


@pytest.fixture
async def kafka_admin(infra_ready: Settings) -> AsyncIterator[Any]:
    """A started aiokafka admin client on the configured broker, closed after the test."""
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(infra_ready), client_id="socialrec-tests")
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


#: The real servers a store runs on, by test id: the fixture of each one's flushed client.
REAL_CLIENTS = {"redis": "redis_client", "redis-cluster": "redis_cluster_client"}


@pytest.fixture(params=list(REAL_CLIENTS))
def real_client(request: pytest.FixtureRequest) -> Any:
    """A flushed client on one Redis, then on a Redis Cluster (every master flushed)."""
    return request.getfixturevalue(REAL_CLIENTS[request.param])
