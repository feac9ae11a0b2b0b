"""One managed service described from the settings, started, and proved ready (by talking to
it, never by sleeping a fixed time); whether a running one answers or never will.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from streams.config import Settings
from streams.ops.infra.base import (
    POLL_INTERVAL_S,
    InfraError,
    Service,
    run_async,
    say,
)
from streams.ops.infra.kafka import kafka_answers, kafka_server_properties, start_kafka
from streams.ops.infra.pids import is_port_open, pid_alive
from streams.ops.infra.redis_server import listener, redis_answers, start_redis, started_listener
from streams.ops.infra_auth import write_private
from streams.ops.infra_redis_tls import redis_client_settings
from streams.ops.infra_tls import client_settings, local_ca_file
from streams.ops.kafka_acl import FRONTEND_USERS_FILE, create_frontend_user, revoke_users
from streams.security import redis_sync_client


def service_answers(settings: Settings, svc: Service) -> bool:
    """Whether the service is serving requests (not merely listening) to the settings'
    clients, credentials included."""
    if not is_port_open(svc.host, svc.port):
        return False
    if svc.name == "redis":
        return redis_answers(redis_client_settings(settings, svc.data_dir))
    return run_async(lambda: kafka_answers(client_settings(settings, svc.data_dir)))


def kafka_ready(settings: Settings, svc: Service) -> None:
    """What a running broker gets on every ``up``: the frontends' user (a changed password
    takes effect), and the variable that makes clients trust the local CA, if they do not yet."""
    client = client_settings(settings, svc.data_dir)
    current = settings.kafka_frontend_username
    if current:
        run_async(lambda: create_frontend_user(client))
        say(f"kafka: the frontends' user {current!r} may log in")
    # A renamed (or removed) frontends' user keeps no access: the broker's users are kept
    # with its data, so the former ones are known here, and only those `up` made are touched.
    made = svc.data_dir / FRONTEND_USERS_FILE
    former = [u for u in (made.read_text().split() if made.exists() else []) if u != current]
    if former:
        run_async(lambda: revoke_users(client, former))
        say(f"kafka: the former frontends' user(s) {', '.join(map(repr, former))} revoked")
    if current or made.exists():
        write_private(made, f"{current}\n" if current else "")
    if client is not settings:
        say(
            "kafka: TLS with the CA `socialrec infra up` made; clients trust it with "
            f"SOCIALREC_KAFKA_SSL_CA_FILE={local_ca_file(svc.data_dir)}"
        )


def redis_ready(settings: Settings, svc: Service) -> None:
    """Tell clients how to trust the local Redis's CA, if they do not yet."""
    if redis_client_settings(settings, svc.data_dir) is not settings:
        say(
            "redis: TLS with the CA `socialrec infra up` made; clients trust it with "
            f"SOCIALREC_REDIS_SSL_CA_FILE={local_ca_file(svc.data_dir)}"
        )


def started_otherwise(settings: Settings, svc: Service) -> str | None:
    """Why a running server that does not answer never will, if it was started with other
    settings (another listener, another login) rather than still starting."""
    import redis

    if svc.name == "kafka":
        props = svc.data_dir / "server.properties"  # written when it started
        if props.exists() and props.read_text() != kafka_server_properties(settings):
            return "was started with other settings (listener, login or ports)"
        return None
    started = started_listener(svc)
    if started != listener(settings):
        return "listens with TLS (rediss://)" if started == "tls" else "listens without TLS"
    client = redis_sync_client(redis_client_settings(settings, svc.data_dir), timeout_s=1.0)
    try:
        client.ping()
    except redis.AuthenticationError:
        return "refuses these settings' login (it was started with another one)"
    except redis.ConnectionError as exc:
        cause = exc.__context__  # redis-py's own message hides the TLS error
        if isinstance(cause, ssl.SSLError):
            return f"fails these settings' TLS ({cause.reason}): check SOCIALREC_REDIS_SSL_CA_FILE"
        return None
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()
    return None


