"""TLS for the local broker ``socialrec infra up`` starts with ``SSL`` or ``SASL_SSL``, and the
local CA that signs the certificates of both local servers (Redis's:
streams/ops/infra_redis_tls.py).

The broker's certificate is the operator's (``SOCIALREC_KAFKA_BROKER_SSL_CERT_FILE`` and
``_KEY_FILE``, PEM) or, when none is configured, one that ``infra up`` makes once per data dir
with the JDK's keytool (the broker needs Java anyway, so there is nothing new to install): a
local CA signs a certificate for 127.0.0.1 and localhost. The CA's private key is deleted once
it has signed, so nothing else can ever be signed by it; a new certificate means a new CA
(remove ``kafka/tls`` in the data dir). Clients trust it with
``SOCIALREC_KAFKA_SSL_CA_FILE=<data dir>/kafka/tls/ca.pem``. Private keys and the keystore
password are readable by their owner only.

>>> check_pem_key("-----BEGIN RSA PRIVATE KEY-----", "key.pem")  # doctest: +ELLIPSIS
Traceback (most recent call last):
streams.ops.infra_auth.AuthSetupError: key.pem must be an unencrypted PKCS#8 key ... key.pkcs8.pem`
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from streams.config import Settings
from streams.ops.infra_auth import AuthSetupError, write_private
from streams.security import TLS_PROTOCOLS, read_secret_file

TLS_DIR = "tls"
CA_FILE = "ca.pem"
KEYSTORE = "broker.p12"
KEYSTORE_PASSWORD = "keystore.pw"  # noqa: S105 (the file's name)
#: The operator's key and certificate chain in one file, as Kafka's PEM keystore reads them.
PEM_KEYSTORE = "broker-keystore.pem"
CA_DAYS = 3650
CERT_DAYS = 825
#: keytool runs for a moment: a JVM without its optimising compiler starts twice as fast.
KEYTOOL_JVM = ("-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC")
#: keytool reads the keystore password from this variable, not from its (visible) arguments.
PASSWORD_VAR = "SOCIALREC_KEYSTORE_PASSWORD"  # noqa: S105


def kafka_tls(settings: Settings) -> bool:
    """Whether the local broker's client listener speaks TLS."""
    return settings.kafka_security_protocol in TLS_PROTOCOLS


def local_ca_file(server_dir: Path) -> Path:
    """The CA ``infra up`` made for a local server, the broker or Redis (when the operator gave
    no certificate)."""
    return server_dir / TLS_DIR / CA_FILE


def ensure_broker_tls(settings: Settings, kafka_dir: Path) -> None:
    """Make the broker's keystore ready before it starts (once, for a generated one)."""
    if settings.kafka_broker_ssl_cert_file is not None:
        kafka_dir.mkdir(parents=True, exist_ok=True)  # the first start makes it only after this
        write_private(kafka_dir / PEM_KEYSTORE, _operator_keystore(settings))
        return
    folder = kafka_dir / TLS_DIR
    if not (folder / KEYSTORE_PASSWORD).exists():  # written last: absent means incomplete
        shutil.rmtree(folder, ignore_errors=True)
        make_local_ca(folder, "kafka", "SOCIALREC_KAFKA_BROKER_SSL_CERT_FILE", _keep_password)
    ca_setting = settings.kafka_ssl_ca_file
    if ca_setting is not None and not holds_certificate(ca_setting, folder / CA_FILE):
        raise AuthSetupError(
            f"SOCIALREC_KAFKA_SSL_CA_FILE ({ca_setting}) does not hold the local CA that signed "
            f"the broker's certificate: set it to {folder / CA_FILE}, or give the broker your "
            "own (SOCIALREC_KAFKA_BROKER_SSL_CERT_FILE and _KEY_FILE)"
        )


def broker_tls_properties(settings: Settings, kafka_dir: Path) -> list[str]:
    """The broker's keystore, and the CA it checks its own certificate with (the inter-broker
    listener is the client listener, so the broker is its own TLS client)."""
    if settings.kafka_broker_ssl_cert_file is not None:
        lines = ["ssl.keystore.type=PEM", f"ssl.keystore.location={kafka_dir / PEM_KEYSTORE}"]
        trusted = settings.kafka_ssl_ca_file  # unset: the JDK's CAs, as for the clients
    else:
        folder = kafka_dir / TLS_DIR
        if not (folder / KEYSTORE_PASSWORD).exists():
            raise AuthSetupError(f"kafka: no keystore in {folder}: `socialrec infra up` makes it")
        lines = [
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={folder / KEYSTORE}",
            f"ssl.keystore.password={read_secret_file(folder / KEYSTORE_PASSWORD)}",
        ]
        trusted = folder / CA_FILE
    if trusted is not None:
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={trusted}"]
    return lines


def trusting_local_ca(
    settings: Settings,
    server_dir: Path,
    *,
    tls: bool,
    operator_cert: Path | None,
    ca_field: Literal["kafka_ssl_ca_file", "redis_ssl_ca_file"],
) -> Settings:
    """The settings ``infra`` itself connects to a local server with: trusting the CA it made
    when the server speaks TLS with the made certificate (no ``operator_cert``) and the clients'
    settings name no CA file yet (``infra up`` prints the variable that makes them trust it)."""
    generated = local_ca_file(server_dir)
    if tls and operator_cert is None and getattr(settings, ca_field) is None and generated.exists():
        return settings.model_copy(update={ca_field: generated})
    return settings


