"""``socialrec infra up --cluster``: three brokers whose topics get replication 3 and
min.insync.replicas 2, a Redis Cluster of three masters with a replica each, acks=all writes
that go on with a broker stopped, and a ``down`` that leaves no process and no port behind.

The module starts its own cluster on its own ports and data dir (it needs none of the shared
servers) and shares it between its tests, which run in file order: the broker stopped by one
test stays stopped, and the last test takes everything down.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from redis.cluster import RedisCluster

from models.simulator import generate_events, generate_world
from streams.config import Settings, load_settings
from streams.ops import infra
from streams.ops.infra.base import STOP_TIMEOUT_S
from streams.ops.infra.cluster import members
from streams.ops.infra.cluster_redis import BUS_PORT_OFFSET, node_view
from streams.ops.infra.kafka import brokers_seen
from streams.ops.infra.pids import is_port_open, owned_pid, pid_alive, send_signal, wait_stopped
from streams.ops.topics import apply_topics
from streams.redis_cluster import cluster_answers
from streams.runtime.consumer import events_group
from streams.security import kafka_client_kwargs
from streams.tools.processes import ensure_infra
from streams.tools.replay import group_caught_up
from tests.conftest import require_tools
from tests.e2e.conftest import WorkerProcess, keep_figures, produce_json, running, wait_for
from tests.ports import free_run

# Three JVMs and six Redis nodes, some 45 s: `make test` runs it, `make unit` does not.
pytestmark = pytest.mark.slow

# Where the search for free ports starts: away from the shared servers' defaults, and below
# Linux's ephemeral range (tests/ports.py). Redis' bus ports lie 10,000 above its client ports,
# so those start low enough for both.
KAFKA_PORTS_FROM = 23092
CONTROLLER_PORTS_FROM = 23192
REDIS_PORTS_FROM = 21000


@pytest.fixture(autouse=True)
def _servers_for_integration_tests() -> None:
    """Replaces the shared check (tests/conftest.py): this module brings its own servers."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running cluster on free ports, its Kafka jars shared with the project's cache."""
    require_tools("java", "redis-server", "redis-cli")
    shared = load_settings()
    data_dir = tmp_path_factory.mktemp("cluster")
    libs = shared.data_dir / f"kafka-libs-{shared.kafka_version}"
    if libs.is_dir():  # saves resolving them again with Maven
        (data_dir / libs.name).symlink_to(libs)
    kafka = free_run(KAFKA_PORTS_FROM, 3)
    settings = load_settings(
        cluster=True,
        data_dir=data_dir,
        kafka_bootstrap=",".join(f"127.0.0.1:{kafka + i}" for i in range(3)),
        kafka_controller_port=free_run(CONTROLLER_PORTS_FROM, 3),
        redis_cluster_port=free_run(REDIS_PORTS_FROM, 6, BUS_PORT_OFFSET),
        topic_prefix="cluster.",
    )
    try:
        infra.up(settings)
        yield settings
    finally:
        infra.down(settings)


async def test_three_brokers_and_topics_replicated_three_times(cluster: Settings) -> None:
    pids = {s.name: s.pid for s in infra.status(cluster)}
    infra.up(cluster)  # already up: harmless, nothing restarted
    assert {s.name: s.pid for s in infra.status(cluster)} == pids
    assert await brokers_seen(cluster) == 3
    # A tool that starts what is missing (the bench, the demo) finds the layout up, Redis
    # Cluster included, so it will stop nothing it did not start.
    assert await cluster_answers(cluster)
    assert await asyncio.to_thread(ensure_infra, cluster) == ()

    assert infra.run_command(cluster, "status") == 0
    await apply_topics(cluster)
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(cluster))
    await admin.start()
    try:
        (events,) = await admin.describe_topics([cluster.topic("events")])
        assert len(events["partitions"]) == 6
        assert {len(p["replicas"]) for p in events["partitions"]} == {3}
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, cluster.topic("events"))]
        )
        (resource,) = response.to_object()["resources"]
        configs = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
        assert configs["min.insync.replicas"] == "2"
    finally:
        await admin.close()


def test_redis_cluster_has_three_masters_with_a_replica_each(cluster: Settings) -> None:
    nodes = [m.svc for m in members(cluster, ("redis",))]
    for svc in nodes:
        view = node_view(svc)
        assert view is not None, f"{svc.name} does not answer"
        assert view.complete, (svc.name, view)
    writer = RedisCluster(host="127.0.0.1", port=nodes[0].port)
    reader = RedisCluster(host="127.0.0.1", port=nodes[-1].port)
    try:
        # Keys spread over every master's slots: each is readable through another client.
        for n in range(12):
            writer.set(f"cluster-test:{n}", n)
        assert [int(reader.get(f"cluster-test:{n}") or -1) for n in range(12)] == list(range(12))
    finally:
        writer.close()
        reader.close()


