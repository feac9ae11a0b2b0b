"""Start, stop and inspect the local Kafka broker and Redis that tests, the demo and the
benchmark run against.

These machines have no Docker engine, so the project runs real servers itself: Apache Kafka's
own jars (resolved once by Maven into ``data_dir/kafka-libs-<version>``) as a single-node KRaft
broker, and Debian's ``redis-server``. Everything lives under ``settings.data_dir``; nothing
here touches a server this module did not start.

Ownership is proved by a pid file *and* the process command line (``/proc/<pid>/cmdline``), so
a recycled pid is never mistaken for our server and ``down`` never signals a stranger.
Readiness is proved by talking to the server (Redis PING, a Kafka admin metadata call), never
by sleeping a fixed time.

>>> parse_services("redis, kafka")
('kafka', 'redis')
>>> kafka_cluster_id_is_valid(new_cluster_id())
True
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from streams.config import PROJECT_ROOT, Settings
from streams.infra_auth import (
    AuthSetupError,
    check_formatted_user,
    kafka_sasl,
    kafka_sasl_properties,
    record_formatted_user,
    redis_acl,
    scram_spec,
    write_private,
)
from streams.security import kafka_client_kwargs, kafka_password, redis_sync_client

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
class _Service:
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


# --- public API --------------------------------------------------------------------------------


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
    """
    names = parse_services(services)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(settings), _auth_errors():
        waiting: list[tuple[_Service, int]] = []
        for name in names:
            svc = _service(settings, name)
            pid = _owned_pid(svc)
            if pid is not None and _answers(settings, svc):
                _say(f"{name}: already running (pid {pid}) at {svc.address}")
                continue
            if name == "kafka" and kafka_sasl(settings) and _formatted(settings):
                # A broker without this user (or with another password) would never answer.
                check_formatted_user(settings, _kafka_dir(settings))
            if pid is not None and (reason := _started_otherwise(settings, svc)):
                raise InfraError(
                    f"{name}: the running server (pid {pid}) {reason}; restart it with "
                    f"`socialrec infra down --services {name}`, then `socialrec infra up`"
                )
            if pid is None:
                _refuse_foreign_port(settings, svc)
                pid = _start(settings, svc)
            waiting.append((svc, pid))
        for svc, pid in waiting:
            _wait_ready(settings, svc, pid)


def down(settings: Settings, services: str | Iterable[str] = SERVICES) -> None:
    """Stop what ``up`` started (by pid file): SIGTERM, wait, then SIGKILL.

    A server we did not start is never signalled; stale pid files are removed.
    """
    names = parse_services(services)
    if not settings.data_dir.exists():
        for name in names:
            _say(f"{name}: not running")
        return
    with _locked(settings):
        stopping: list[tuple[_Service, int]] = []
        for name in names:
            svc = _service(settings, name)
            pid = _owned_pid(svc)
            if pid is None:
                _say(f"{name}: not running")
                continue
            _say(f"{name}: stopping pid {pid}")
            _signal(pid, signal.SIGTERM)
            stopping.append((svc, pid))
        for svc, pid in stopping:
            _wait_stopped(svc, pid)


def kill(settings: Settings, service: str) -> int:
    """SIGKILL a server this module started (a crash, for fault tests) and wait until it is
    gone, so ``up`` can start it again at once; returns the pid it had."""
    svc = _service(settings, service)
    pid = _owned_pid(svc)
    if pid is None:
        raise InfraError(f"{service}: not started by `socialrec infra up`, so not killed")
    _signal(pid, signal.SIGKILL)
    if not _wait_dead(pid, KILL_TIMEOUT_S):
        raise InfraError(f"{svc.name}: pid {pid} survived SIGKILL")
    # A multi-threaded server reads as a zombie while its other threads still hold its
    # sockets (some 50 ms for Redis): `up` would take the port for a stranger's.
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while _port_open(svc.host, svc.port):
        if time.monotonic() > deadline:
            raise InfraError(f"{svc.name}: port {svc.port} still open after SIGKILL")
        time.sleep(POLL_INTERVAL_S / 2)
    return pid


def status(settings: Settings, services: str | Iterable[str] = SERVICES) -> list[ServiceStatus]:
    """Report each service: running / starting / stopped, pid, address and data dir.

    Cheap on purpose (pid file plus a TCP connect) so ``socialrec infra status`` answers fast.
    """
    report = []
    for name in parse_services(services):
        svc = _service(settings, name)
        pid = _owned_pid(svc)
        port_open = _port_open(svc.host, svc.port)
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
        _say(f"error: {exc}")
        return 1