def client_settings(settings: Settings, kafka_dir: Path) -> Settings:
    """``trusting_local_ca`` for the broker."""
    return trusting_local_ca(
        settings,
        kafka_dir,
        tls=kafka_tls(settings),
        operator_cert=settings.kafka_broker_ssl_cert_file,
        ca_field="kafka_ssl_ca_file",
    )


def check_pem_key(text: str, name: str) -> None:
    """Kafka's PEM keystore reads unencrypted PKCS#8 keys only (and Redis, which could read
    more, is held to the same, so one key serves both); say how to convert others."""
    if "-----BEGIN PRIVATE KEY-----" not in text:
        raise AuthSetupError(
            f"{name} must be an unencrypted PKCS#8 key (BEGIN PRIVATE KEY): convert it with "
            f"`openssl pkcs8 -topk8 -nocrypt -in {name} -out {Path(name).stem}.pkcs8.pem`"
        )


def _operator_keystore(settings: Settings) -> str:
    cert, key = settings.kafka_broker_ssl_cert_file, settings.kafka_broker_ssl_key_file
    assert cert is not None  # transport_problems insists on both
    assert key is not None
    key_text, chain = key.read_text(), cert.read_text()
    check_pem_key(key_text, str(key))
    if "-----BEGIN CERTIFICATE-----" not in chain:
        raise AuthSetupError(f"SOCIALREC_KAFKA_BROKER_SSL_CERT_FILE: {cert} holds no certificate")
    return key_text.rstrip() + "\n" + chain.rstrip() + "\n"


def make_local_ca(
    folder: Path, service: str, own_cert_var: str, finish: Callable[[Path, str], None]
) -> None:
    """A CA, and a server key and certificate it signed for 127.0.0.1 and localhost (EC
    P-256), in ``folder``: ``ca.pem`` and the PKCS#12 keystore ``broker.p12`` holding the key
    and its chain, whose password ``finish(work folder, password)`` keeps or converts.

    Built in a private temporary folder renamed into place, so an interrupted run leaves
    nothing half made. ``service`` and ``own_cert_var`` (the setting of an operator's
    certificate instead) make the messages.
    """
    keytool = shutil.which("keytool")
    if keytool is None:
        raise AuthSetupError(
            f"{service}: `keytool` (the JDK's) not found on PATH: it makes the {service} "
            f"certificate; install a JDK or give your own ({own_cert_var} and _KEY_FILE)"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tls-", dir=folder.parent))  # mode 0700
    password = secrets.token_urlsafe(24)
    env = {**os.environ, PASSWORD_VAR: password}

    def run(*args: str) -> None:
        cmd = [keytool, *KEYTOOL_JVM, *args, "-storepass:env", PASSWORD_VAR]
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            raise AuthSetupError(f"{service}: keytool {args[0]} failed: {done.stdout}{done.stderr}")

    ca = ["-keystore", "ca.p12", "-storetype", "PKCS12", "-alias", "ca"]
    broker = ["-keystore", KEYSTORE, "-storetype", "PKCS12", "-alias", "broker"]
    ec = ["-keyalg", "EC", "-groupname", "secp256r1"]
    run("-genkeypair", *ca, *ec, "-dname", "CN=socialrec local CA", "-validity", str(CA_DAYS),
        "-ext", "bc:c=ca:true,pathlen:0", "-ext", "KeyUsage:c=keyCertSign,cRLSign")  # fmt: skip
    run("-exportcert", "-rfc", *ca, "-file", CA_FILE)
    run("-genkeypair", *broker, *ec, "-dname", "CN=127.0.0.1", "-validity", str(CERT_DAYS))
    run("-certreq", *broker, "-file", "broker.csr")
    run("-gencert", *ca, "-rfc", "-infile", "broker.csr", "-outfile", "broker.pem",
        "-validity", str(CERT_DAYS), "-ext", "SAN=IP:127.0.0.1,DNS:localhost",
        "-ext", "KeyUsage:c=digitalSignature", "-ext", "ExtendedKeyUsage=serverAuth")  # fmt: skip
    # The signed certificate and its CA replace the self-signed one in the keystore.
    chain = (work / "broker.pem").read_text() + (work / CA_FILE).read_text()
    (work / "chain.pem").write_text(chain)
    run("-importcert", *broker, "-file", "chain.pem", "-noprompt")
    for leftover in ("ca.p12", "broker.csr", "broker.pem", "chain.pem"):
        (work / leftover).unlink()  # the CA's key goes with ca.p12
    (work / KEYSTORE).chmod(0o600)
    (work / CA_FILE).chmod(0o644)  # a certificate is public: clients anywhere may read it
    try:
        finish(work, password)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    work.rename(folder)


def _keep_password(work: Path, password: str) -> None:
    """The broker reads the PKCS#12 keystore itself, with its password from a private file."""
    write_private(work / KEYSTORE_PASSWORD, password + "\n")


def holds_certificate(bundle: Path, ca: Path) -> bool:
    """Whether the PEM bundle contains the certificate in ``ca`` (whitespace aside)."""
    squeeze = "".join
    return squeeze(ca.read_text().split()) in squeeze(bundle.read_text().split())
