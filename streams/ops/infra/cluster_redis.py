"""The scaled-out Redis: Debian's ``redis-server`` in cluster mode on six consecutive ports
from ``SOCIALREC_REDIS_CLUSTER_PORT``, joined once by ``redis-cli --cluster create`` into three
masters with one replica each.

Each node keeps its ``nodes.conf`` in its own directory, so a restarted node rejoins the
cluster it belonged to; ``create`` runs only while every node is still alone and slot-less.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any

from streams.config import Settings
from streams.ops.infra.base import REDIS_READY_TIMEOUT_S, InfraError, Service, require_binary, say
from streams.ops.infra.cluster_kafka import HOST, cluster_dir
from streams.ops.infra.pids import spawn_detached
from streams.ops.infra.redis_server import ensure_redis_server, redis_server_args

MASTERS = 3
REPLICAS_PER_MASTER = 1
NODES = MASTERS * (1 + REPLICAS_PER_MASTER)
#: Redis's own convention: a node's cluster bus listens this far above its client port.
BUS_PORT_OFFSET = 10_000
#: How long a silent node counts as failed and its replica is promoted (Redis's default is
#: 15 s; a local cluster's nodes answer in microseconds, so a short timeout is safe).
NODE_TIMEOUT_MS = 5000


def redis_node_services(settings: Settings) -> list[Service]:
    """The six nodes, named redis-1 to redis-6 in port order."""
    root = cluster_dir(settings)
    members = []
    for index in range(1, NODES + 1):
        home = root / f"redis-{index}"
        members.append(
            Service(
                name=f"redis-{index}",
                host=HOST,
                port=settings.redis_cluster_port + index - 1,
                env_var="SOCIALREC_REDIS_CLUSTER_PORT",
                pid_file=root / f"redis-{index}.pid",
                log_file=home / "redis.log",
                data_dir=home,
                # Redis rewrites its process title once started; only the name is stable.
                cmdline_markers=("redis-server",),
                ready_timeout_s=REDIS_READY_TIMEOUT_S,
            )
        )
    return members


def start_redis_node(svc: Service) -> int:
    """Launch one cluster-mode node with an fsync-every-second AOF, as the single Redis."""
    redis_server = ensure_redis_server()
    svc.data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        redis_server,
        *redis_server_args(svc),
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
    ]  # fmt: skip
    pid = spawn_detached(cmd, svc.log_file)
    svc.pid_file.write_text(f"{pid}\n")
    say(f"{svc.name}: started pid {pid} on {svc.address}, log {svc.log_file}")
    return pid


@dataclass(frozen=True)
class NodeView:
    """What one node says about the cluster (CLUSTER INFO, CLUSTER NODES)."""

    state: str
    known_nodes: int
    slots_assigned: int
    masters: int
    replicas: int
    #: A master, or a replica whose link to its master is up (INFO replication): a replica
    #: that never synced is too stale to be promoted when its master dies.
    linked: bool = True
    #: Every slot range has a replica in CLUSTER SLOTS, which names a replica only once the
    #: cluster has heard it synced: the layout clients read, and wait for replicas by
    #: (streams/redis_cluster.py).
    listed: bool = True

    @property
    def complete(self) -> bool:
        """The layout ``up`` promises: state ok, every node known, each master replicated
        (the node itself linked, if a replica)."""
        return (
            self.state == "ok"
            and self.known_nodes == NODES
            and self.masters == MASTERS
            and self.replicas == MASTERS * REPLICAS_PER_MASTER
            and self.linked
            and self.listed
        )


def node_view(svc: Service, timeout_s: float = 1.0) -> NodeView | None:
    """The node's view of the cluster; None while it does not answer."""
    import redis

    client = redis.Redis(
        host=svc.host, port=svc.port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    try:
        # redis-py parses both replies: a dict of fields, and address -> node (with "flags").
        info: dict[str, object] = client.cluster("INFO")
        nodes: dict[str, dict[str, object]] = client.cluster("NODES")
        replication: dict[str, object] = client.info("replication")
        ranges: list[list[Any]] = client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()
    live = [str(node["flags"]) for node in nodes.values() if "fail" not in str(node["flags"])]
    return NodeView(
        state=str(info.get("cluster_state", "")),
        known_nodes=int(str(info.get("cluster_known_nodes", 0))),
        slots_assigned=int(str(info.get("cluster_slots_assigned", 0))),
        masters=sum("master" in flags for flags in live),
        replicas=sum("slave" in flags for flags in live),
        linked=replication.get("role") == "master" or replication.get("master_link_status") == "up",
        # Each range: start, end, master, then its replicas.
        listed=bool(ranges) and all(len(r) > 3 for r in ranges),
    )


def create_cluster(nodes: list[Service], views: list[NodeView]) -> None:
    """Join fresh nodes into masters and replicas; refuse a half-formed cluster."""
    if all(v.known_nodes == 1 and v.slots_assigned == 0 for v in views):
        redis_cli = require_binary(
            "redis-cli", "it comes with redis-server (Debian/Ubuntu: apt-get install redis-tools)"
        )
        cmd = [
            redis_cli,
            "--cluster", "create",
            *(svc.address for svc in nodes),
            "--cluster-replicas", str(REPLICAS_PER_MASTER),
            "--cluster-yes",
        ]  # fmt: skip
        say(f"redis cluster: joining {len(nodes)} nodes ({MASTERS} masters)")
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()[-10:]
            raise InfraError("redis-cli --cluster create failed:\n    " + "\n    ".join(output))
        return
    if any(v.known_nodes == 1 and v.slots_assigned == 0 for v in views):
        raise InfraError(
            "the Redis Cluster is half-formed (some nodes lost their nodes.conf); stop it with "
            f"`socialrec infra down --cluster` and remove {nodes[0].data_dir.parent}/redis-*"
        )
