"""The local Redis's TLS arguments and certificate checks, as configured (no server here; Redis
itself runs in tests/integration/test_redis_tls.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.config import Settings
from streams.ops.infra.base import service_of
from streams.ops.infra.redis_server import LISTENER_FILE, redis_server_args
from streams.ops.infra.services import started_otherwise
from streams.ops.infra_auth import AuthSetupError
from streams.ops.infra_redis_tls import (
    CERT_FILE,
    KEY_FILE,
    redis_client_settings,
    redis_tls_args,
)
from streams.ops.infra_tls import CA_FILE, TLS_DIR

pytestmark = pytest.mark.usefixtures("clean_environment")

URL = "rediss://rec@127.0.0.1:6390/0"


def made_certificate(redis_dir: Path) -> Path:
    """What `infra up` leaves after making its CA (without running keytool here)."""
    folder = redis_dir / TLS_DIR
    folder.mkdir(parents=True)
    (folder / CA_FILE).write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (folder / CERT_FILE).write_text("-----BEGIN CERTIFICATE-----\n")
    (folder / KEY_FILE).write_text("-----BEGIN PRIVATE KEY-----\n")
    return folder


def test_tls_only_on_the_urls_port_with_the_made_certificate(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=URL)
    svc = service_of(settings, "redis")
    args = redis_server_args(svc, tls=True)
    assert args[:4] == ["--port", "0", "--tls-port", "6390"]
    folder = made_certificate(svc.data_dir)
    tls = redis_tls_args(settings, svc.data_dir)
    pairs = dict(zip(tls[::2], tls[1::2], strict=True))
    assert pairs == {
        "--tls-cert-file": str(folder / CERT_FILE),
        "--tls-key-file": str(folder / KEY_FILE),
        "--tls-ca-cert-file": str(folder / CA_FILE),
        "--tls-auth-clients": "no",
        "--tls-protocols": "TLSv1.2 TLSv1.3",
    }
    # infra's own probe trusts the made CA until the clients' settings name one
    assert redis_client_settings(settings, svc.data_dir).redis_ssl_ca_file == folder / CA_FILE
    assert redis_server_args(svc)[:2] == ["--port", "6390"]  # plain: one TCP port


def test_clients_must_trust_the_made_ca(tmp_path: Path, certs: Path) -> None:
    redis_dir = tmp_path / "redis"
    folder = made_certificate(redis_dir)
    trusting = Settings(data_dir=tmp_path, redis_url=URL, redis_ssl_ca_file=folder / CA_FILE)
    redis_tls_args(trusting, redis_dir)  # nothing made again, nothing refused
    assert redis_client_settings(trusting, redis_dir) is trusting
    other = Settings(data_dir=tmp_path, redis_url=URL, redis_ssl_ca_file=certs / "ca.pem")
    with pytest.raises(AuthSetupError, match=f"set it to {folder / CA_FILE}"):
        redis_tls_args(other, redis_dir)


def test_the_operators_certificate_is_read_where_it_is(tmp_path: Path, certs: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        redis_url=URL,
        redis_server_ssl_cert_file=certs / "server.pem",
        redis_server_ssl_key_file=certs / "server.key",
    )
    tls = redis_tls_args(settings, tmp_path / "redis")
    assert tls[:4] == ["--tls-cert-file", str(certs / "server.pem"),
                       "--tls-key-file", str(certs / "server.key")]  # fmt: skip
    assert "--tls-ca-cert-file" not in tls  # no CA file named: none to give
    assert not (tmp_path / "redis").exists()
    assert redis_client_settings(settings, tmp_path / "redis") is settings


@pytest.mark.parametrize(
    ("key", "cert", "hint"),
    [
        ("-----BEGIN RSA PRIVATE KEY-----\n", "server.pem", "openssl pkcs8 -topk8 -nocrypt"),
        ("-----BEGIN ENCRYPTED PRIVATE KEY-----\n", "server.pem", "unencrypted PKCS#8"),
        (None, "server.key", "holds no certificate"),
    ],
)
def test_a_certificate_or_key_redis_cannot_read_fails_before_it_starts(
    tmp_path: Path, certs: Path, key: str | None, cert: str, hint: str
) -> None:
    key_file = certs / "server.key"
    if key is not None:
        key_file = tmp_path / "bad.key"
        key_file.write_text(key)
    settings = Settings(
        data_dir=tmp_path,
        redis_url=URL,
        redis_server_ssl_cert_file=certs / cert,
        redis_server_ssl_key_file=key_file,
    )
    with pytest.raises(AuthSetupError, match=hint):
        redis_tls_args(settings, tmp_path / "redis")


def test_a_running_redis_started_with_the_other_listener_is_named_so(tmp_path: Path) -> None:
    """`up` then says to restart it, instead of waiting for an answer that never comes."""
    plain = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")
    svc = service_of(plain, "redis")
    svc.data_dir.mkdir()
    (svc.data_dir / LISTENER_FILE).write_text("tls\n")
    assert started_otherwise(plain, svc) == "listens with TLS (rediss://)"
    (svc.data_dir / LISTENER_FILE).write_text("plain\n")
    tls = plain.model_copy(update={"redis_url": "rediss://127.0.0.1:1/0"})
    assert started_otherwise(tls, svc) == "listens without TLS"