async def test_a_worker_carries_on_while_the_busiest_broker_stops(cluster: Settings) -> None:
    """A worker on the whole layout (three brokers, its state on the Redis Cluster) while the
    broker leading most ``events`` partitions stops: the producer's writes go on, the worker
    takes every event after the stop from the new leaders without a dead letter, and the
    broker rejoins. The seconds from the stop until the worker consumed everything are kept
    in test-artifacts/recovery.json."""
    assert cluster.redis_cluster
    settings = cluster.model_copy(update={"app_id": f"test-{uuid.uuid4().hex[:8]}"})
    await apply_topics(settings)
    world = generate_world(7, users=60, items=120)
    events = [
        orjson.loads(e.to_json())
        for e in generate_events(world, 7, count=600, start_ts=time.time() - 600)
    ]
    worker = WorkerProcess(settings, app_id=settings.app_id, extra_env=_cluster_env(settings))
    group = events_group(settings)
    async with running(worker):
        producer = AIOKafkaProducer(
            **kafka_client_kwargs(settings), acks=settings.producer_acks, enable_idempotence=True
        )
        await producer.start()
        try:
            await produce_json(producer, settings, events[:300])
            await wait_for(lambda: group_caught_up(settings, group), 60, "the first half")
            busiest = await _busiest_broker(settings)
            pid = owned_pid(busiest)
            assert pid is not None
            stopped = time.monotonic()
            send_signal(pid, signal.SIGTERM)
            wait_stopped(busiest, pid)
            await produce_json(producer, settings, events[300:])
        finally:
            await producer.stop()
        await wait_for(lambda: group_caught_up(settings, group), 120, "the second half")
        consumed_s = time.monotonic() - stopped
        assert await worker.metric("socialrec_events_consumed_total") == len(events)
        assert await worker.metric("socialrec_dead_letters_total") == 0
    keep_figures("broker_stop", {"all_consumed_after_s": round(consumed_s, 1)})
    infra.up(cluster)  # the broker rejoins; the next test stops another one
    assert await brokers_seen(cluster) == 3


def _cluster_env(settings: Settings) -> dict[str, str]:
    return {
        "SOCIALREC_CLUSTER": "true",
        "SOCIALREC_KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
    }


async def _busiest_broker(settings: Settings) -> Any:
    """The broker that leads most partitions of ``events``."""
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        (events,) = await admin.describe_topics([settings.topic("events")])
    finally:
        await admin.close()
    leaders = Counter(p["leader"] for p in events["partitions"])
    node_id = leaders.most_common(1)[0][0]
    return [m.svc for m in members(settings, ("kafka",))][node_id - 1]


async def test_acks_all_writes_go_on_with_one_broker_stopped(cluster: Settings) -> None:
    assert cluster.producer_acks == -1
    producer = AIOKafkaProducer(
        **kafka_client_kwargs(cluster), acks=cluster.producer_acks, enable_idempotence=True
    )
    await producer.start()
    try:
        topic = cluster.topic("events")
        for partition in range(6):
            await producer.send_and_wait(topic, b"before", key=b"k", partition=partition)
        (broker,) = [m.svc for m in members(cluster, ("kafka",)) if m.svc.name == "kafka-2"]
        pid = owned_pid(broker)
        assert pid is not None
        send_signal(pid, signal.SIGTERM)
        wait_stopped(broker, pid)
        # Every partition, whichever broker led it, takes a write all in-sync replicas
        # (two remain, the minimum) acknowledge.
        for partition in range(6):
            await producer.send_and_wait(topic, b"after", key=b"k", partition=partition)
    finally:
        await producer.stop()
    # The metadata the admin call reads catches up with the fencing within moments.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if await brokers_seen(cluster) == 2:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the admin call still sees the stopped broker after 15 s")


def test_down_stops_every_member_and_frees_every_port(cluster: Settings) -> None:
    """Even the broker left alone, without the controller quorum that must approve its
    shutdown (Kafka would wait five minutes for it): ``down`` ends well before its timeout."""
    everyone = members(cluster, ("kafka", "redis"))
    (third,) = [m.svc for m in everyone if m.svc.name == "kafka-3"]
    pid = owned_pid(third)
    assert pid is not None
    send_signal(pid, signal.SIGTERM)
    wait_stopped(third, pid)  # approved by kafka-1 and kafka-3, the quorum still
    pids = [pid for m in everyone if (pid := owned_pid(m.svc)) is not None]
    assert len(pids) == 7  # kafka-2 was stopped by the test before, kafka-3 just now
    started = time.monotonic()
    infra.down(cluster)
    assert time.monotonic() - started < STOP_TIMEOUT_S, "down waited out its timeout"
    assert not any(pid_alive(pid) for pid in pids)
    assert not any(m.svc.pid_file.exists() for m in everyone)
    ports = [port for m in everyone for port in m.ports]
    assert len(ports) == 18  # client and controller or cluster bus ports
    assert [port for port in ports if is_port_open("127.0.0.1", port)] == []
    assert not list(Path(cluster.data_dir, "cluster").glob("*.pid"))