def redis_answers(settings: Settings, timeout_s: float = 1.0) -> bool:
    """True when the settings' Redis answers PING with their credentials (False while it
    loads its AOF, or when it refuses them)."""
    import redis

    client = redis_sync_client(settings, timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


async def kafka_answers(settings: Settings, timeout_s: float = 5.0) -> bool:
    """True when the settings' Kafka answers an admin metadata call (with their credentials)
    naming a broker.

    An open TCP port is not enough: the listener opens before the broker can serve requests.
    """
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(
        **kafka_client_kwargs(settings),
        client_id="socialrec-infra",
        request_timeout_ms=max(1000, int(timeout_s * 1000)),
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            cluster: dict[str, Any] = await admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 chars).

    Kafka's own generator re-rolls ids starting with '-' so they never look like a flag.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def kafka_cluster_id_is_valid(cluster_id: str) -> bool:
    """Whether ``cluster_id`` decodes to the 16 bytes KRaft expects."""
    try:
        raw = base64.urlsafe_b64decode(cluster_id + "==")
    except ValueError:
        return False
    return len(cluster_id) == 22 and len(raw) == 16


def ensure_kafka_libs(settings: Settings) -> Path:
    """Resolve Kafka's runtime jars with Maven once and cache them per version.

    The marker file is written only after a complete copy, so an interrupted or failed
    download is thrown away and redone next time instead of starting a broken classpath. It
    records a hash of the pom too: editing infra/kafka/pom.xml re-resolves automatically.
    """
    libs = settings.data_dir / f"kafka-libs-{settings.kafka_version}"
    marker = libs / LIBS_MARKER
    fingerprint = f"pom sha256 {hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()}"
    if marker.exists() and marker.read_text().splitlines()[:1] == [fingerprint]:
        return libs
    mvn = _require_binary(
        "mvn", "Maven resolves Kafka's jars: install it (Debian/Ubuntu: apt-get install -y maven)"
    )
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    _say(f"kafka: resolving Apache Kafka {settings.kafka_version} jars with Maven into {libs}")
    started = time.monotonic()
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(KAFKA_POM),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
        f"-Dkafka.version={settings.kafka_version}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=PROJECT_ROOT)
    jars = sorted(p.name for p in libs.glob("*.jar"))
    if result.returncode != 0 or not any(j.startswith("kafka_2.13-") for j in jars):
        output = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise InfraError(
            f"Maven could not resolve Kafka {settings.kafka_version} (exit {result.returncode}); "
            "check network access to Maven Central and that SOCIALREC_KAFKA_VERSION names a "
            "released version. Last Maven output:\n    " + "\n    ".join(output)
        )
    marker.write_text("\n".join([fingerprint, *jars]) + "\n")
    _say(f"kafka: {len(jars)} jars cached ({time.monotonic() - started:.0f}s)")
    problem = slf4j_problem(jars)
    if problem:
        _say(f"warning: {problem}")
    return libs


def slf4j_problem(jars: Iterable[str]) -> str | None:
    """Why the broker would log nothing, if the classpath's SLF4J API and binding disagree.

    SLF4J 1.x only finds 1.x bindings and 2.x only 2.x providers; a mismatch silently falls
    back to the NOP logger, leaving server.log empty exactly when a start-up fails.

    >>> slf4j_problem(["slf4j-api-2.0.17.jar", "log4j-slf4j2-impl-2.25.3.jar"]) is None
    True
    >>> slf4j_problem(["slf4j-api-1.7.36.jar", "log4j-slf4j2-impl-2.25.3.jar"])[:40]
    'slf4j-api-1.7.36.jar cannot load log4j-s'
    """
    names = list(jars)
    api = next((j for j in names if j.startswith("slf4j-api-")), None)
    if api is None:
        return None
    v1_api = api.startswith("slf4j-api-1.")
    if v1_api and any(j.startswith("log4j-slf4j2-impl-") for j in names):
        return (
            f"{api} cannot load log4j-slf4j2-impl (an SLF4J 2 provider): the broker will log "
            "nothing; pin org.slf4j:slf4j-api 2.x in infra/kafka/pom.xml"
        )
    if not v1_api and any(j.startswith("log4j-slf4j-impl-") for j in names):
        return (
            f"{api} cannot load log4j-slf4j-impl (an SLF4J 1 binding): the broker will log "
            "nothing; use log4j-slf4j2-impl in infra/kafka/pom.xml"
        )
    return None


def kafka_server_properties(settings: Settings) -> str:
    """The single-node KRaft (combined broker + controller) configuration.

    Replication factors and ISR minimums are 1 because there is one broker; the short
    rebalance delay and small dedupe buffer keep a test broker quick and small. With SASL
    configured, the client (and inter-broker) listener asks for SCRAM (streams/infra_auth.py).
    """
    svc = _service(settings, "kafka")
    host = svc.host
    cport = settings.kafka_controller_port
    sasl = kafka_sasl(settings)
    name = "SASL_PLAINTEXT" if sasl else "PLAINTEXT"  # the listener is named after its protocol
    client = f"{name}://{host}:{svc.port}"
    controller = f"CONTROLLER://{host}:{cport}"
    lines = [
        "# Written by `socialrec infra up` on every start; change streams/infra.py instead.",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers={host}:{cport}",
        f"listeners={client},{controller}",
        f"advertised.listeners={client},{controller}",
        f"listener.security.protocol.map={name}:{name},CONTROLLER:PLAINTEXT",
        f"inter.broker.listener.name={name}",
        "controller.listener.names=CONTROLLER",
        *(kafka_sasl_properties(settings, name) if sasl else []),
        f"log.dirs={_kafka_dir(settings) / 'data'}",
        "num.partitions=1",
        "default.replication.factor=1",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "log.cleaner.dedupe.buffer.size=2097152",
    ]
    return "\n".join(lines) + "\n"


def kafka_log4j2_properties(settings: Settings) -> str:
    """log4j2 configuration sending the broker's log to ``data_dir/kafka/logs/server.log``."""
    logs = _kafka_dir(settings) / "logs"
    return "\n".join(
        [
            "status = warn",
            "name = socialrec-kafka",
            "appender.server.type = RollingFile",
            "appender.server.name = server",
            f"appender.server.fileName = {logs}/server.log",
            f"appender.server.filePattern = {logs}/server.log.%i",
            "appender.server.layout.type = PatternLayout",
            "appender.server.layout.pattern = [%d] %p %m (%c)%n",
            "appender.server.policies.type = Policies",
            "appender.server.policies.size.type = SizeBasedTriggeringPolicy",
            "appender.server.policies.size.size = 20MB",
            "appender.server.strategy.type = DefaultRolloverStrategy",
            "appender.server.strategy.max = 3",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.server.ref = server",
            # The request logger is extremely chatty at INFO and tells us nothing here.
            "logger.request.name = kafka.request.logger",
            "logger.request.level = WARN",
            "",
        ]
    )


# --- services ----------------------------------------------------------------------------------


def _kafka_dir(settings: Settings) -> Path:
    return settings.data_dir / "kafka"


def _formatted(settings: Settings) -> bool:
    return (_kafka_dir(settings) / "data" / "meta.properties").exists()


def _service(settings: Settings, name: str) -> _Service:
    """Describe one managed service from the settings (paths, address, ownership markers)."""
    root = settings.data_dir
    if name == "kafka":
        host = _local_host(settings.kafka_bootstrap.split(",")[0].rpartition(":")[0], "kafka")
        kdir = _kafka_dir(settings)
        return _Service(
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
        if parts.scheme != "redis":
            raise InfraError(
                "socialrec infra runs Redis only on a plain TCP port (no TLS); set "
                "SOCIALREC_REDIS_URL to redis://[user@]127.0.0.1:<port>/<db>"
            )
        host = _local_host(parts.hostname or "127.0.0.1", "redis")
        return _Service(
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


def _answers(settings: Settings, svc: _Service) -> bool:
    """Whether the service is serving requests (not merely listening) to the settings'
    clients, credentials included."""
    if not _port_open(svc.host, svc.port):
        return False
    if svc.name == "redis":
        return redis_answers(settings)
    return _run_async(lambda: kafka_answers(settings))


def _started_otherwise(settings: Settings, svc: _Service) -> str | None:
    """Why a running server that does not answer never will, if it was started with other
    settings (another listener, another login) rather than still starting."""
    import redis

    if svc.name == "kafka":
        props = svc.data_dir / "server.properties"  # written when it started
        if props.exists() and props.read_text() != kafka_server_properties(settings):
            return "was started with other settings (listener, login or ports)"
        return None
    client = redis_sync_client(settings, timeout_s=1.0)
    try:
        client.ping()
    except redis.AuthenticationError:
        return "refuses these settings' login (it was started with another one)"
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()
    return None


def _refuse_foreign_port(settings: Settings, svc: _Service) -> None:
    """Fail fast when a process socialrec did not start holds one of our ports."""
    ports = [(svc.port, svc.env_var)]
    if svc.name == "kafka":
        ports.append((settings.kafka_controller_port, "SOCIALREC_KAFKA_CONTROLLER_PORT"))
    for port, env_var in ports:
        if _port_open(svc.host, port):
            raise InfraError(
                f"{svc.name}: port {port} on {svc.host} is already in use by a process socialrec "
                f"did not start; stop that process or set {env_var} to use a free port"
            )


def _start(settings: Settings, svc: _Service) -> int:
    if svc.name == "kafka":
        return _start_kafka(settings, svc)
    return _start_redis(settings, svc)


def _start_kafka(settings: Settings, svc: _Service) -> int:
    """Write the configuration, format storage once, then launch the broker detached."""
    java = _require_binary(
        "java",
        "Kafka needs a Java runtime (17+): install one "
        "(Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless)",
    )
    libs = ensure_kafka_libs(settings)
    kdir = svc.data_dir
    (kdir / "logs").mkdir(parents=True, exist_ok=True)
    (kdir / "data").mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    log4j = kdir / "log4j2.properties"
    write_private(props, kafka_server_properties(settings))  # may hold the broker's password
    log4j.write_text(kafka_log4j2_properties(settings))
    jvm = [
        java,
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={kdir / 'logs'}",
        "-Djava.awt.headless=true",
        "-cp",
        f"{libs}/*",
    ]
    if not _formatted(settings):
        _format_kafka_storage(settings, jvm, props, svc)
    cmd = [
        java,
        *settings.kafka_heap.split(),
        "-XX:ParallelGCThreads=2",
        *jvm[1:],
        "kafka.Kafka",
        str(props),
    ]
    pid = _spawn_detached(cmd, kdir / "logs" / "kafka.out")
    svc.pid_file.write_text(f"{pid}\n")
    _say(
        f"kafka: started pid {pid} on {svc.address} (controller port "
        f"{settings.kafka_controller_port}), log {svc.log_file}"
    )
    return pid


def _format_kafka_storage(settings: Settings, jvm: list[str], props: Path, svc: _Service) -> None:
    """Format the KRaft log directory once (a standalone controller quorum of one), with the
    SCRAM user when SASL is configured (users exist from the first metadata record on)."""
    cluster_id = new_cluster_id()
    sasl = kafka_sasl(settings)
    password = kafka_password(settings) if sasl else ""
    scram = []
    if sasl:
        user = settings.kafka_username
        scram = ["--add-scram", scram_spec(settings.kafka_sasl_mechanism, user, password)]
        _say(f"kafka: formatting storage (first start) with the SCRAM user {user!r}")
    else:
        _say("kafka: formatting storage (first start)")
    cmd = [
        *jvm,
        "kafka.tools.StorageTool",
        "format",
        "--standalone",
        "-t",
        cluster_id,
        "-c",
        str(props),
        *scram,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        text = result.stdout + result.stderr
        output = (text.replace(password, "***") if password else text).strip().splitlines()[-15:]
        raise InfraError(
            f"kafka: formatting storage in {svc.data_dir / 'data'} failed "
            f"(exit {result.returncode}):\n    " + "\n    ".join(output)
        )
    if sasl:
        record_formatted_user(settings, svc.data_dir)


def _start_redis(settings: Settings, svc: _Service) -> int:
    """Launch redis-server on its own port and directory with an fsync-every-second AOF."""
    redis_server = _ensure_redis_server()
    svc.data_dir.mkdir(parents=True, exist_ok=True)
    acl = redis_acl(settings)
    acl_args = []
    if acl is not None:  # the settings log in: only that user, with that password
        acl_file = svc.data_dir / "users.acl"
        write_private(acl_file, acl)
        acl_args = ["--aclfile", str(acl_file)]
    cmd = [
        redis_server,
        "--port", str(svc.port),
        "--bind", svc.host,
        "--protected-mode", "yes",
        "--dir", str(svc.data_dir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--daemonize", "no",
        "--pidfile", str(svc.pid_file),
        "--logfile", "",
        *acl_args,
    ]  # fmt: skip
    pid = _spawn_detached(cmd, svc.log_file)
    svc.pid_file.write_text(f"{pid}\n")
    _say(f"redis: started pid {pid} on {svc.address}, log {svc.log_file}")
    return pid


def _ensure_redis_server() -> str:
    """Find redis-server; as root on Debian/Ubuntu install it, otherwise say how to."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise InfraError(
            "redis-server is not installed; install it "
            "(Debian/Ubuntu: sudo apt-get install -y redis-server) and run this again"
        )
    _say("redis: redis-server not found; installing Debian's redis-server package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=False)
    found = shutil.which("redis-server")
    if not found:
        raise InfraError("installing redis-server with apt-get failed; install it by hand")
    return found


# --- processes ---------------------------------------------------------------------------------


def _spawn_detached(cmd: list[str], log_file: Path) -> int:
    """Start ``cmd`` in a new session with stdout and stderr appended to ``log_file``.

    posix_spawn rather than Popen: no Popen object is left to warn "still running" when this
    process exits, and only fds 0-2 (redirected here) are inherited, so the child never holds
    our lock file or the caller's pipes (which would hang ``make`` or ``$(...)``).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        return os.posix_spawn(cmd[0], cmd, dict(os.environ), file_actions=actions, setsid=True)
    except OSError as exc:
        raise InfraError(f"could not start {Path(cmd[0]).name}: {exc}") from exc


def _wait_ready(settings: Settings, svc: _Service, pid: int) -> None:
    """Poll until the server answers; fail early if it dies, with a pointer to its log."""
    started = time.monotonic()
    deadline = started + svc.ready_timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            svc.pid_file.unlink(missing_ok=True)
            raise InfraError(
                f"{svc.name} exited during start-up; see {svc.log_file} "
                f"(and {_startup_log(svc)}){_tail(_startup_log(svc))}"
            )
        if _answers(settings, svc):
            _say(f"{svc.name}: ready at {svc.address} in {time.monotonic() - started:.1f}s")
            return
        time.sleep(POLL_INTERVAL_S)
    raise InfraError(
        f"{svc.name} (pid {pid}) did not answer at {svc.address} within "
        f"{svc.ready_timeout_s:.0f}s; see {svc.log_file}; stop it with `socialrec infra down`"
    )


def _startup_log(svc: _Service) -> Path:
    """Where the process's own stdout/stderr went (JVM errors land here, not in server.log)."""
    return svc.data_dir / "logs" / "kafka.out" if svc.name == "kafka" else svc.log_file


def _tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return ("\n    " + "\n    ".join(text)) if text else ""


def _wait_stopped(svc: _Service, pid: int) -> None:
    """Wait for a SIGTERMed server to exit; SIGKILL it if it takes too long."""
    started = time.monotonic()
    if not _wait_dead(pid, STOP_TIMEOUT_S):
        _say(f"{svc.name}: pid {pid} ignored SIGTERM for {STOP_TIMEOUT_S:.0f}s; sending SIGKILL")
        _signal(pid, signal.SIGKILL)
        if not _wait_dead(pid, KILL_TIMEOUT_S):
            raise InfraError(f"{svc.name}: pid {pid} survived SIGKILL")
    svc.pid_file.unlink(missing_ok=True)
    _say(f"{svc.name}: stopped in {time.monotonic() - started:.1f}s")


def _wait_dead(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(POLL_INTERVAL_S / 2)
    return not _alive(pid)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _owned_pid(svc: _Service) -> int | None:
    """The pid from our pid file if that process is alive and is our server.

    A pid file pointing at a dead or different process is stale and is removed.
    """
    try:
        pid = int(svc.pid_file.read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        svc.pid_file.unlink(missing_ok=True)
        return None
    if _alive(pid) and _is_ours(pid, svc.cmdline_markers):
        return pid
    _say(f"{svc.name}: removing stale pid file {svc.pid_file}")
    svc.pid_file.unlink(missing_ok=True)
    return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (reaping it first if it is our exited child)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def _is_ours(pid: int, markers: tuple[str, ...]) -> bool:
    """Check the process command line, so a recycled pid is never taken for our server."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return True  # no /proc: trust the pid file
    return all(marker in cmdline for marker in markers)


def _port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


# --- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _auth_errors() -> Iterator[None]:
    """Authentication the local servers cannot provide is an infra problem like any other."""
    try:
        yield
    except AuthSetupError as exc:
        raise InfraError(str(exc)) from None


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """Serialise concurrent ``up``/``down`` calls on one data dir (e.g. two terminals)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with (settings.data_dir / "infra.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
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


def _require_binary(name: str, hint: str) -> str:
    found = shutil.which(name)
    if not found:
        raise InfraError(f"`{name}` not found on PATH. {hint}")
    return found


def _say(message: str) -> None:
    """Concise progress on stderr (stdout stays clean for ``status`` output)."""
    # A closed terminal (SIGHUP) makes writes fail; stopping servers must not depend on them.
    with contextlib.suppress(OSError):
        print(f"socialrec infra: {message}", file=sys.stderr, flush=True)
