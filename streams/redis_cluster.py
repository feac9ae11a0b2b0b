"""The client of the scaled-out Redis (``socialrec infra up --cluster``): redis-py's cluster
client, made to find a failed-over cluster by itself.

redis-py learns the cluster's layout anew after a single command loses its node, but not after
a pipeline does unless it may resend the pipeline, which socialrec never lets it do (after a
lost reply the server may have run a script: the callers wait an outage out with the guards
that make a retry safe, streams/runtime/outage.py). So a pipeline that loses a node drops the
layout itself, and the next call learns the new one, with the promoted replica.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from streams.config import Settings
from streams.ops.infra.cluster_kafka import HOST
from streams.ops.infra.cluster_redis import NODES
from streams.security import redis_connection_kwargs, redis_user_password


class FailoverAwareCluster(RedisCluster):
    """A cluster client whose pipelines drop the layout when they lose a node, whose ``MGET``
    reads keys of any slots (one per slot, pipelined: socialrec reads users' values together
    for speed, never as one snapshot), and whose ``DBSIZE`` counts every master's keys, not
    one node's: the single-server calls run unchanged. (``FLUSHDB`` goes to every master
    already.)"""

    async def mget(self, keys: Any, *args: Any) -> list[Any]:
        return await self.mget_nonatomic(keys, *args)

    async def dbsize(self, **kwargs: Any) -> int:
        return int(await super().dbsize(target_nodes=self.PRIMARIES, **kwargs))

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # (redis-py's refusal)
        return _Pipeline(self, transaction)  # type: ignore[abstract]  # (as redis-py builds its own)


class _Pipeline(ClusterPipeline):
    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        try:
            replies = await super().execute(raise_on_error, allow_redirections)
        except RedisCluster.ERRORS_ALLOW_RETRY:
            await self._forget_layout()
            raise
        if any(isinstance(reply, RedisCluster.ERRORS_ALLOW_RETRY) for reply in replies):
            await self._forget_layout()
        return replies

    async def _forget_layout(self) -> None:
        """The next call learns the layout anew, asking another node first (the default
        node, which it asks first, may be the one lost)."""
        self.cluster_client.replace_default_node()
        await self.cluster_client.aclose()


def redis_cluster_client_for(settings: Settings) -> FailoverAwareCluster:
    """A client of the cluster's nodes, with the single client's timeouts, user and password
    and no resend. It knows every node from the start, so it finds the cluster while any one
    of them is down."""
    user, password = redis_user_password(settings)
    return FailoverAwareCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_nodes(settings)],
        retry=Retry(NoBackoff(), 0),
        **{**redis_connection_kwargs(settings), "username": user, "password": password},
    )


def cluster_nodes(settings: Settings) -> list[tuple[str, int]]:
    """The nodes a client starts from: SOCIALREC_REDIS_CLUSTER_NODES, or the local six.

    >>> cluster_nodes(Settings(redis_cluster_nodes="a:7000,b:7001"))
    [('a', 7000), ('b', 7001)]
    >>> cluster_nodes(Settings(redis_cluster_port=17000))[-1]
    ('127.0.0.1', 17005)
    """
    if settings.redis_cluster_nodes:
        pairs = [part.strip().rpartition(":") for part in settings.redis_cluster_nodes.split(",")]
        return [(host, int(port)) for host, _, port in pairs]
    ports = range(settings.redis_cluster_port, settings.redis_cluster_port + NODES)
    return [(HOST, port) for port in ports]


async def cluster_answers(settings: Settings) -> bool:
    """True when the cluster's masters answer PING with the settings' credentials (False when
    no node answers, or the cluster is not formed)."""
    client = redis_cluster_client_for(settings)
    try:
        return bool(await client.ping())
    except Exception:  # redis-py raises its own cluster errors when no node will do
        return False
    finally:
        await client.aclose()
