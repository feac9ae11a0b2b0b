"""``socialrec infra up`` with a ``rediss://`` URL and a password: Redis on a TLS-only port, its
certificate made by a local CA (or the operator's), clients with the CA file and the password
served, everyone else refused, and ``infra down`` stopping it.

The module starts its own Redis (two: one per kind of certificate) on its own data dirs and on
free ports below Linux's ephemeral range (tests/ports.py); it needs none of the shared servers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis

from streams.config import Settings
from streams.ops import infra
from streams.ops.infra.pids import is_port_open
from streams.ops.infra_redis_tls import CERT_FILE, KEY_FILE
from streams.ops.infra_tls import TLS_DIR, local_ca_file
from streams.security import redis_client_for
from tests.conftest import require_tools
from tests.ports import free_run
from tests.tls_certs import make_certs

#: Away from the shared servers' defaults (16379) and the cluster test's ports (21000 up).
PORTS_FROM = 22379
USER = "socialrec"


@pytest.fixture(autouse=True)
def _servers_for_integration_tests() -> None:
    """Replaces the shared check (tests/conftest.py): this module brings its own Redis."""


@pytest.fixture(scope="module", params=["made", "operator"])
def tls_redis(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """Settings of a Redis started by ``infra.up`` with TLS and an ACL user: with the
    certificate it made (``made``) or one the operator gave (``operator``). They trust its CA,
    as ``infra up`` tells clients to; the Redis is stopped after the module."""
    require_tools("redis-server", "keytool", "openssl")
    root = tmp_path_factory.mktemp(f"tls-redis-{request.param}")
    (root / "redis.pw").write_text("tls-test-password\n")
    settings = Settings(
        data_dir=root / "data",
        redis_url=f"rediss://{USER}@127.0.0.1:{free_run(PORTS_FROM, 1)}/0",
        redis_password_file=root / "redis.pw",
    )
    if request.param == "operator":
        certs = make_certs(root / "certs")
        settings = settings.model_copy(
            update={
                "redis_server_ssl_cert_file": certs / "server.pem",
                "redis_server_ssl_key_file": certs / "server.key",
                "redis_ssl_ca_file": certs / "ca.pem",
            }
        )
    try:
        infra.up(settings, "redis")
        if request.param == "made":
            ca = local_ca_file(settings.data_dir / "redis")
            settings = settings.model_copy(update={"redis_ssl_ca_file": ca})
        yield settings
    finally:
        infra.down(settings, "redis")


async def test_a_client_with_the_ca_file_and_the_password_is_served(tls_redis: Settings) -> None:
    client = redis_client_for(tls_redis)
    try:
        assert await client.ping()
        await client.set("tls-check", "ok")
        assert await client.get("tls-check") == b"ok"
    finally:
        await client.aclose()
    [status] = infra.status(tls_redis, "redis")
    assert status.running
    assert status.address.endswith(f":{tls_redis.redis_port}")


@pytest.mark.parametrize(
    ("client", "refusal"),
    [
        ("trusting the system's CAs only", "CERTIFICATE_VERIFY_FAILED"),
        ("without the password", "invalid username-password pair|NOAUTH"),
        ("over plain TCP", "Connection reset|Connection closed"),
    ],
)
async def test_an_unknown_ca_a_missing_password_or_plain_tcp_is_refused(
    tls_redis: Settings, client: str, refusal: str
) -> None:
    changes: dict[str, dict[str, object]] = {
        "trusting the system's CAs only": {"redis_ssl_ca_file": None},
        "without the password": {"redis_password_file": None},
        "over plain TCP": {
            "redis_url": tls_redis.redis_url.replace("rediss://", "redis://"),
            "redis_ssl_ca_file": None,
        },
    }
    stranger = redis_client_for(tls_redis.model_copy(update=changes[client]))
    try:
        with pytest.raises(redis.exceptions.RedisError) as refused:
            await stranger.ping()
    finally:
        await stranger.aclose()
    said = f"{refused.value} {refused.value.__context__!r}"  # a TLS error is the context
    assert re.search(refusal, said), said


def test_the_made_private_key_is_its_owners_only(tls_redis: Settings) -> None:
    folder = tls_redis.data_dir / "redis" / TLS_DIR
    assert (folder.parent / "users.acl").stat().st_mode & 0o777 == 0o600
    if tls_redis.redis_server_ssl_cert_file is not None:
        assert not folder.exists()  # the operator's files are read where they are, no CA made
        return
    assert (folder / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in folder.iterdir()) == sorted(["ca.pem", CERT_FILE, KEY_FILE])


def test_infra_down_stops_it(tls_redis: Settings) -> None:
    infra.down(tls_redis, "redis")
    [status] = infra.status(tls_redis, "redis")
    assert status.state == "stopped"
    assert not is_port_open("127.0.0.1", tls_redis.redis_port)
