"""What every part of ``socialrec infra`` shares: the settings-independent constants, the error a
user can act on, what one managed server is, the lock on the data dir, and progress output.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import shutil
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from streams.config import PROJECT_ROOT, Settings
from streams.ops.infra_auth import (
    AuthSetupError,
)

SERVICES = ("kafka", "redis")
KAFKA_POM = PROJECT_ROOT / "infra" / "kafka" / "pom.xml"
KAFKA_READY_TIMEOUT_S = 120.0
REDIS_READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
KILL_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.2
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
LIBS_MARKER = ".complete"

T = TypeVar("T")


class InfraError(RuntimeError):
    """A problem the user can fix; the message says what to do."""


@dataclass(frozen=True)
class ServiceStatus:
    """What ``status`` knows about one service."""

    name: str
    state: str  # running | starting | stopped
    pid: int | None
    address: str
    data_dir: Path
    note: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"

    def line(self) -> str:
        pid = f"pid {self.pid}" if self.pid else "pid -"
        note = f"  ({self.note})" if self.note else ""
        return f"{self.name:<6} {self.state:<8} {pid:<11} {self.address:<21} {self.data_dir}{note}"


@dataclass(frozen=True)
class Service:
    """Where one managed server lives and how to recognise it."""

    name: str
    host: str
    port: int
    env_var: str
    pid_file: Path
    log_file: Path
    data_dir: Path
    cmdline_markers: tuple[str, ...]
    ready_timeout_s: float

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def kafka_dir(settings: Settings) -> Path:
    """Where the broker keeps its configuration, data and logs."""
    return settings.data_dir / "kafka"


def service_of(settings: Settings, name: str) -> Service:
    """Describe one managed service from the settings (paths, address, ownership markers)."""
    root = settings.data_dir
    if name == "kafka":
        host = _local_host(settings.kafka_bootstrap.split(",")[0].rpartition(":")[0], "kafka")
        kdir = kafka_dir(settings)
        return Service(
            name="kafka",
            host=host,
            port=settings.kafka_port,
            env_var="SOCIALREC_KAFKA_BOOTSTRAP",
            pid_file=root / "kafka.pid",
            log_file=kdir / "logs" / "server.log",
            data_dir=kdir,
            cmdline_markers=("kafka.Kafka", str(kdir / "server.properties")),
            ready_timeout_s=KAFKA_READY_TIMEOUT_S,
        )
    if name == "redis":
        parts = urlsplit(settings.redis_url)
        if parts.scheme not in ("redis", "rediss"):  # rediss: TLS (streams/ops/infra_redis_tls.py)
            raise InfraError(
                "socialrec infra runs Redis on a TCP port; set SOCIALREC_REDIS_URL to "
                "redis://[user@]127.0.0.1:<port>/<db> (or rediss:// for TLS)"
            )
        host = _local_host(parts.hostname or "127.0.0.1", "redis")
        return Service(
            name="redis",
            host=host,
            port=settings.redis_port,
            env_var="SOCIALREC_REDIS_URL",
            pid_file=root / "redis.pid",
            log_file=root / "redis" / "redis.log",
            data_dir=root / "redis",
            # Redis rewrites its process title to "redis-server <bind>:<port>" once started,
            # so only the program name is stable across the whole lifetime.
            cmdline_markers=("redis-server",),
            ready_timeout_s=REDIS_READY_TIMEOUT_S,
        )
    raise InfraError(f"unknown service {name!r}")


def _local_host(host: str, name: str) -> str:
    """We can only start servers on this machine: insist on a loopback address."""
    if host not in LOCAL_HOSTS:
        var = "SOCIALREC_KAFKA_BOOTSTRAP" if name == "kafka" else "SOCIALREC_REDIS_URL"
        raise InfraError(
            f"{name} is configured on {host!r}; socialrec infra only manages servers on "
            f"127.0.0.1 (change {var})"
        )
    return "127.0.0.1"


@contextlib.contextmanager
def auth_errors() -> Iterator[None]:
    """Authentication the local servers cannot provide is an infra problem like any other."""
    try:
        yield
    except AuthSetupError as exc:
        raise InfraError(str(exc)) from None


@contextlib.contextmanager
def locked(settings: Settings) -> Iterator[None]:
    """Serialise concurrent ``up``/``down`` calls on one data dir (e.g. two terminals)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with (settings.data_dir / "infra.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine from sync code, even when the caller is itself inside an event loop.

    A private loop (via a loop factory) leaves the caller's current event loop untouched,
    which matters under pytest-asyncio's session loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
            return runner.run(factory())
    box: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
                box.append(runner.run(factory()))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="socialrec-infra-probe")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


def require_binary(name: str, hint: str) -> str:
    """The path of the program ``name``; :class:`InfraError` with ``hint`` if it is missing."""
    found = shutil.which(name)
    if not found:
        raise InfraError(f"`{name}` not found on PATH. {hint}")
    return found


def say(message: str) -> None:
    """Concise progress on stderr (stdout stays clean for ``status`` output)."""
    # A closed terminal (SIGHUP) makes writes fail; stopping servers must not depend on them.
    with contextlib.suppress(OSError):
        print(f"socialrec infra: {message}", file=sys.stderr, flush=True)
