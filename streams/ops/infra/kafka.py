"""The single-node KRaft broker: Apache Kafka's own jars (resolved once by Maven into
``data_dir/kafka-libs-<version>``), its configuration, storage formatted once, the broker
launched detached, and readiness proved by an admin metadata call.

>>> kafka_cluster_id_is_valid(new_cluster_id())
True
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from streams.config import PROJECT_ROOT, Settings
from streams.ops.infra.base import (
    KAFKA_POM,
    LIBS_MARKER,
    InfraError,
    Service,
    kafka_dir,
    require_binary,
    say,
    service_of,
)
from streams.ops.infra.pids import spawn_detached
from streams.ops.infra_auth import (
    kafka_sasl,
    kafka_sasl_properties,
    record_formatted_user,
    scram_spec,
    write_private,
)
from streams.ops.infra_tls import broker_tls_properties, ensure_broker_tls, kafka_tls
from streams.security import kafka_client_kwargs, kafka_password


async def kafka_answers(settings: Settings, timeout_s: float = 5.0) -> bool:
    """True when the settings' Kafka answers an admin metadata call (with their credentials)
    naming a broker.

    An open TCP port is not enough: the listener opens before the broker can serve requests.
    """
    return await brokers_seen(settings, timeout_s) > 0


async def brokers_seen(settings: Settings, timeout_s: float = 5.0) -> int:
    """How many brokers an admin metadata call reports (0 while none answers, or no
    controller quorum has formed yet)."""
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
        return len(cluster.get("brokers") or [])
    except (KafkaError, OSError, TimeoutError):
        return 0
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
    mvn = require_binary(
        "mvn", "Maven resolves Kafka's jars: install it (Debian/Ubuntu: apt-get install -y maven)"
    )
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    say(f"kafka: resolving Apache Kafka {settings.kafka_version} jars with Maven into {libs}")
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
    say(f"kafka: {len(jars)} jars cached ({time.monotonic() - started:.0f}s)")
    problem = slf4j_problem(jars)
    if problem:
        say(f"warning: {problem}")
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
    configured, the client (and inter-broker) listener asks for SCRAM and an authorizer checks
    ACLs (streams/ops/infra_auth.py); with SSL or SASL_SSL it speaks TLS (streams/ops/infra_tls.py).
    """
    svc = service_of(settings, "kafka")
    host = svc.host
    cport = settings.kafka_controller_port
    sasl = kafka_sasl(settings)
    name = settings.kafka_security_protocol  # the listener is named after its protocol
    controller_protocol = "SASL_PLAINTEXT" if sasl else "PLAINTEXT"
    client = f"{name}://{host}:{svc.port}"
    controller = f"CONTROLLER://{host}:{cport}"
    lines = [
        "# Written by `socialrec infra up` on every start; "
        "change streams/ops/infra/kafka.py instead.",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers={host}:{cport}",
        f"listeners={client},{controller}",
        f"advertised.listeners={client},{controller}",
        f"listener.security.protocol.map={name}:{name},CONTROLLER:{controller_protocol}",
        f"inter.broker.listener.name={name}",
        "controller.listener.names=CONTROLLER",
        *(kafka_sasl_properties(settings, name) if sasl else []),
        *(broker_tls_properties(settings, svc.data_dir) if kafka_tls(settings) else []),
        f"log.dirs={kafka_dir(settings) / 'data'}",
        *broker_tuning(replicas=1, min_isr=1),
    ]
    return "\n".join(lines) + "\n"


def broker_tuning(replicas: int, min_isr: int) -> list[str]:
    """Settings every local broker shares: internal topics replicated ``replicas`` times with
    ``min_isr`` in sync, no topic created behind topics.yaml's back, and the short rebalance
    delay and small dedupe buffer that keep a test broker quick and small."""
    return [
        "num.partitions=1",
        f"default.replication.factor={replicas}",
        "auto.create.topics.enable=false",
        f"offsets.topic.replication.factor={replicas}",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min_isr}",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        "group.initial.rebalance.delay.ms=0",
        "log.cleaner.dedupe.buffer.size=2097152",
    ]


