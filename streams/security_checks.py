"""What keeps the transport settings (streams/security.py) from working, each with what to fix.

Checked when settings are read (streams/config.py), so a process fails at start-up naming the
variables to change, not at its first call. Messages never hold a secret.

>>> from streams.config import Settings
>>> transport_problems(Settings.model_construct(kafka_frontend_username="shop"))[0][:55]
'SOCIALREC_KAFKA_FRONTEND_USERNAME needs a SASL protocol'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from streams.security import SASL_PROTOCOLS, TLS_PROTOCOLS, read_secret_file

if TYPE_CHECKING:
    from pydantic import SecretStr

    from streams.config import Settings


def transport_problems(settings: Settings) -> list[str]:
    """What keeps the Kafka and Redis settings from working, each with what to fix."""
    s = settings
    problems = [*_secret_file_problems(s), *_frontend_problems(s), *_broker_tls_problems(s)]
    problems += _redis_server_tls_problems(s)
    sasl = s.kafka_security_protocol in SASL_PROTOCOLS
    has_password = _has_secret(s.kafka_password, s.kafka_password_file)
    if sasl and not (s.kafka_username and has_password):
        problems.append(
            f"SOCIALREC_KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol} needs "
            "SOCIALREC_KAFKA_USERNAME and SOCIALREC_KAFKA_PASSWORD (or _PASSWORD_FILE)"
        )
    if not sasl and (s.kafka_username or has_password):
        problems.append(
            "a Kafka username or password is set but SOCIALREC_KAFKA_SECURITY_PROTOCOL="
            f"{s.kafka_security_protocol} does not use SASL: set it to SASL_PLAINTEXT or SASL_SSL"
        )
    if s.kafka_password.get_secret_value() and s.kafka_password_file is not None:
        problems.append("set SOCIALREC_KAFKA_PASSWORD or SOCIALREC_KAFKA_PASSWORD_FILE, not both")
    tls_files = {
        "SOCIALREC_KAFKA_SSL_CA_FILE": s.kafka_ssl_ca_file,
        "SOCIALREC_KAFKA_SSL_CERT_FILE": s.kafka_ssl_cert_file,
        "SOCIALREC_KAFKA_SSL_KEY_FILE": s.kafka_ssl_key_file,
    }
    named = [name for name, path in tls_files.items() if path is not None]
    if named and s.kafka_security_protocol not in TLS_PROTOCOLS:
        problems.append(
            f"{', '.join(named)} set but SOCIALREC_KAFKA_SECURITY_PROTOCOL="
            f"{s.kafka_security_protocol} does not use TLS: set it to SSL or SASL_SSL"
        )
    if (s.kafka_ssl_cert_file is None) != (s.kafka_ssl_key_file is None):
        problems.append(
            "a client certificate needs both SOCIALREC_KAFKA_SSL_CERT_FILE and _SSL_KEY_FILE"
        )
    problems += [f"{name}: {path} does not exist" for name, path in _missing(tls_files)]
    parts = urlsplit(s.redis_url)
    if s.redis_password_file is not None and parts.password is not None:
        problems.append(
            "the Redis password is both in SOCIALREC_REDIS_URL and in "
            "SOCIALREC_REDIS_PASSWORD_FILE: keep one"
        )
    if s.redis_ssl_ca_file is not None:
        if parts.scheme != "rediss":
            problems.append("SOCIALREC_REDIS_SSL_CA_FILE needs a rediss:// SOCIALREC_REDIS_URL")
        problems += [
            f"{name}: {path} does not exist"
            for name, path in _missing({"SOCIALREC_REDIS_SSL_CA_FILE": s.redis_ssl_ca_file})
        ]
    return problems


def _secret_file_problems(s: Settings) -> list[str]:
    problems = []
    files = {
        "SOCIALREC_KAFKA_PASSWORD_FILE": s.kafka_password_file,
        "SOCIALREC_KAFKA_FRONTEND_PASSWORD_FILE": s.kafka_frontend_password_file,
        "SOCIALREC_REDIS_PASSWORD_FILE": s.redis_password_file,
    }
    for name, path in files.items():
        if path is None:
            continue
        try:
            secret = read_secret_file(path)
        except OSError as exc:
            problems.append(f"{name}: cannot read {path} ({exc.strerror or exc})")
            continue
        if not secret:
            problems.append(f"{name}: {path} is empty")
    return problems


def _missing(files: dict[str, Path | None]) -> list[tuple[str, Path]]:
    return [(name, path) for name, path in files.items() if path is not None and not path.is_file()]


def _has_secret(value: SecretStr, path: Path | None) -> bool:
    return bool(value.get_secret_value()) or path is not None


def _frontend_problems(s: Settings) -> list[str]:
    """The frontends' producer user (streams/ops/kafka_acl.py): SASL, a password, its own name."""
    name = "SOCIALREC_KAFKA_FRONTEND_USERNAME"
    has_password = _has_secret(s.kafka_frontend_password, s.kafka_frontend_password_file)
    if not s.kafka_frontend_username:
        return ["a frontend password is set but not " + name] if has_password else []
    problems = []
    if s.kafka_security_protocol not in SASL_PROTOCOLS:
        problems.append(f"{name} needs a SASL protocol: set SOCIALREC_KAFKA_SECURITY_PROTOCOL to "
                        "SASL_PLAINTEXT or SASL_SSL")  # fmt: skip
    if not has_password:
        problems.append(f"{name} needs SOCIALREC_KAFKA_FRONTEND_PASSWORD (or _PASSWORD_FILE)")
    if s.kafka_frontend_password.get_secret_value() and s.kafka_frontend_password_file:
        problems.append(
            "set SOCIALREC_KAFKA_FRONTEND_PASSWORD or SOCIALREC_KAFKA_FRONTEND_PASSWORD_FILE, "
            "not both"
        )
    if s.kafka_frontend_username == s.kafka_username:
        problems.append(f"{name} must differ from SOCIALREC_KAFKA_USERNAME (the project's user)")
    return problems


