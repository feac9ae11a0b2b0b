"""The whole live path on encrypted, authenticated transports only: a broker that speaks
SASL_SSL (SCRAM-SHA-512) and a Redis that speaks ``rediss://`` to an ACL user, both with the
operator's own certificate (a CA and a certificate for 127.0.0.1 this module makes with
openssl, not the one ``infra up`` would make), both started by the ``socialrec infra up``
command on this module's own ports and data dir, and stopped by ``socialrec infra down``.

A real ``socialrec worker`` and its learner child consume ``events`` and publish a list per
user to ``recommendations`` over them. Neither server has a plaintext port a client could fall
back to (a worker that silently spoke plaintext would never get ready), and plaintext clients,
even with the right passwords, are refused by both.

The module needs none of the suite's shared servers. The broker formats and starts once for
the module (15-30 s here); the whole module takes about a minute.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis.exceptions
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError

from streams.config import Settings, load_settings
from streams.ops import infra
from streams.ops.infra.pids import is_port_open, pid_alive
from streams.ops.topics import apply_topics
from streams.runtime.launch import preflight
from streams.security import kafka_client_kwargs, redis_client_for
from streams.tools.processes import settings_env
from tests.conftest import require_tools
from tests.e2e.conftest import (
    ROOT,
    WorkerProcess,
    assert_no_password_in_logs,
    consume_until,
    own_servers_dir,
    produce_json,
    running,
    security_env,
    wait_for,
)
from tests.ports import free_run
from tests.tls_certs import make_certs

#: Three free ports from here (broker, controller, Redis): away from the shared servers'
#: defaults, the Kafka TLS module's (+100), the cluster's (21000 up, 23092 up) and the Redis
#: TLS module's (22379).
PORTS_FROM = 24092
USER = "socialrec"
#: `socialrec infra up` waits up to two minutes for a server; a hang fails the module after.
INFRA_TIMEOUT_S = 180


@pytest.fixture(autouse=True)
def _servers_for_integration_tests() -> None:
    """Replaces the shared check (tests/conftest.py): this module brings its own servers."""


def socialrec_infra(action: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    """``socialrec infra <action>`` as an operator runs it, configured by environment only."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SOCIALREC_")},
        **settings_env(settings),
    }
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "infra", action],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=INFRA_TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of the SASL_SSL broker and the TLS-only ACL Redis, with the operator's
    certificate and CA and the passwords in files (as mounted secrets): the servers are up
    for the module and stopped however it ends."""
    require_tools("java", "redis-server", "openssl")
    root = tmp_path_factory.mktemp("secure")
    data = own_servers_dir(load_settings(), root, "kafka.pw", "redis.pw")
    certs = make_certs(root / "certs")  # the operator's: nothing of it comes from `infra up`
    first = free_run(PORTS_FROM, 3)
    settings = Settings(
        data_dir=data,
        kafka_bootstrap=f"127.0.0.1:{first}",
        kafka_controller_port=first + 1,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_username=USER,
        kafka_password_file=root / "kafka.pw",
        kafka_broker_ssl_cert_file=certs / "server.pem",
        kafka_broker_ssl_key_file=certs / "server.key",
        kafka_ssl_ca_file=certs / "ca.pem",
        redis_url=f"rediss://{USER}@127.0.0.1:{first + 2}/0",
        redis_password_file=root / "redis.pw",
        redis_server_ssl_cert_file=certs / "server.pem",
        redis_server_ssl_key_file=certs / "server.key",
        redis_ssl_ca_file=certs / "ca.pem",
        topic_prefix="secure.",
    )
    try:
        started = socialrec_infra("up", settings)
        assert started.returncode == 0, started.stdout + started.stderr
        yield settings
    finally:
        stopped = socialrec_infra("down", settings)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def _event(n: str, kind: str, user: str, item: str, ts: float) -> dict[str, Any]:
    return {"event_id": n, "type": kind, "user_id": user, "item_id": item, "ts": ts}


async def _consumed_at_least(worker: WorkerProcess, count: int) -> bool:
    return await worker.metric("socialrec_events_consumed_total") >= count


async def test_worker_and_learner_serve_lists_over_sasl_ssl_and_rediss_only(
    secured: Settings,
) -> None:
    assert (await apply_topics(secured)).checked  # the admin client logs in over TLS
    # Neighbour lists read afresh, so dan's list sees what the learner learnt just before.
    env = {**security_env(secured), "SOCIALREC_NEIGHBOURS_TTL_S": "0"}
    worker = WorkerProcess(secured, extra_env=env)  # every source, the learner as its child
    producer = AIOKafkaProducer(**kafka_client_kwargs(secured), linger_ms=2)
    async with running(worker):  # ready: its consumers joined over TLS, Redis answered
        await producer.start()
        try:
            now = time.time()
            bought = [
                _event(f"{item}-{n}", "purchase", user, item, now)
                for n, user in enumerate(["ann", "bob", "cat"])
                for item in ("phone", "case")
            ]
            await produce_json(producer, secured, bought)
            await wait_for(
                lambda: _consumed_at_least(worker, len(bought)), what="the purchases consumed"
            )
            # The learner child learns from `events` over TLS, commits as the project's user.
            await wait_for(worker.learner_caught_up, what="the learner to learn the purchases")
            await produce_json(producer, secured, [_event("d1", "view", "dan", "phone", now + 1)])
        finally:
            await producer.stop()
        records = await consume_until(
            secured, "recommendations", lambda rs: any(r.key == b"dan" for r in rs)
        )
        redis_users = await _redis_client_users(secured)
    assert {r.key for r in records} == {b"ann", b"bob", b"cat", b"dan"}  # a list per user
    dan = orjson.loads(next(r.value for r in records if r.key == b"dan"))
    assert dan["trigger"]["event_id"] == "d1"
    top = dan["items"][0]
    assert (top["item_id"], top["source"]) == ("case", "item_cf")  # learnt by the learner
    # Every connection the worker and its learner held was the ACL user's, on the TLS port.
    assert redis_users
    assert set(redis_users) == {USER}
    assert_no_password_in_logs(secured, worker.log_path)


async def _redis_client_users(settings: Settings) -> list[str]:
    """The user of every other client connected to Redis now."""
    client = redis_client_for(settings)
    try:
        me = await client.client_id()
        return [c["user"] for c in await client.client_list() if int(c["id"]) != me]
    finally:
        await client.aclose()


async def test_no_plaintext_port_is_open_and_plaintext_clients_are_refused(
    secured: Settings,
) -> None:
    # What each server listens on, asked of the server itself.
    redis_client = redis_client_for(secured)
    try:
        ports = await redis_client.config_get("port")
        tls_ports = await redis_client.config_get("tls-port")
    finally:
        await redis_client.aclose()
    assert ports == {"port": "0"}  # no plaintext port at all
    assert tls_ports == {"tls-port": str(secured.redis_port)}
    listeners = (await _broker_config(secured))["listeners"]
    # The controller's own listener stays on the loopback, unencrypted by design (the broker
    # logs in to it with PLAIN; README, Security): no client is served there (below).
    controller = f"CONTROLLER://127.0.0.1:{secured.kafka_controller_port}"
    assert set(listeners.split(",")) == {f"SASL_SSL://{secured.kafka_bootstrap}", controller}
    # With the right passwords but without TLS: refused by both servers, on every port.
    plain = _without_tls(secured, kafka_security_protocol="SASL_PLAINTEXT")
    anonymous = _without_tls(
        secured, kafka_security_protocol="PLAINTEXT", kafka_username="", redis_password_file=None
    )
    for client in (plain, anonymous):
        for port in (secured.kafka_port, secured.kafka_controller_port):
            at_port = client.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}"})
            producer = AIOKafkaProducer(**kafka_client_kwargs(at_port), request_timeout_ms=5000)
            with pytest.raises(KafkaConnectionError):
                await producer.start()
            await producer.stop()
    for client in (plain, anonymous):
        stranger = redis_client_for(client)
        try:
            with pytest.raises(redis.exceptions.ConnectionError):  # hung up on, unanswered
                await stranger.ping()
        finally:
            await stranger.aclose()
    # A worker configured for plaintext does not start (its checks say why) rather than
    # serving on some other transport.
    kafka_problem, redis_problem = await preflight(plain)
    assert "Kafka" in kafka_problem
    assert "cannot use Redis" in redis_problem


def _without_tls(settings: Settings, **changes: object) -> Settings:
    """The same servers and logins as a client without TLS (validated: no CA file left that
    only a TLS client may name), with ``changes``."""
    plain = {
        "redis_url": settings.redis_url.replace("rediss://", "redis://"),
        "kafka_ssl_ca_file": None,
        "redis_ssl_ca_file": None,
        "kafka_broker_ssl_cert_file": None,
        "kafka_broker_ssl_key_file": None,
        "redis_server_ssl_cert_file": None,
        "redis_server_ssl_key_file": None,
    }
    fields = {**settings.model_dump(exclude_unset=True), **plain, **changes}
    if changes.get("kafka_username") == "":
        fields["kafka_password_file"] = None
    return Settings(**fields)


async def _broker_config(settings: Settings) -> dict[str, str]:
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        async with asyncio.timeout(30):
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.BROKER, "1")]
            )
    finally:
        await admin.close()
    [(_, _, _, _, entries)] = response.resources
    return {entry[0]: entry[1] for entry in entries}


def test_infra_down_stops_exactly_what_up_started(secured: Settings) -> None:
    """Last in the module (the fixture's own `infra down` then finds nothing running)."""
    before = {s.name: s.pid for s in infra.status(secured)}
    assert all(before.values()), before
    stopped = socialrec_infra("down", secured)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert all(not pid_alive(pid) for pid in before.values() if pid is not None)
    assert [s.state for s in infra.status(secured)] == ["stopped", "stopped"]
    ports = (secured.kafka_port, secured.kafka_controller_port, secured.redis_port)
    assert not any(is_port_open("127.0.0.1", port) for port in ports)
