"""The scaled-out Kafka: one KRaft node per ``SOCIALREC_KAFKA_BOOTSTRAP`` address, each both
broker and controller, sharing one cluster id; readiness is an admin call that sees them all.

Why combined nodes with a static voter set: three JVMs is the least this 2-core machine can
run for a quorum that survives one node down (dedicated controllers would add three more), and
a fixed local layout needs no dynamic membership (``controller.quorum.voters`` names them all,
so every node is formatted alike, without ``--standalone`` or directory ids).

>>> from streams.config import Settings
>>> three = "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003"
>>> s = Settings(cluster=True, kafka_bootstrap=three, kafka_controller_port=9101)
>>> lines = broker_properties(s, 2).splitlines()
>>> [line for line in lines if line.startswith(("node.id", "controller.quorum", "min.insync"))]
['node.id=2', 'controller.quorum.voters=1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103', \
'min.insync.replicas=2']
"""

from __future__ import annotations

from pathlib import Path

from streams.config import Settings
from streams.ops.infra.base import KAFKA_READY_TIMEOUT_S, LOCAL_HOSTS, InfraError, Service, say
from streams.ops.infra.kafka import (
    broker_tuning,
    format_storage,
    launch_broker,
    new_cluster_id,
    prepare_broker_dir,
)

HOST = "127.0.0.1"


def cluster_dir(settings: Settings) -> Path:
    """Where every member of the scaled-out layout keeps its files and pid file."""
    return settings.data_dir / "cluster"


def controller_port(settings: Settings, node_id: int) -> int:
    """Node ``node_id``'s controller listener: SOCIALREC_KAFKA_CONTROLLER_PORT and up."""
    return settings.kafka_controller_port + node_id - 1


def broker_services(settings: Settings) -> list[Service]:
    """One member per bootstrap address, node ids 1, 2, 3 in the order listed."""
    for part in settings.kafka_bootstrap.split(","):
        if part.strip().rpartition(":")[0] not in LOCAL_HOSTS:
            raise InfraError(
                f"broker {part.strip()!r} is not on this machine; socialrec infra only manages "
                "servers on 127.0.0.1 (change SOCIALREC_KAFKA_BOOTSTRAP)"
            )
    root = cluster_dir(settings)
    members = []
    for node_id, port in enumerate(settings.kafka_ports, start=1):
        home = root / f"kafka-{node_id}"
        members.append(
            Service(
                name=f"kafka-{node_id}",
                host=HOST,
                port=port,
                env_var="SOCIALREC_KAFKA_BOOTSTRAP",
                pid_file=root / f"kafka-{node_id}.pid",
                log_file=home / "logs" / "server.log",
                data_dir=home,
                cmdline_markers=("kafka.Kafka", str(home / "server.properties")),
                ready_timeout_s=KAFKA_READY_TIMEOUT_S,
            )
        )
    return members


def broker_properties(settings: Settings, node_id: int) -> str:
    """Node ``node_id``'s configuration: its own ports and log dir, everyone's voters, and
    the cluster's replication for internal topics and as the default for new ones."""
    port = settings.kafka_ports[node_id - 1]
    cport = controller_port(settings, node_id)
    voters = ",".join(
        f"{n}@{HOST}:{controller_port(settings, n)}"
        for n in range(1, len(settings.kafka_ports) + 1)
    )
    home = cluster_dir(settings) / f"kafka-{node_id}"
    lines = [
        "# Written by `socialrec infra up --cluster` on every start; change "
        "streams/ops/infra/cluster_kafka.py instead.",
        "process.roles=broker,controller",
        f"node.id={node_id}",
        f"controller.quorum.voters={voters}",
        f"listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
        f"advertised.listeners=PLAINTEXT://{HOST}:{port}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        f"log.dirs={home / 'data'}",
        *broker_tuning(settings.cluster_replication_factor, settings.cluster_min_insync_replicas),
        f"min.insync.replicas={settings.cluster_min_insync_replicas}",
    ]
    return "\n".join(lines) + "\n"


def start_broker(settings: Settings, svc: Service, node_id: int) -> int:
    """Write node ``node_id``'s configuration, format its storage once with the cluster's id,
    then launch it detached."""
    if settings.kafka_security_protocol != "PLAINTEXT":
        raise InfraError(
            "`socialrec infra up --cluster` runs PLAINTEXT brokers only; unset "
            "SOCIALREC_KAFKA_SECURITY_PROTOCOL, or point the settings at your own cluster"
        )
    jvm = prepare_broker_dir(settings, svc.data_dir, broker_properties(settings, node_id))
    props = svc.data_dir / "server.properties"
    if not (svc.data_dir / "data" / "meta.properties").exists():
        say(f"{svc.name}: formatting storage (first start)")
        format_storage(jvm, props, _cluster_id(settings), svc, [])
    pid = launch_broker(settings, jvm, props, svc)
    say(
        f"{svc.name}: started pid {pid} on {svc.address} (controller port "
        f"{controller_port(settings, node_id)}), log {svc.log_file}"
    )
    return pid


def _cluster_id(settings: Settings) -> str:
    """The id every node is formatted with, made once and kept beside them: a node whose
    storage is formatted later (its directory removed) joins the same cluster."""
    path = cluster_dir(settings) / "kafka-cluster-id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_cluster_id() + "\n")
    return path.read_text().strip()
