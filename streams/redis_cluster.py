"""The client of the scaled-out Redis (``socialrec infra up --cluster``): redis-py's cluster
client, made to find a failed-over cluster by itself.

redis-py learns the cluster's layout anew after a single command loses its node, but not after
a pipeline does unless it may resend the pipeline, which socialrec never lets it do (after a
lost reply the server may have run a script: the callers wait an outage out with the guards
that make a retry safe, streams/runtime/outage.py). So a pipeline that loses a node marks the
layout stale itself, and the next call learns the new one, with the promoted replica. It
closes nothing: closing the client's connections under the calls in flight failed a call
that was setting one up with a bare AttributeError, which read as a bug, not an outage.

A pipeline returns only once its writes are on a replica of each master it wrote to (``WAIT``
after each master's commands, on the same connection). Redis replicates asynchronously, so a
master killed right after a write may be replaced by a replica that never got it: its slot
goes back a moment in time. A slot alone going back is harmless (its state and the offsets it
was learnt to go back together, and are learnt again), but socialrec's steps hand work from
one slot to another (streams/sources/handoff.py, streams/store/relay.py): a target that
applied an entry its source then lost, or a source that trimmed what its target then lost,
would count it twice or never. Waiting for the replica before the next step closes that. A
replica that does not answer within :data:`WAIT_MS` is given up on for :data:`GIVE_UP_S`
(the cluster marks it failed meanwhile and the layout read next leaves it out), with a warning:
the writes then rest on the master alone, as they would with no replica.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands import READ_COMMANDS
from redis.exceptions import RedisError

from streams.config import Settings
from streams.ops.infra.cluster_kafka import HOST
from streams.ops.infra.cluster_redis import NODES
from streams.security import redis_connection_kwargs, redis_user_password

log = logging.getLogger(__name__)

#: How long a pipeline waits for a master's replica to hold its writes (at most half the
#: calls' timeout, so the wait never reads as an outage).
WAIT_MS = 2000
#: How long a master whose replica did not answer is written without waiting.
GIVE_UP_S = 10.0
#: How often the layout is read again, so a replica added since (a failed master back as
#: its successor's replica) is waited for.
LAYOUT_S = 30.0


class FailoverAwareCluster(RedisCluster):
    """A cluster client whose pipelines drop the layout when they lose a node, whose ``MGET``
    reads keys of any slots (one per slot, pipelined: socialrec reads users' values together
    for speed, never as one snapshot), and whose ``DBSIZE`` counts every master's keys, not
    one node's: the single-server calls run unchanged. (``FLUSHDB`` goes to every master
    already.) Its pipelines wait for each written master's replica (the module's docstring)."""

    def __init__(self, *args: Any, wait_ms: int = WAIT_MS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wait_ms = wait_ms
        #: Masters whose replica did not answer a WAIT: node name -> written alone until.
        self.unreplicated: dict[str, float] = {}
        self._layout_until = time.monotonic() + LAYOUT_S

    def unreplicated_for_now(self, node: ClusterNode) -> None:
        """Write to ``node`` without waiting for :data:`GIVE_UP_S`, and read the layout
        again at the next write (a replica the cluster marked failed is not in it)."""
        self.unreplicated[node.name] = time.monotonic() + GIVE_UP_S
        self._layout_until = 0.0
        log.warning(
            "redis %s: no replica confirmed the writes in %d ms; writing to it alone for %.0f s",
            node.name,
            self.wait_ms,
            GIVE_UP_S,
        )

    async def layout_read(self) -> None:
        """Read the layout again if it is older than :data:`LAYOUT_S`."""
        if time.monotonic() < self._layout_until:
            return
        self._layout_until = time.monotonic() + LAYOUT_S
        with contextlib.suppress(RedisError, OSError):  # the pipeline's own call will tell
            await self.nodes_manager.initialize()

    async def mget(self, keys: Any, *args: Any) -> list[Any]:
        return await self.mget_nonatomic(keys, *args)

    async def dbsize(self, **kwargs: Any) -> int:
        return int(await super().dbsize(target_nodes=self.PRIMARIES, **kwargs))

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # (redis-py's refusal)
        return _Pipeline(self, transaction)  # type: ignore[abstract]  # (as redis-py builds its own)


class _Pipeline(ClusterPipeline):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._written: list[Any] = []  # each written command's first key, in order

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        key = _written_key(args)
        if key is not None and not self._transaction and "target_nodes" not in kwargs:
            self._written.append(key)
        return super().execute_command(*args, **kwargs)

    @property
    def _cluster(self) -> FailoverAwareCluster:
        cluster = self.cluster_client
        assert isinstance(cluster, FailoverAwareCluster)
        return cluster

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        if self._written:
            await self._cluster.layout_read()
        waits = self._wait_for_replicas()
        try:
            replies = await super().execute(raise_on_error, allow_redirections)
        except RedisCluster.ERRORS_ALLOW_RETRY:
            await self._forget_layout()
            raise
        if any(isinstance(reply, RedisCluster.ERRORS_ALLOW_RETRY) for reply in replies):
            await self._forget_layout()
        if not waits:
            return replies
        replies, acks = replies[: -len(waits)], replies[-len(waits) :]
        for node, ack in zip(waits, acks, strict=True):
            if isinstance(ack, Exception):
                raise ack
            if int(ack) < 1:
                self._cluster.unreplicated_for_now(node)
        return replies

    def _wait_for_replicas(self) -> list[ClusterNode]:
        """A WAIT queued after the commands of each master written that has a replica."""
        cluster = self._cluster
        manager, now = cluster.nodes_manager, time.monotonic()
        nodes: dict[str, ClusterNode] = {}
        for key in self._written:
            slot = cluster.keyslot(key)
            holders = manager.slots_cache.get(slot) or []
            if len(holders) > 1 and cluster.unreplicated.get(holders[0].name, 0.0) <= now:
                nodes.setdefault(holders[0].name, holders[0])
        self._written = []
        for node in nodes.values():
            super().execute_command("WAIT", 1, cluster.wait_ms, target_nodes=node)
        return list(nodes.values())

    async def _forget_layout(self) -> None:
        """The next call learns the layout anew, asking another node first (the default
        node, which it asks first, may be the one lost). Nothing is closed: other calls are
        using the client's connections (a connection closed under a call being set up
        fails it with a bare AttributeError); redis-py's own refresh retires the lost
        node's connections as they come free."""
        self.cluster_client.replace_default_node()
        self.cluster_client._initialize = True


def _written_key(args: tuple[Any, ...]) -> Any:
    """The first key of a command that may write (a script's declared key), or None."""
    name = str(args[0]).upper() if args else ""
    if name in READ_COMMANDS or len(args) < 2:
        return None
    if name in ("EVALSHA", "EVAL"):
        return args[3] if len(args) > 3 and int(args[2]) > 0 else None
    return args[1]


def redis_cluster_client_for(settings: Settings) -> FailoverAwareCluster:
    """A client of the cluster's nodes, with the single client's timeouts, user and password
    and no resend. It knows every node from the start, so it finds the cluster while any one
    of them is down."""
    user, password = redis_user_password(settings)
    return FailoverAwareCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_nodes(settings)],
        retry=Retry(NoBackoff(), 0),
        wait_ms=int(min(WAIT_MS, settings.redis_timeout_s * 500)),
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
