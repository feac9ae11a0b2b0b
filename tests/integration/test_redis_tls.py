"""``rediss://`` with a CA file, against a real redis-server on a TLS-only port of its own.

``socialrec infra`` runs Redis without TLS, so this test starts one itself (a throwaway CA and
server certificate, a password from a file) and stops it at the end.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streams.config import Settings
from streams.processes import free_port
from streams.security import redis_client_for, redis_sync_client
from tests.tls_certs import make_certs

READY_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a TLS-only redis-server that wants a password, started for this module."""
    tmp_path = tmp_path_factory.mktemp("tls-redis")
    certs = make_certs(tmp_path / "certs")
    password = tmp_path / "redis.pw"
    password.write_text("tls-test-password\n")
    port = free_port()
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (make setup installs it)"
    cmd = [
        binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(certs / "server.pem"), "--tls-key-file", str(certs / "server.key"),
        "--tls-ca-cert-file", str(certs / "ca.pem"), "--tls-auth-clients", "no",
        "--requirepass", "tls-test-password", "--save", "", "--appendonly", "no",
        "--dir", str(tmp_path),
    ]  # fmt: skip
    log = (tmp_path / "redis.log").open("wb")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    settings = Settings(
        redis_url=f"rediss://127.0.0.1:{port}/0",
        redis_password_file=password,
        redis_ssl_ca_file=certs / "ca.pem",
    )
    try:
        _wait_until_it_answers(settings, server, tmp_path / "redis.log")
        yield settings
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _wait_until_it_answers(settings: Settings, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"redis-server exited: {log.read_text(errors='replace')}"
        client = redis_sync_client(settings, timeout_s=1.0)
        try:
            if client.ping():
                return
        except redis.ConnectionError:
            time.sleep(0.1)
        finally:
            client.close()
    raise AssertionError(f"redis-server with TLS did not answer in {READY_TIMEOUT_S:.0f} s")


async def test_rediss_with_the_ca_file_and_password_file(tls_redis: Settings) -> None:
    client = redis_client_for(tls_redis)
    try:
        await client.set("tls-check", "ok")
        assert await client.get("tls-check") == b"ok"
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"redis_ssl_ca_file": None}, "CERTIFICATE_VERIFY_FAILED"),  # the system's CAs only
        ({"redis_password_file": None}, "NOAUTH|Authentication required|HELLO"),
    ],
)
async def test_rediss_refuses_an_unknown_ca_or_a_missing_password(
    tls_redis: Settings, change: dict[str, object], refusal: str
) -> None:
    client = redis_client_for(tls_redis.model_copy(update=change))
    try:
        with pytest.raises(redis.exceptions.RedisError, match=refusal):
            await client.ping()
    finally:
        await client.aclose()
