"""``socialrec infra up|down|status --cluster``: three Kafka brokers and a Redis Cluster on this
machine, started, proved ready and stopped like the single servers (pid files, SIGTERM then
SIGKILL, never a process this package did not start).

Ready means what a client needs, not open ports: an admin call sees every broker, and every
Redis node reports ``cluster_state:ok`` with all six nodes, three masters and their replicas.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from streams.config import Settings
from streams.ops.infra.base import (
    KAFKA_READY_TIMEOUT_S,
    POLL_INTERVAL_S,
    REDIS_READY_TIMEOUT_S,
    STOP_TIMEOUT_S,
    InfraError,
    Service,
    ServiceStatus,
    locked,
    run_async,
    say,
)
from streams.ops.infra.cluster_kafka import (
    broker_services,
    cluster_dir,
    controller_port,
    start_broker,
)
from streams.ops.infra.cluster_redis import (
    BUS_PORT_OFFSET,
    create_cluster,
    node_view,
    redis_node_services,
    start_redis_node,
)
from streams.ops.infra.kafka import brokers_seen
from streams.ops.infra.pids import is_port_open, owned_pid, pid_alive, send_signal, wait_stopped
from streams.ops.infra.services import exit_report, poll_ready, refuse_foreign

#: How long a broker left without a controller quorum gets to exit by itself: one approved
#: before the quorum went exits within about 6 s (measured with two of three left), one
#: still waiting for approval never does (Kafka waits five minutes for it).
QUORUMLESS_GRACE_S = 10.0


@dataclass(frozen=True)
class Member:
    """One server of the layout: its description, every port it listens on, how to start it."""

    svc: Service
    ports: tuple[int, ...]
    start: Callable[[], int]


def members(settings: Settings, names: tuple[str, ...]) -> list[Member]:
    """The servers of the services ``names`` (kafka: the brokers, redis: the six nodes)."""
    found = []
    if "kafka" in names:
        for node_id, svc in enumerate(broker_services(settings), start=1):
            ports = (svc.port, controller_port(settings, node_id))
            found.append(Member(svc, ports, partial(start_broker, settings, svc, node_id)))
    if "redis" in names:
        for svc in redis_node_services(settings):
            ports = (svc.port, svc.port + BUS_PORT_OFFSET)
            found.append(Member(svc, ports, partial(start_redis_node, svc)))
    return found


def up(settings: Settings, names: tuple[str, ...]) -> None:
    """Start every member that is not running, then wait until the layout is ready."""
    with locked(settings):
        running: list[tuple[Member, int]] = []
        for member in members(settings, names):
            pid = owned_pid(member.svc)
            if pid is None:
                refuse_foreign(member.svc, [(p, member.svc.env_var) for p in member.ports])
                pid = member.start()
            else:
                say(f"{member.svc.name}: already running (pid {pid}) at {member.svc.address}")
            running.append((member, pid))
        if "kafka" in names:
            brokers = [(m, pid) for m, pid in running if m.svc.name.startswith("kafka")]
            _wait("kafka cluster", brokers, _kafka_ready(settings), KAFKA_READY_TIMEOUT_S)
        if "redis" in names:
            nodes = [(m, pid) for m, pid in running if m.svc.name.startswith("redis")]
            ready = _redis_ready([m.svc for m, _ in nodes])
            _wait("redis cluster", nodes, ready, REDIS_READY_TIMEOUT_S)


def _kafka_ready(settings: Settings) -> Callable[[], bool]:
    """Every broker's port is open (no client noise before) and an admin call sees them all."""
    brokers = broker_services(settings)

    def ready() -> bool:
        if not all(is_port_open(svc.host, svc.port) for svc in brokers):
            return False
        return run_async(lambda: brokers_seen(settings)) == len(brokers)

    return ready


