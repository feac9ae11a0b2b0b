"""The local broker's TLS, authorizer and frontend user, as configured (no server here; the
broker itself runs in tests/e2e/test_kafka_tls.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from streams.config import ConfigError, Settings, load_settings
from streams.ops import infra
from streams.ops.infra.base import service_of
from streams.ops.infra.cluster_kafka import broker_services
from streams.ops.infra.services import _fatal_error, exit_report
from streams.ops.infra_auth import AuthSetupError
from streams.ops.infra_tls import (
    CA_FILE,
    KEYSTORE_PASSWORD,
    PEM_KEYSTORE,
    TLS_DIR,
    client_settings,
    ensure_broker_tls,
)
from streams.ops.kafka_acl import SCRAM_ITERATIONS, AlterUserScramCredentials, _AlterScramStruct

#: Whatever SOCIALREC_* variables the caller's shell has are ignored (tests/unit/conftest.py).
pytestmark = pytest.mark.usefixtures("clean_environment")


def tls(tmp_path: Path, protocol: str = "SASL_SSL", **more: object) -> Settings:
    """The local broker with ``protocol``; SCRAM as ``rec`` / ``pw-1`` when it is SASL_SSL."""
    base: dict[str, object] = {"data_dir": tmp_path, "kafka_security_protocol": protocol}
    if protocol == "SASL_SSL":
        base.update(kafka_username="rec", kafka_password="pw-1")
    return Settings(**{**base, **more})  # type: ignore[arg-type]


def made_keystore(tmp_path: Path) -> Path:
    """What `infra up` leaves after making its CA (without running keytool here)."""
    folder = tmp_path / "kafka" / TLS_DIR
    folder.mkdir(parents=True)
    (folder / CA_FILE).write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (folder / KEYSTORE_PASSWORD).write_text("store-pw\n")
    return folder


def properties(settings: Settings) -> set[str]:
    return set(infra.kafka_server_properties(settings).splitlines())


def test_sasl_ssl_listener_with_the_made_keystore_and_the_authorizer(tmp_path: Path) -> None:
    folder = made_keystore(tmp_path)
    lines = properties(tls(tmp_path))
    assert "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT" in lines
    assert "inter.broker.listener.name=SASL_SSL" in lines
    assert {
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.location={folder / 'broker.p12'}",
        "ssl.keystore.password=store-pw",
        f"ssl.truststore.location={folder / CA_FILE}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:rec",
        "sasl.mechanism.controller.protocol=PLAIN",
    } <= lines
    plain = next(line for line in lines if line.startswith("listener.name.controller.plain."))
    assert 'username="rec" password="pw-1" user_rec="pw-1";' in plain


def test_ssl_alone_has_no_logins_and_no_authorizer(tmp_path: Path) -> None:
    made_keystore(tmp_path)
    lines = properties(tls(tmp_path, "SSL"))
    assert "listener.security.protocol.map=SSL:SSL,CONTROLLER:PLAINTEXT" in lines
    assert not any(line.startswith(("sasl.", "authorizer.", "super.")) for line in lines)


def test_the_operators_certificate_becomes_a_private_pem_keystore(
    tmp_path: Path, certs: Path
) -> None:
    settings = tls(
        tmp_path,
        kafka_broker_ssl_cert_file=certs / "server.pem",
        kafka_broker_ssl_key_file=certs / "server.key",
        kafka_ssl_ca_file=certs / "ca.pem",
    )
    kdir = tmp_path / "kafka"  # not made yet: the first `infra up` on a fresh data dir
    ensure_broker_tls(settings, kdir)
    keystore = kdir / PEM_KEYSTORE
    assert keystore.stat().st_mode & 0o777 == 0o600
    text = keystore.read_text()
    assert text.index("BEGIN PRIVATE KEY") < text.index("BEGIN CERTIFICATE")
    lines = properties(settings)
    assert {"ssl.keystore.type=PEM", f"ssl.keystore.location={keystore}"} <= lines
    assert f"ssl.truststore.location={certs / 'ca.pem'}" in lines
    assert client_settings(settings, kdir) is settings  # the clients' CA file, as configured


def test_a_key_kafka_cannot_read_is_refused_with_how_to_convert_it(
    tmp_path: Path, certs: Path
) -> None:
    pkcs1 = tmp_path / "rsa.key"
    pkcs1.write_text("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n")
    settings = tls(
        tmp_path, kafka_broker_ssl_cert_file=certs / "server.pem", kafka_broker_ssl_key_file=pkcs1
    )
    with pytest.raises(AuthSetupError, match="openssl pkcs8 -topk8 -nocrypt"):
        ensure_broker_tls(settings, tmp_path)


def test_clients_must_trust_the_made_ca(tmp_path: Path, certs: Path) -> None:
    folder = made_keystore(tmp_path)
    kdir = folder.parent
    unset = tls(tmp_path)
    assert client_settings(unset, kdir).kafka_ssl_ca_file == folder / CA_FILE  # infra's probe
    ensure_broker_tls(tls(tmp_path, kafka_ssl_ca_file=folder / CA_FILE), kdir)  # no keytool run
    with pytest.raises(AuthSetupError, match=f"set it to {folder / CA_FILE}"):
        ensure_broker_tls(tls(tmp_path, kafka_ssl_ca_file=certs / "ca.pem"), kdir)


@pytest.mark.parametrize(
    ("env", "hint"),
    [
        ({"KAFKA_FRONTEND_USERNAME": "shop"}, "needs a SASL protocol"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_USERNAME": "rec",
             "KAFKA_PASSWORD": "pw", "KAFKA_FRONTEND_USERNAME": "shop"},
            "needs SOCIALREC_KAFKA_FRONTEND_PASSWORD",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_USERNAME": "rec",
             "KAFKA_PASSWORD": "pw", "KAFKA_FRONTEND_USERNAME": "rec",
             "KAFKA_FRONTEND_PASSWORD": "pw2"},
            "must differ from SOCIALREC_KAFKA_USERNAME",
        ),
        ({"KAFKA_FRONTEND_PASSWORD": "pw2"}, "not SOCIALREC_KAFKA_FRONTEND_USERNAME"),
        ({"KAFKA_FRONTEND_PASSWORD_FILE": "{tmp}/nope"}, "_FRONTEND_PASSWORD_FILE: cannot read"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_BROKER_SSL_CERT_FILE": "{tmp}/cert.pem"},
            "needs both SOCIALREC_KAFKA_BROKER_SSL_CERT_FILE and _KEY_FILE",
        ),
        ({"KAFKA_BROKER_SSL_KEY_FILE": "{tmp}/cert.pem"}, "does not use TLS"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_BROKER_SSL_CERT_FILE": "{tmp}/no.pem",
             "KAFKA_BROKER_SSL_KEY_FILE": "{tmp}/cert.pem"},
            "SOCIALREC_KAFKA_BROKER_SSL_CERT_FILE: {tmp}/no.pem does not exist",
        ),
    ],
)  # fmt: skip
def test_misconfigured_frontend_user_or_broker_certificate_fails_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], hint: str
) -> None:
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    for name, value in env.items():
        monkeypatch.setenv(f"SOCIALREC_{name}", value.format(tmp=tmp_path))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert hint.format(tmp=tmp_path) in str(caught.value)
    assert "pw2" not in str(caught.value)


def test_the_scram_credential_sent_is_pbkdf2_of_the_password_never_the_password() -> None:
    request = AlterUserScramCredentials("SCRAM-SHA-512", "shop", "front-pw")
    struct = request.build(_AlterScramStruct)
    wire = struct.encode()
    assert b"front-pw" not in wire
    name, mechanism, iterations, salt, salted, _ = struct.upsertions[0]
    assert (name, mechanism, iterations, len(salt), len(salted)) == ("shop", 2, SCRAM_ITERATIONS,
                                                                      32, 64)  # fmt: skip
    assert salted == hashlib.pbkdf2_hmac("sha512", b"front-pw", salt, SCRAM_ITERATIONS)


def test_a_broker_that_exits_at_start_is_reported_with_its_fatal_error(tmp_path: Path) -> None:
    svc = service_of(Settings(data_dir=tmp_path), "kafka")
    svc.log_file.parent.mkdir(parents=True)
    cause = "org.apache.kafka.common.KafkaException: PKIX path validation failed"
    svc.log_file.write_text(
        "[t] INFO starting\n"
        "[t] ERROR Exiting Kafka due to fatal exception during startup. (kafka.Kafka$)\n"
        f"{cause}\n\tat org.apache.kafka.common.security.ssl.SslFactory.configure\n"
    )
    assert _fatal_error(svc) == f"\n    {cause}"
    svc.log_file.write_text("[t] INFO starting\n")
    assert _fatal_error(svc) == ""


def test_a_cluster_member_that_exits_at_start_is_reported_with_its_cause(tmp_path: Path) -> None:
    """A cluster's brokers are kafka-1..3: their report carries the cause and their output."""
    three = "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    settings = Settings(data_dir=tmp_path, cluster=True, kafka_bootstrap=three)
    svc = next(s for s in broker_services(settings) if s.name == "kafka-3")
    svc.log_file.parent.mkdir(parents=True)
    cause = "org.apache.kafka.common.KafkaException: Socket server failed to bind to 127.0.0.1:9094"
    svc.log_file.write_text(
        f"[t] ERROR Exiting Kafka due to fatal exception during startup. (kafka.Kafka$)\n{cause}\n"
    )
    (svc.data_dir / "logs" / "kafka.out").write_text("the JVM's own last words\n")
    report = exit_report(svc)
    assert cause in report
    assert "the JVM's own last words" in report