def refuse_foreign_port(settings: Settings, svc: Service) -> None:
    """Fail fast when a process socialrec did not start holds one of our ports."""
    ports = [(svc.port, svc.env_var)]
    if svc.name == "kafka":
        ports.append((settings.kafka_controller_port, "SOCIALREC_KAFKA_CONTROLLER_PORT"))
    refuse_foreign(svc, ports)


def refuse_foreign(svc: Service, ports: Sequence[tuple[int, str]]) -> None:
    """Fail fast if any of ``ports`` (each with the variable that sets it) is open already."""
    for port, env_var in ports:
        if is_port_open(svc.host, port):
            raise InfraError(
                f"{svc.name}: port {port} on {svc.host} is already in use by a process socialrec "
                f"did not start; stop that process or set {env_var} to use a free port"
            )


def start_service(settings: Settings, svc: Service) -> int:
    """Launch the service's server detached; return its pid."""
    if svc.name == "kafka":
        return start_kafka(settings, svc)
    return start_redis(settings, svc)


def wait_ready(settings: Settings, svc: Service, pid: int) -> None:
    """Poll until the server answers; fail early if it dies, with a pointer to its log."""

    def died(_: Service) -> str:
        return f"{svc.name} exited during start-up; see {svc.log_file} {exit_report(svc)}"

    late = (
        f"{svc.name} (pid {pid}) did not answer at {svc.address} within "
        f"{svc.ready_timeout_s:.0f}s; see {svc.log_file}; stop it with `socialrec infra down`"
    )
    took = poll_ready(
        [(svc, pid)], lambda: service_answers(settings, svc), svc.ready_timeout_s, died, late
    )
    say(f"{svc.name}: ready at {svc.address} in {took:.1f}s")


def poll_ready(
    running: Sequence[tuple[Service, int]],
    ready: Callable[[], bool],
    timeout_s: float,
    died: Callable[[Service], str],
    late: str,
) -> float:
    """Poll ``ready`` until it holds and return the seconds it took. A server of ``running``
    that dies first loses its pid file and fails with ``died(its service)``; no readiness
    within ``timeout_s`` fails with ``late``."""
    started = time.monotonic()
    while time.monotonic() < started + timeout_s:
        for svc, pid in running:
            if not pid_alive(pid):
                svc.pid_file.unlink(missing_ok=True)
                raise InfraError(died(svc))
        if ready():
            return time.monotonic() - started
        time.sleep(POLL_INTERVAL_S)
    raise InfraError(late)


def exit_report(svc: Service) -> str:
    """Where a server that died at start-up said why, and what it said: the exception a broker
    exited with and the tail of its own output, in the message itself (a CI run's temporary
    directories are gone by the time anyone reads it)."""
    return f"(and {_startup_log(svc)}){_fatal_error(svc)}{_tail(_startup_log(svc))}"


def _is_broker(svc: Service) -> bool:
    return svc.name == "kafka" or svc.name.startswith("kafka-")  # a cluster's kafka-1..3


def _startup_log(svc: Service) -> Path:
    """Where the process's own stdout/stderr went (JVM errors land here, not in server.log)."""
    return svc.data_dir / "logs" / "kafka.out" if _is_broker(svc) else svc.log_file


def _fatal_error(svc: Service) -> str:
    """The exception the broker exited with, from its log: its own output (kafka.out) rarely
    says, and TLS or login settings it cannot use end there (say, a certificate its CA file
    does not trust)."""
    try:
        lines = svc.log_file.read_text(errors="replace").splitlines() if _is_broker(svc) else []
    except OSError:
        return ""
    for before, line in zip(reversed(lines[:-1]), reversed(lines[1:]), strict=True):
        if "fatal exception during startup" in before:
            return f"\n    {line[:400]}"
    return ""


def _tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return ("\n    " + "\n    ".join(text)) if text else ""
