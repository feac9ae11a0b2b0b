"""The local broker with TLS and the authorizer, started by ``socialrec infra`` itself: SCRAM
over TLS for every client, a client that does not trust the CA refused, and the frontends'
user allowed to produce to ``events`` and nothing else.

The broker starts once for the module (keytool makes its CA, then it formats and starts: 15-30
s here), on the suite's own ports plus 100, in a data dir of its own; the worker uses the
suite's Redis (the flushed test database).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from streams.config import Settings, redis_url_with_db
from streams.ops import infra
from streams.ops.infra_tls import local_ca_file
from streams.ops.kafka_acl import frontend_settings
from streams.ops.topics import apply_topics
from streams.security import kafka_client_kwargs, kafka_login_problem
from tests.conftest import TEST_REDIS_DB
from tests.e2e import conftest as e2e
from tests.tls_certs import make_certs

PROJECT, FRONTEND = "socialrec", "shop-frontend"
#: Next to the suite's own ports, so two suites on different ports never share this broker. The
#: default ones (19192, 19193) lie below Linux's ephemeral range, where no client connection can
#: take them between the check for a free port and the broker's bind.
PORT_OFFSET = 100
#: Long enough for a refusal to arrive, short enough that a hang fails the test promptly.
REFUSAL_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def tls_broker(
    infra_ready: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """Settings of a SASL_SSL broker with the authorizer and a frontends' user, started by
    ``infra.up`` with a CA it made, and stopped after the module. They trust that CA, as
    ``infra up`` tells clients to."""
    root = tmp_path_factory.mktemp("tls")
    data = e2e.own_servers_dir(infra_ready, root, "kafka.pw", "frontend.pw")
    settings = Settings(
        data_dir=data,
        kafka_bootstrap=f"127.0.0.1:{infra_ready.kafka_port + PORT_OFFSET}",
        kafka_controller_port=infra_ready.kafka_controller_port + PORT_OFFSET,
        kafka_security_protocol="SASL_SSL",
        kafka_username=PROJECT,
        kafka_password_file=root / "kafka.pw",
        kafka_frontend_username=FRONTEND,
        kafka_frontend_password_file=root / "frontend.pw",
        redis_url=redis_url_with_db(infra_ready.redis_url, TEST_REDIS_DB),
        topic_prefix="tls.",
    )
    try:
        infra.up(settings, "kafka")
        ca = local_ca_file(data / "kafka")
        yield settings.model_copy(update={"kafka_ssl_ca_file": ca})
    finally:
        infra.down(settings, "kafka")


async def test_a_worker_serves_the_frontend_user_over_scram_and_tls(
    tls_broker: Settings, redis_client: aioredis.Redis
) -> None:
    assert (await apply_topics(tls_broker)).checked  # the project's admin client over TLS
    env = {**e2e.security_env(tls_broker), "SOCIALREC_SOURCES": ""}
    worker = e2e.WorkerProcess(tls_broker, extra_env=env)
    frontend = AIOKafkaProducer(**kafka_client_kwargs(frontend_settings(tls_broker)), linger_ms=2)
    async with e2e.running(worker):  # ready: its consumers joined over TLS, Redis answered
        await frontend.start()
        try:
            now = time.time()
            events = [
                {"event_id": f"e{n}", "type": "view", "user_id": "ann", "item_id": item, "ts": now}
                for n, item in enumerate(["phone", "case"])
            ]
            await e2e.produce_json(frontend, tls_broker, events)
        finally:
            await frontend.stop()
        # The worker's publisher (the project's user) wrote them; the project's user reads.
        lists = await e2e.consume_until(
            tls_broker, "recommendations", lambda rs: "e1" in e2e.triggers(rs)
        )
    assert {r.key for r in lists} == {b"ann"}


async def test_the_frontend_user_may_produce_to_events_and_nothing_else(
    tls_broker: Settings,
) -> None:
    await apply_topics(tls_broker)
    frontend = frontend_settings(tls_broker)
    producer = AIOKafkaProducer(**kafka_client_kwargs(frontend), enable_idempotence=True)
    await producer.start()
    try:
        sent = await producer.send_and_wait(tls_broker.topic("events"), b"{}", key=b"bob")
        with pytest.raises(TopicAuthorizationFailedError):
            async with asyncio.timeout(REFUSAL_TIMEOUT_S):
                await producer.send_and_wait(tls_broker.topic("recommendations"), b"{}", key=b"b")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        tls_broker.topic("recommendations"),
        **kafka_client_kwargs(frontend),
        group_id="frontend-peeking",
        auto_offset_reset="earliest",
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(_first_record(consumer), REFUSAL_TIMEOUT_S)
    finally:
        await consumer.stop()
    # The project's user reads what the frontend wrote.
    records = await e2e.consume_until(
        tls_broker, "events", lambda rs: any(r.key == b"bob" for r in rs)
    )
    assert any(r.offset == sent.offset and r.key == b"bob" for r in records)


async def _first_record(consumer: AIOKafkaConsumer) -> object:
    await consumer.start()
    return await consumer.getone()


async def test_a_client_that_does_not_trust_the_ca_is_refused_with_what_to_fix(
    tls_broker: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    another_ca = make_certs(tmp_path_factory.mktemp("another-ca")) / "ca.pem"
    for ca in (None, another_ca):  # the system's CAs; a CA that did not sign the broker's
        untrusting = tls_broker.model_copy(update={"kafka_ssl_ca_file": ca})
        problem = await kafka_login_problem(untrusting)
        assert problem is not None
        assert "certificate at" in problem
        assert "set SOCIALREC_KAFKA_SSL_CA_FILE" in problem
        producer = AIOKafkaProducer(**kafka_client_kwargs(untrusting), request_timeout_ms=5000)
        with pytest.raises(KafkaConnectionError):
            await producer.start()
        await producer.stop()


def test_keys_are_owner_only_and_no_secret_reaches_a_log(tls_broker: Settings) -> None:
    kafka = tls_broker.data_dir / "kafka"
    private = ["server.properties", "scram-user", "tls/broker.p12", "tls/keystore.pw"]
    for path in (kafka / name for name in private):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (kafka / "tls").stat().st_mode & 0o777 == 0o700
    files = (tls_broker.kafka_password_file, tls_broker.kafka_frontend_password_file)
    secrets_ = [p.read_text().strip() for p in files if p is not None]
    secrets_.append((kafka / "tls" / "keystore.pw").read_text().strip())
    for log in (kafka / "logs").glob("*"):
        text = log.read_text(errors="replace")
        assert not any(secret in text for secret in secrets_), f"a secret is in {log}"


async def _frontend_acls(settings: Settings, user: str) -> set[int]:
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.ops.kafka_acl import _granted

    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        return await _granted(admin, settings.topic("events"), f"User:{user}")
    finally:
        await admin.close()


async def _until_refused(settings: Settings) -> str:
    """The login problem of ``settings``, once the broker has applied a deletion."""
    deadline = time.monotonic() + REFUSAL_TIMEOUT_S
    while (problem := await kafka_login_problem(settings)) is None:
        assert time.monotonic() < deadline, "the former user can still log in"
        await asyncio.sleep(0.1)
    return problem


async def test_a_renamed_frontend_user_takes_the_former_ones_access_away(
    tls_broker: Settings,
) -> None:
    """`infra up` with another frontends' user name deletes the former user's credentials
    and ACLs: renaming the login is how its access is withdrawn. Last in the module: it
    puts the original user back, but later tests would see its ACLs granted again."""
    await apply_topics(tls_broker)
    assert await _frontend_acls(tls_broker, FRONTEND)  # granted by `topics apply`
    renamed = tls_broker.model_copy(update={"kafka_frontend_username": f"{FRONTEND}-2"})
    try:
        infra.up(renamed, "kafka")
        assert await kafka_login_problem(frontend_settings(renamed)) is None
        problem = await _until_refused(frontend_settings(tls_broker))
        assert f"refused the SCRAM-SHA-512 login of user '{FRONTEND}'" in problem
        assert await _frontend_acls(tls_broker, FRONTEND) == set()
    finally:
        infra.up(tls_broker, "kafka")  # the original user back (and the renamed one revoked)
        await apply_topics(tls_broker)
    assert await kafka_login_problem(frontend_settings(renamed)) is not None
    assert await kafka_login_problem(frontend_settings(tls_broker)) is None