def _broker_tls_problems(s: Settings) -> list[str]:
    """The local broker's own certificate (streams/ops/infra_tls.py): both files, for TLS."""
    files = {
        "SOCIALREC_KAFKA_BROKER_SSL_CERT_FILE": s.kafka_broker_ssl_cert_file,
        "SOCIALREC_KAFKA_BROKER_SSL_KEY_FILE": s.kafka_broker_ssl_key_file,
    }
    named = [name for name, path in files.items() if path is not None]
    if not named:
        return []
    problems = [f"{name}: {path} does not exist" for name, path in _missing(files)]
    if len(named) == 1:
        problems.append("the broker's certificate needs both SOCIALREC_KAFKA_BROKER_SSL_CERT_FILE "
                        "and _KEY_FILE")  # fmt: skip
    if s.kafka_security_protocol not in TLS_PROTOCOLS:
        problems.append(
            f"{', '.join(named)} set but SOCIALREC_KAFKA_SECURITY_PROTOCOL="
            f"{s.kafka_security_protocol} does not use TLS: set it to SSL or SASL_SSL"
        )
    return problems


def _redis_server_tls_problems(s: Settings) -> list[str]:
    """The local Redis's own certificate (streams/ops/infra_redis_tls.py): both files, readable,
    for a rediss:// URL (whether they hold PEM, `infra up` checks before starting Redis)."""
    files = {
        "SOCIALREC_REDIS_SERVER_SSL_CERT_FILE": s.redis_server_ssl_cert_file,
        "SOCIALREC_REDIS_SERVER_SSL_KEY_FILE": s.redis_server_ssl_key_file,
    }
    named = [name for name, path in files.items() if path is not None]
    if not named:
        return []
    problems = []
    for name, path in files.items():
        try:
            if path is not None:
                path.read_bytes()
        except OSError as exc:
            problems.append(f"{name}: cannot read {path} ({exc.strerror or exc})")
    if len(named) == 1:
        problems.append("the Redis certificate needs both SOCIALREC_REDIS_SERVER_SSL_CERT_FILE "
                        "and _KEY_FILE")  # fmt: skip
    if urlsplit(s.redis_url).scheme != "rediss":
        problems.append(f"{', '.join(named)} set but SOCIALREC_REDIS_URL is not rediss://")
    return problems
