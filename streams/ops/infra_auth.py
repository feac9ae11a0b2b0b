"""Authentication for the local servers ``socialrec infra`` starts, from the clients' settings.

With ``SOCIALREC_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT`` or ``SASL_SSL`` (SCRAM; TLS itself is
streams/ops/infra_tls.py), the broker's client listener asks for SASL and the project's user is
created when the storage is formatted: the broker logs in to itself as that user, so it must
exist from the first metadata record on (a broker formatted without it must be formatted again:
we refuse rather than lose its data silently). More users (the frontends' producer user,
streams/ops/kafka_acl.py) are added while the broker runs.

The broker authorises per topic: KRaft's StandardAuthorizer, the project's user a super user,
everyone else only what an ACL grants. The controller listener, on its own loopback port, logs
in with PLAIN as the project's user from server.properties: a controller cannot check SCRAM
users (they live in the metadata it serves), and an anonymous controller listener would have to
be a super user, open to any local process. It stays unencrypted: loopback traffic never leaves
the machine. ``kafka-storage format`` takes the password as an argument: for the moments it
formats, other local users could read it in the process list, which a local development broker
accepts.

With a password in ``SOCIALREC_REDIS_URL`` (or ``SOCIALREC_REDIS_PASSWORD_FILE``), Redis gets an
ACL file: that user with every permission, the passwordless ``default`` user off. Files holding
secrets are written readable by their owner only; the ACL file keeps only a SHA-256 of the
password.

>>> scram_spec("SCRAM-SHA-512", "rec", "pw")
'SCRAM-SHA-512=[name="rec",password="pw"]'
>>> redis_acl_lines("rec", "pw")[0]
'user default off'
>>> redis_acl_lines(None, "pw")[0][:24]
'user default on #30c952f'
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path

from streams.config import Settings
from streams.security import SASL_PROTOCOLS, kafka_password, redis_user_password

#: Where `infra up` records which SCRAM user the broker's storage was formatted with.
SCRAM_MARKER = "scram-user"
#: Characters the local servers' user names may hold (quoting stays trivial and safe).
SAFE_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
PBKDF2_ROUNDS = 100_000
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


class AuthSetupError(RuntimeError):
    """The settings ask for authentication the local servers cannot provide as given."""


def kafka_sasl(settings: Settings) -> bool:
    """Whether the local broker's client listener must ask for SASL."""
    protocol = settings.kafka_security_protocol
    if protocol not in SASL_PROTOCOLS:
        return False
    if not settings.kafka_sasl_mechanism.startswith("SCRAM-"):
        raise AuthSetupError(
            "socialrec infra runs the local broker's SASL with SCRAM only (not "
            f"{settings.kafka_sasl_mechanism}); set SOCIALREC_KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
        )
    _check_safe(settings.kafka_username, kafka_password(settings), "SOCIALREC_KAFKA_")
    return True


def kafka_sasl_properties(settings: Settings, listener: str) -> list[str]:
    """The broker settings that make ``listener`` (also the inter-broker one) ask for SCRAM,
    the controller listener for PLAIN, and the authorizer with the project's user as super user.
    """
    mechanism = settings.kafka_sasl_mechanism
    user, password = settings.kafka_username, kafka_password(settings)
    scram_login = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user}" password="{password}";'
    )
    # The controller's PLAIN login: what the broker sends (username, password) and the one
    # user it accepts (user_<name>).
    plain_login = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{user}" password="{password}" user_{user}="{password}";'
    )
    return [
        f"sasl.enabled.mechanisms={mechanism}",
        f"sasl.mechanism.inter.broker.protocol={mechanism}",
        # The broker's own login on its inter-broker listener, as the project user.
        f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config={scram_login}",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={plain_login}",
        f"authorizer.class.name={AUTHORIZER}",
        f"super.users=User:{user}",
    ]


def scram_spec(mechanism: str, user: str, password: str) -> str:
    """The ``--add-scram`` argument of ``kafka-storage format``."""
    return f'{mechanism}=[name="{user}",password="{password}"]'


def check_formatted_user(settings: Settings, kafka_dir: Path) -> None:
    """Refuse to start a formatted broker that lacks the configured SCRAM user."""
    marker = kafka_dir / SCRAM_MARKER
    data = kafka_dir / "data"
    redo = (
        f"stop it (`socialrec infra down --services kafka`), then remove {data} to format it "
        "again with the user (its topics are lost), or use another SOCIALREC_DATA_DIR"
    )
    if not marker.exists():
        raise AuthSetupError(
            f"kafka: the broker in {data} was formatted without SCRAM users (it logs in to "
            f"itself as {settings.kafka_username!r}, who must exist from the format on); {redo}"
        )
    mechanism, user, verifier = marker.read_text().split()
    if (mechanism, user) != (settings.kafka_sasl_mechanism, settings.kafka_username):
        raise AuthSetupError(
            f"kafka: the broker in {data} was formatted with the {mechanism} user {user!r}, not "
            f"{settings.kafka_sasl_mechanism} {settings.kafka_username!r}; {redo}"
        )
    if not _verifies(verifier, kafka_password(settings)):
        raise AuthSetupError(
            f"kafka: the broker in {data} was formatted with another password for {user!r}; "
            f"set that one, or {redo}"
        )


def record_formatted_user(settings: Settings, kafka_dir: Path) -> None:
    salt = os.urandom(16)
    digest = _pbkdf2(kafka_password(settings), salt)
    line = f"{settings.kafka_sasl_mechanism} {settings.kafka_username} {salt.hex()}${digest}\n"
    write_private(kafka_dir / SCRAM_MARKER, line)


def redis_acl(settings: Settings) -> str | None:
    """The local Redis's ACL file, when the settings log in with a password."""
    user, password = redis_user_password(settings)
    if password is None:
        if user is not None:
            raise AuthSetupError("a Redis user in SOCIALREC_REDIS_URL needs a password too")
        return None
    _check_safe(user or "default", password, "SOCIALREC_REDIS_")
    return "\n".join(redis_acl_lines(user, password)) + "\n"


def redis_acl_lines(user: str | None, password: str) -> list[str]:
    """The ACL: ``user`` (or ``default``) may do everything with ``password``; no one else."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    if user in (None, "default"):
        return [f"user default on #{digest} ~* &* +@all"]
    return ["user default off", f"user {user} on #{digest} ~* &* +@all"]


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds a secret or a hash of one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _check_safe(user: str, password: str, prefix: str) -> None:
    # The names go into quoted configuration values; the password may hold anything but
    # quotes, backslashes and line breaks (which would need escaping in three syntaxes).
    if not SAFE_NAME.fullmatch(user):
        raise AuthSetupError(
            f"the local servers take user names of letters, digits and _.@- only; change the "
            f"user in {prefix}{'USERNAME' if 'KAFKA' in prefix else 'URL'}"
        )
    if not password or any(c in password for c in '"\\\n\r'):
        raise AuthSetupError(
            f"the local servers need a non-empty password without quotes, backslashes or line "
            f"breaks; change {prefix}PASSWORD{'' if 'KAFKA' in prefix else '_FILE or the URL'}"
        )


def _pbkdf2(password: str, salt: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ROUNDS).hex()


def _verifies(verifier: str, password: str) -> bool:
    salt, _, digest = verifier.partition("$")
    return hmac.compare_digest(_pbkdf2(password, bytes.fromhex(salt)), digest)