def kafka_log4j2_properties(settings: Settings, logs: Path | None = None) -> str:
    """log4j2 configuration sending the broker's log to ``server.log`` in ``logs`` (by default
    ``data_dir/kafka/logs``)."""
    logs = logs or kafka_dir(settings) / "logs"
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


def kafka_formatted(settings: Settings) -> bool:
    """Whether the broker's storage was formatted (its first start happened)."""
    return (kafka_dir(settings) / "data" / "meta.properties").exists()


def start_kafka(settings: Settings, svc: Service) -> int:
    """Write the configuration, format storage once, then launch the broker detached."""
    kdir = svc.data_dir
    if kafka_tls(settings):
        ensure_broker_tls(settings, kdir)  # before the properties, which name its keystore
    jvm = prepare_broker_dir(settings, kdir, kafka_server_properties(settings))
    props = kdir / "server.properties"
    if not kafka_formatted(settings):
        _format_kafka_storage(settings, jvm, props, svc)
    pid = launch_broker(settings, jvm, props, svc)
    say(
        f"kafka: started pid {pid} on {svc.address} (controller port "
        f"{settings.kafka_controller_port}), log {svc.log_file}"
    )
    return pid


def prepare_broker_dir(settings: Settings, kdir: Path, properties: str) -> list[str]:
    """Write a broker's configuration into ``kdir``; return the JVM command prefix (java, its
    logging and classpath) that its storage tool and the broker itself run with."""
    java = require_binary(
        "java",
        "Kafka needs a Java runtime (17+): install one "
        "(Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless)",
    )
    libs = ensure_kafka_libs(settings)
    (kdir / "logs").mkdir(parents=True, exist_ok=True)
    (kdir / "data").mkdir(parents=True, exist_ok=True)
    log4j = kdir / "log4j2.properties"
    write_private(kdir / "server.properties", properties)  # may hold the broker's password
    log4j.write_text(kafka_log4j2_properties(settings, kdir / "logs"))
    return [
        java,
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={kdir / 'logs'}",
        "-Djava.awt.headless=true",
        "-cp",
        f"{libs}/*",
    ]


def launch_broker(settings: Settings, jvm: list[str], props: Path, svc: Service) -> int:
    """Start ``kafka.Kafka`` detached with the settings' heap; write and return its pid."""
    cmd = [
        jvm[0],
        *settings.kafka_heap.split(),
        "-XX:ParallelGCThreads=2",
        *jvm[1:],
        "kafka.Kafka",
        str(props),
    ]
    pid = spawn_detached(cmd, svc.data_dir / "logs" / "kafka.out")
    svc.pid_file.write_text(f"{pid}\n")
    return pid


def _format_kafka_storage(settings: Settings, jvm: list[str], props: Path, svc: Service) -> None:
    """Format the KRaft log directory once (a standalone controller quorum of one), with the
    SCRAM user when SASL is configured (users exist from the first metadata record on)."""
    sasl = kafka_sasl(settings)
    password = kafka_password(settings) if sasl else ""
    scram = []
    if sasl:
        user = settings.kafka_username
        scram = ["--add-scram", scram_spec(settings.kafka_sasl_mechanism, user, password)]
        say(f"kafka: formatting storage (first start) with the SCRAM user {user!r}")
    else:
        say("kafka: formatting storage (first start)")
    format_storage(jvm, props, new_cluster_id(), svc, ["--standalone", *scram], password)
    if sasl:
        record_formatted_user(settings, svc.data_dir)


def format_storage(
    jvm: list[str],
    props: Path,
    cluster_id: str,
    svc: Service,
    extra: list[str],
    password: str = "",
) -> None:
    """Run Kafka's storage tool on one broker's log directory; its output (any password
    masked) becomes the error when it fails."""
    cmd = [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        text = result.stdout + result.stderr
        output = (text.replace(password, "***") if password else text).strip().splitlines()[-15:]
        raise InfraError(
            f"{svc.name}: formatting storage in {svc.data_dir / 'data'} failed "
            f"(exit {result.returncode}):\n    " + "\n    ".join(output)
        )
