"""A worker against a SASL/SCRAM broker and an ACL-protected Redis, both started by the
project's own ``socialrec infra`` on their own ports and data dir (the suite's servers stay
as they are); and what wrong or missing credentials get.

The servers start once for the module (a broker formats and starts in 10-25 s here).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis.exceptions
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from streams.config import Settings
from streams.ops import infra
from streams.ops.topics import apply_topics
from streams.runtime.launch import preflight
from streams.security import kafka_client_kwargs, redis_client_for
from streams.tools.processes import free_port
from tests.e2e.conftest import (
    WorkerProcess,
    assert_no_password_in_logs,
    consume_until,
    own_servers_dir,
    produce_json,
    running,
    security_env,
    triggers,
)

USER = "socialrec"


@pytest.fixture(scope="module")
def secured(infra_ready: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a SASL_PLAINTEXT broker and a Redis with an ACL user, both just started
    by ``infra.up`` (passwords in files, as mounted secrets) and stopped after the module."""
    root = tmp_path_factory.mktemp("secured")
    data = own_servers_dir(infra_ready, root, "kafka.pw", "redis.pw")
    settings = Settings(
        data_dir=data,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_username=USER,
        kafka_password_file=root / "kafka.pw",
        redis_url=f"redis://{USER}@127.0.0.1:{free_port()}/0",
        redis_password_file=root / "redis.pw",
        topic_prefix="sec.",
    )
    try:
        infra.up(settings)
        yield settings
    finally:
        infra.down(settings)


async def test_worker_round_trip_through_sasl_kafka_and_acl_redis(secured: Settings) -> None:
    await apply_topics(secured)  # the admin client logs in too
    worker = WorkerProcess(secured, extra_env={**security_env(secured), "SOCIALREC_SOURCES": ""})
    producer = AIOKafkaProducer(**kafka_client_kwargs(secured), linger_ms=2)
    await producer.start()
    try:
        # Ready means it pinged Redis and its events consumer owns partitions.
        async with running(worker):
            now = time.time()
            events = [
                {"event_id": f"e{n}", "type": "view", "user_id": "ann", "item_id": item, "ts": now}
                for n, item in enumerate(["phone", "case"])
            ]
            await produce_json(producer, secured, events)
            # One list per user and batch, made after the user's last event of the batch.
            lists = await consume_until(secured, "recommendations", lambda rs: "e1" in triggers(rs))
            assert "e1" in triggers(lists)
            assert {r.key for r in lists} == {b"ann"}
            # The erasure agent and its receipt run on the Faust app's own consumer and
            # producer, which log in with broker_credentials.
            request = {"request_id": "req-1", "type": "erase", "user_id": "ann"}
            await producer.send_and_wait(
                secured.topic("privacy.requests"), orjson.dumps(request), key=b"ann"
            )
            receipts = await consume_until(secured, "privacy.receipts", lambda rs: len(rs) >= 1)
            assert orjson.loads(receipts[0].value)["status"] == "erased"
    finally:
        await producer.stop()
    client = redis_client_for(secured)
    try:
        assert await client.acl_whoami() == USER
    finally:
        await client.aclose()
    assert_no_password_in_logs(secured, worker.log_path)


def without_logins(settings: Settings) -> Settings:
    """The same servers, as a client with no Kafka or Redis login."""
    return settings.model_copy(
        update={
            "kafka_security_protocol": "PLAINTEXT",
            "kafka_username": "",
            "kafka_password_file": None,
            "redis_url": f"redis://127.0.0.1:{settings.redis_port}/0",
            "redis_password_file": None,
        }
    )


async def test_wrong_or_missing_credentials_are_refused_with_what_to_fix(
    secured: Settings, tmp_path: Path
) -> None:
    wrong_password = tmp_path / "wrong.pw"
    wrong_password.write_text("not-the-password\n")
    wrong = secured.model_copy(
        update={"kafka_password_file": wrong_password, "redis_password_file": wrong_password}
    )
    assert await preflight(wrong) == [
        f"Kafka refused the SCRAM-SHA-512 login of user '{USER}': check SOCIALREC_KAFKA_USERNAME "
        "and SOCIALREC_KAFKA_PASSWORD (or _PASSWORD_FILE)",
        "cannot use Redis (AuthenticationError): Redis refused the login: check the user and "
        "password in SOCIALREC_REDIS_URL (or SOCIALREC_REDIS_PASSWORD_FILE)",
    ]
    anonymous = without_logins(secured)
    kafka_problem, redis_problem = await preflight(anonymous)
    assert "hung up on a plaintext request" in kafka_problem
    assert "Redis refused the login" in redis_problem
    # The clients themselves refuse to start, and Redis answers WRONGPASS / NOAUTH.
    for settings in (wrong, anonymous):
        producer = AIOKafkaProducer(**kafka_client_kwargs(settings), request_timeout_ms=5000)
        with pytest.raises(KafkaConnectionError):
            await producer.start()
        await producer.stop()
        client = redis_client_for(settings)
        with pytest.raises(redis.exceptions.AuthenticationError):
            await client.ping()
        await client.aclose()


def test_infra_up_fails_fast_on_servers_formatted_or_started_with_other_logins(
    secured: Settings, tmp_path: Path
) -> None:
    other = tmp_path / "other.pw"
    other.write_text("another-password\n")
    started = time.monotonic()
    with pytest.raises(infra.InfraError, match=f"formatted with another password for '{USER}'"):
        infra.up(secured.model_copy(update={"kafka_password_file": other}), "kafka")
    assert time.monotonic() - started < 60  # not the two-minute readiness wait
    # Settings without the logins meet the running servers: refused too, not waited for.
    plain = without_logins(secured)
    for service, reason in [("kafka", "started with other settings"), ("redis", "login")]:
        with pytest.raises(infra.InfraError, match=f"{service}: the running server .* {reason}"):
            infra.up(plain, service)
    assert all(state.running for state in infra.status(secured))
    secret_files = [
        secured.data_dir / "kafka" / "server.properties",  # the broker's own login
        secured.data_dir / "kafka" / "scram-user",
        secured.data_dir / "redis" / "users.acl",
    ]
    for path in secret_files:
        assert path.stat().st_mode & 0o777 == 0o600, path
