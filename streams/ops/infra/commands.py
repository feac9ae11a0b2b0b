"""``socialrec infra up|down|status`` and the fault tests' ``kill``.

>>> parse_services("redis, kafka")
('kafka', 'redis')
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable

from streams.config import Settings
from streams.ops.infra import cluster
from streams.ops.infra.base import (
    KILL_TIMEOUT_S,
    POLL_INTERVAL_S,
    SERVICES,
    InfraError,
    Service,
    ServiceStatus,
    auth_errors,
    kafka_dir,
    locked,
    say,
    service_of,
)
from streams.ops.infra.kafka import kafka_formatted
from streams.ops.infra.pids import (
    is_port_open,
    owned_pid,
    send_signal,
    wait_dead,
    wait_stopped,
)
from streams.ops.infra.services import (
    kafka_ready,
    redis_ready,
    refuse_foreign_port,
    service_answers,
    start_service,
    started_otherwise,
    wait_ready,
)
from streams.ops.infra_auth import (
    check_formatted_user,
    kafka_sasl,
)


def parse_services(services: str | Iterable[str]) -> tuple[str, ...]:
    """Turn ``"kafka,redis"`` (or a list) into a validated tuple in a fixed order."""
    items = services.split(",") if isinstance(services, str) else list(services)
    names = {s.strip().lower() for s in items if s.strip()}
    unknown = sorted(names - set(SERVICES))
    if unknown:
        raise InfraError(f"unknown service(s) {unknown}; choose from {','.join(SERVICES)}")
    if not names:
        raise InfraError(f"no services given; choose from {','.join(SERVICES)}")
    return tuple(s for s in SERVICES if s in names)


def up(settings: Settings, services: str | Iterable[str] = SERVICES) -> None:
    """Start the services that are not running and wait until each one answers.

    Calling it again while they run is harmless: a live pid from our pid file plus a server
    that answers means "already up". Servers start concurrently, then readiness is awaited.
    With ``settings.cluster``, the scaled-out layout instead (:mod:`.cluster`).
    """
    names = parse_services(services)
    if settings.cluster:
        cluster.up(settings, names)
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with locked(settings), auth_errors():
        waiting: list[tuple[Service, int]] = []
        for name in names:
            svc = service_of(settings, name)
            pid = owned_pid(svc)
            if pid is not None and service_answers(settings, svc):
                say(f"{name}: already running (pid {pid}) at {svc.address}")
                continue
            if name == "kafka" and kafka_sasl(settings) and kafka_formatted(settings):
                # A broker without this user (or with another password) would never answer.
                check_formatted_user(settings, kafka_dir(settings))
            if pid is not None and (reason := started_otherwise(settings, svc)):
                raise InfraError(
                    f"{name}: the running server (pid {pid}) {reason}; restart it with "
                    f"`socialrec infra down --services {name}`, then `socialrec infra up`"
                )
            if pid is None:
                refuse_foreign_port(settings, svc)
                pid = start_service(settings, svc)
            waiting.append((svc, pid))
        for svc, pid in waiting:
            wait_ready(settings, svc, pid)
        if "kafka" in names:
            kafka_ready(settings, service_of(settings, "kafka"))
        if "redis" in names:
            redis_ready(settings, service_of(settings, "redis"))


def down(settings: Settings, services: str | Iterable[str] = SERVICES) -> None:
    """Stop what ``up`` started (by pid file): SIGTERM, wait, then SIGKILL.

    A server we did not start is never signalled; stale pid files are removed.
    """
    names = parse_services(services)
    if settings.cluster:
        cluster.down(settings, names)
        return
    if leftover := cluster.leftover_pid_files(settings):
        say(f"the cluster's {', '.join(leftover)} may still run: `socialrec infra down --cluster`")
    if not settings.data_dir.exists():
        for name in names:
            say(f"{name}: not running")
        return
    with locked(settings):
        stopping: list[tuple[Service, int]] = []
        for name in names:
            svc = service_of(settings, name)
            pid = owned_pid(svc)
            if pid is None:
                say(f"{name}: not running")
                continue
            say(f"{name}: stopping pid {pid}")
            send_signal(pid, signal.SIGTERM)
            stopping.append((svc, pid))
        for svc, pid in stopping:
            wait_stopped(svc, pid)


def kill(settings: Settings, service: str) -> int:
    """SIGKILL a server this module started (a crash, for fault tests) and wait until it is
    gone, so ``up`` can start it again at once; returns the pid it had."""
    svc = service_of(settings, service)
    pid = owned_pid(svc)
    if pid is None:
        raise InfraError(f"{service}: not started by `socialrec infra up`, so not killed")
    send_signal(pid, signal.SIGKILL)
    if not wait_dead(pid, KILL_TIMEOUT_S):
        raise InfraError(f"{svc.name}: pid {pid} survived SIGKILL")
    # A multi-threaded server reads as a zombie while its other threads still hold its
    # sockets (some 50 ms for Redis): `up` would take the port for a stranger's.
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while is_port_open(svc.host, svc.port):
        if time.monotonic() > deadline:
            raise InfraError(f"{svc.name}: port {svc.port} still open after SIGKILL")
        time.sleep(POLL_INTERVAL_S / 2)
    return pid


def status(settings: Settings, services: str | Iterable[str] = SERVICES) -> list[ServiceStatus]:
    """Report each service: running / starting / stopped, pid, address and data dir.

    Cheap on purpose (pid file plus a TCP connect) so ``socialrec infra status`` answers fast.
    """
    if settings.cluster:
        return cluster.status(settings, parse_services(services))
    report = []
    for name in parse_services(services):
        svc = service_of(settings, name)
        pid = owned_pid(svc)
        port_open = is_port_open(svc.host, svc.port)
        if pid is not None:
            state = "running" if port_open else "starting"
            note = "" if port_open else f"port not open yet; see {svc.log_file}"
        else:
            state = "stopped"
            note = "port in use by a process socialrec did not start" if port_open else ""
        report.append(ServiceStatus(name, state, pid, svc.address, svc.data_dir, note))
    return report


def run_command(settings: Settings, action: str, services: str = "kafka,redis") -> int:
    """Entry point for ``socialrec infra up|down|status``; returns the process exit code.

    ``status`` exits 0 when every requested service runs and 3 otherwise (the LSB convention
    for "not running"), so scripts can test it.
    """
    try:
        if action == "up":
            up(settings, services)
            return 0
        if action == "down":
            down(settings, services)
            return 0
        if action == "status":
            report = status(settings, services)
            for item in report:
                print(item.line())
            return 0 if all(item.running for item in report) else 3
        raise InfraError(f"unknown action {action!r}; use up, down or status")
    except InfraError as exc:
        say(f"error: {exc}")
        return 1
