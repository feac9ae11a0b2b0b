"""TLS for the local Redis ``socialrec infra up`` starts when ``SOCIALREC_REDIS_URL`` is
``rediss://``.

Redis then listens on TLS only (``--port 0``, the URL's port as its TLS port), TLS 1.2 and 1.3,
and asks no client for a certificate: the ACL user and password (streams/ops/infra_auth.py) say who
a client is. Its certificate is the operator's (``SOCIALREC_REDIS_SERVER_SSL_CERT_FILE`` and
``_KEY_FILE``, PEM, read by redis-server where they are) or, when none is configured, one made
once per data dir by a local CA, as for the broker (streams/ops/infra_tls.py: keytool makes it, the
CA's key is gone once it has signed); ``openssl`` writes its key as the PEM redis-server reads,
readable by its owner only. Clients trust it with
``SOCIALREC_REDIS_SSL_CA_FILE=<data dir>/redis/tls/ca.pem``; ``infra up`` prints that.

>>> redis_tls(Settings(redis_url="rediss://127.0.0.1:6380/0"))
True
>>> redis_tls(Settings())
False
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from streams.config import Settings
from streams.ops.infra_auth import AuthSetupError, write_private
from streams.ops.infra_tls import (
    CA_FILE,
    KEYSTORE,
    PASSWORD_VAR,
    TLS_DIR,
    check_pem_key,
    holds_certificate,
    make_local_ca,
    trusting_local_ca,
)

#: The made certificate's chain and its key (the folder is renamed into place whole).
CERT_FILE = "server.pem"
KEY_FILE = "server.key"
#: The versions a client may speak: older ones have known weaknesses.
PROTOCOLS = "TLSv1.2 TLSv1.3"
OWN_CERT_VAR = "SOCIALREC_REDIS_SERVER_SSL_CERT_FILE"
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----\n", re.DOTALL)


def redis_tls(settings: Settings) -> bool:
    """Whether the local Redis must speak TLS."""
    return urlsplit(settings.redis_url).scheme == "rediss"


def redis_tls_args(settings: Settings, redis_dir: Path) -> list[str]:
    """redis-server's certificate arguments, the local one made first if it is missing."""
    if settings.redis_server_ssl_cert_file is not None:
        cert, key = _operator_files(settings)
        ca = settings.redis_ssl_ca_file  # what signed it, if the clients are told
    else:
        folder = redis_dir / TLS_DIR
        if not (folder / KEY_FILE).exists():
            shutil.rmtree(folder, ignore_errors=True)
            make_local_ca(folder, "redis", OWN_CERT_VAR, _pem_files)
        cert, key, ca = folder / CERT_FILE, folder / KEY_FILE, folder / CA_FILE
        configured = settings.redis_ssl_ca_file
        if configured is not None and not holds_certificate(configured, ca):
            raise AuthSetupError(
                f"SOCIALREC_REDIS_SSL_CA_FILE ({configured}) does not hold the local CA that "
                f"signed the Redis certificate: set it to {ca}, or give Redis your own "
                f"({OWN_CERT_VAR} and _KEY_FILE)"
            )
    args = ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    if ca is not None:
        args += ["--tls-ca-cert-file", str(ca)]
    return [*args, "--tls-auth-clients", "no", "--tls-protocols", PROTOCOLS]


def redis_client_settings(settings: Settings, redis_dir: Path) -> Settings:
    """``trusting_local_ca`` for Redis."""
    return trusting_local_ca(
        settings,
        redis_dir,
        tls=redis_tls(settings),
        operator_cert=settings.redis_server_ssl_cert_file,
        ca_field="redis_ssl_ca_file",
    )


def _operator_files(settings: Settings) -> tuple[Path, Path]:
    cert, key = settings.redis_server_ssl_cert_file, settings.redis_server_ssl_key_file
    assert cert is not None  # transport_problems insists on both
    assert key is not None
    check_pem_key(key.read_text(), str(key))
    if "-----BEGIN CERTIFICATE-----" not in cert.read_text():
        raise AuthSetupError(f"{OWN_CERT_VAR}: {cert} holds no certificate (PEM)")
    return cert, key


def _pem_files(work: Path, password: str) -> None:
    """Redis reads PEM only: the key and certificate out of the keystore keytool made (the
    keystore and its password then go: the key file is the secret now)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise AuthSetupError(
            "redis: `openssl` not found on PATH: it writes the certificate's key as PEM for "
            "redis-server; install it (Debian/Ubuntu: apt-get install -y openssl) or give your "
            f"own ({OWN_CERT_VAR} and _KEY_FILE)"
        )
    cmd = [openssl, "pkcs12", "-in", KEYSTORE, "-nodes", "-clcerts"]
    cmd += ["-passin", f"env:{PASSWORD_VAR}"]  # not in the (visible) arguments
    env = {**os.environ, PASSWORD_VAR: password}
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
    blocks = {match[1]: match[0] for match in _PEM_BLOCK.finditer(done.stdout)}
    if done.returncode != 0 or not {"PRIVATE KEY", "CERTIFICATE"} <= set(blocks):
        raise AuthSetupError(f"redis: openssl pkcs12 failed: {done.stderr.strip()}")
    write_private(work / KEY_FILE, blocks["PRIVATE KEY"])
    (work / CERT_FILE).write_text(blocks["CERTIFICATE"] + (work / CA_FILE).read_text())
    (work / CERT_FILE).chmod(0o644)  # public, as the CA
    (work / KEYSTORE).unlink()