def _redis_ready(nodes: list[Service]) -> Callable[[], bool]:
    """A readiness check that joins the nodes into a cluster the first time all answer."""
    joined = False

    def ready() -> bool:
        nonlocal joined
        views = [node_view(svc) for svc in nodes]
        if any(view is None for view in views):
            return False
        known = [view for view in views if view is not None]
        if not joined:
            create_cluster(nodes, known)
            joined = True
            return False
        return all(view.complete for view in known)

    return ready


def _wait(
    what: str, running: list[tuple[Member, int]], ready: Callable[[], bool], timeout_s: float
) -> None:
    """Poll ``ready`` until it holds; fail early, naming the log, if a member dies."""
    took = poll_ready(
        [(member.svc, pid) for member, pid in running],
        ready,
        timeout_s,
        lambda svc: (
            f"{svc.name} exited during start-up; see {svc.log_file} {exit_report(svc)}"
            "\nstop the rest with `socialrec infra down --cluster`"
        ),
        f"{what} not ready within {timeout_s:.0f}s; see the logs under "
        f"{running[0][0].svc.data_dir.parent}; stop it with `socialrec infra down --cluster`",
    )
    say(f"{what}: ready in {took:.1f}s")


def down(settings: Settings, names: tuple[str, ...]) -> None:
    """Stop the members ``up`` started (by pid file): SIGTERM to all, wait, then SIGKILL the
    stragglers (a broker left without a controller quorum sooner: :func:`_wait_brokers`);
    return once none of their ports is open."""
    with locked(settings):
        stopping = []
        for member in members(settings, names):
            pid = owned_pid(member.svc)
            if pid is None:
                continue
            say(f"{member.svc.name}: stopping pid {pid}")
            send_signal(pid, signal.SIGTERM)
            stopping.append((member, pid))
        if not stopping:
            say(f"cluster ({', '.join(names)}): not running")
        brokers = {m.svc.name for m in members(settings, ("kafka",))} if "kafka" in names else set()
        _wait_brokers([s for s in stopping if s[0].svc.name in brokers], len(settings.kafka_ports))
        for member, pid in stopping:
            if member.svc.name not in brokers:
                wait_stopped(member.svc, pid)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for member, _ in stopping:
            # A dead multi-threaded server can hold its sockets a moment longer.
            while any(is_port_open(member.svc.host, p) for p in member.ports):
                if time.monotonic() > deadline:
                    raise InfraError(f"{member.svc.name}: a port is still open after it stopped")
                time.sleep(POLL_INTERVAL_S / 2)


def _wait_brokers(stopping: list[tuple[Member, int]], voters: int) -> None:
    """Wait for SIGTERMed brokers. Each asks the controller quorum to approve its shutdown
    first, and one left without a quorum (a majority of ``voters``) waits for that approval
    for minutes: such a broker gets :data:`QUORUMLESS_GRACE_S`, then SIGKILL. A broker
    stopped whole with the others usually has its approval before the quorum goes, but not
    always (on a busy machine, one may exit before the other was approved)."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    alive = stopping
    while len(alive) > voters // 2 and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S / 2)
        alive = [(m, pid) for m, pid in alive if pid_alive(pid)]
    quorumless = len(alive) <= voters // 2
    for member, pid in stopping:
        if quorumless:
            wait_stopped(member.svc, pid, QUORUMLESS_GRACE_S, "has no controller quorum left")
        else:
            wait_stopped(member.svc, pid, max(deadline - time.monotonic(), 0.0))


def status(settings: Settings, names: tuple[str, ...]) -> list[ServiceStatus]:
    """One line per member: running / starting / stopped, from its pid file and port."""
    report = []
    for member in members(settings, names):
        svc = member.svc
        pid = owned_pid(svc)
        state = "stopped"
        if pid is not None:
            state = "running" if is_port_open(svc.host, svc.port) else "starting"
        report.append(ServiceStatus(svc.name, state, pid, svc.address, svc.data_dir))
    return report


def leftover_pid_files(settings: Settings) -> list[str]:
    """Members whose pid file is still there (so ``down`` without --cluster can say so)."""
    return sorted(p.stem for p in cluster_dir(settings).glob("*.pid"))
