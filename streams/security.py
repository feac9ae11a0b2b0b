"""How every socialrec process connects to Kafka and Redis: SASL, TLS and secrets.

Every Kafka client (aiokafka consumers, producers and admin clients, and the Faust app) is
built from :func:`kafka_client_kwargs` or :func:`faust_credentials`, and every Redis client
from :func:`redis_client_for` (or :func:`redis_sync_client`), so one setting changes them all.
Secrets come from a setting or from a file (a mounted secret, read when a client is built), and
never reach a log, a repr or an error message: URLs are shown through :func:`masked_url`.

>>> from streams.config import Settings
>>> kafka_client_kwargs(Settings(kafka_bootstrap="k:9092"))
{'bootstrap_servers': 'k:9092', 'security_protocol': 'PLAINTEXT'}
>>> s = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_username="rec",
...              kafka_password="s3cret")
>>> sorted(kafka_client_kwargs(s))[1:]
['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol']
>>> "s3cret" in repr(s)
False
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    import redis
    import redis.asyncio as aioredis
    from faust.types.auth import CredentialsT
    from pydantic import SecretStr

    from streams.config import Settings

SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


def read_secret_file(path: Path) -> str:
    """A secret mounted as a file, without the trailing newline editors and ``echo`` leave."""
    return path.read_text().rstrip("\r\n")


def read_secret(value: SecretStr, path: Path | None) -> str:
    """A secret from its file when one is set, else from its setting."""
    return read_secret_file(path) if path is not None else value.get_secret_value()


# --- Kafka -------------------------------------------------------------------------------------


def kafka_password(settings: Settings) -> str:
    return read_secret(settings.kafka_password, settings.kafka_password_file)


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (the system's CAs unless a CA file is set; a
    client certificate when one is set); None for the plaintext protocols."""
    if settings.kafka_security_protocol not in TLS_PROTOCOLS:
        return None
    from aiokafka.helpers import create_ssl_context

    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_ca_file,
        certfile=settings.kafka_ssl_cert_file,
        keyfile=settings.kafka_ssl_key_file,
    )
    return context


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """The bootstrap servers and security arguments of an aiokafka client."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = kafka_ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol in SASL_PROTOCOLS:
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_username
        kwargs["sasl_plain_password"] = kafka_password(settings)
    return kwargs


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """The same security for the Faust app's own consumer and producer (``broker_credentials``)."""
    from faust.auth import SASLCredentials, SSLCredentials

    context = kafka_ssl_context(settings)
    if settings.kafka_security_protocol in SASL_PROTOCOLS:
        return SASLCredentials(
            username=settings.kafka_username,
            password=kafka_password(settings),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,  # SASL_SSL when given
        )
    return SSLCredentials(context) if context is not None else None


async def kafka_login_problem(settings: Settings, timeout_s: float = 5.0) -> str | None:
    """Why the first bootstrap broker refuses these settings' login, if it does.

    aiokafka's clients report a refused login only as "Unable to bootstrap"; one connection of
    our own gets the broker's actual answer, to tell the user what to fix.
    """
    from aiokafka import errors
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    host, _, port = settings.kafka_bootstrap.split(",")[0].strip().rpartition(":")
    kwargs = kafka_client_kwargs(settings)
    del kwargs["bootstrap_servers"]
    try:
        conn = await create_conn(
            host, int(port), request_timeout_ms=int(timeout_s * 1000), **kwargs
        )
    except errors.SaslAuthenticationFailed:
        return (
            f"Kafka refused the {settings.kafka_sasl_mechanism} login of user "
            f"{settings.kafka_username!r}: check SOCIALREC_KAFKA_USERNAME and "
            "SOCIALREC_KAFKA_PASSWORD (or _PASSWORD_FILE)"
        )
    except errors.UnsupportedSaslMechanismError:
        return (
            f"Kafka does not offer {settings.kafka_sasl_mechanism}: set "
            "SOCIALREC_KAFKA_SASL_MECHANISM to one its listener enables"
        )
    except ssl.SSLCertVerificationError as exc:
        return (
            f"Kafka's certificate at {host}:{port} is not trusted ({exc.verify_message}): set "
            "SOCIALREC_KAFKA_SSL_CA_FILE to the CA that signed it (for the local broker: "
            "kafka/tls/ca.pem in SOCIALREC_DATA_DIR)"
        )
    except (errors.KafkaError, OSError, TimeoutError):
        return None  # not a login problem (down, unreachable): the caller's message says so
    try:  # a listener that wants SASL or TLS hangs up on a plain request
        await conn.send(MetadataRequest([]))
    except errors.KafkaConnectionError:
        if settings.kafka_security_protocol == "PLAINTEXT":
            return (
                f"Kafka at {host}:{port} hung up on a plaintext request: if its listener asks "
                "for SASL or TLS, set SOCIALREC_KAFKA_SECURITY_PROTOCOL and the credentials"
            )
    except (errors.KafkaError, OSError, TimeoutError):
        pass
    finally:
        conn.close()
    return None


async def kafka_error_hint(settings: Settings, exc: BaseException) -> str:
    """What to fix when a Kafka client could not start with ``exc``."""
    return await kafka_login_problem(settings) or (
        f"cannot reach Kafka at {settings.kafka_bootstrap} ({type(exc).__name__}): start it "
        "with `socialrec infra up` or fix SOCIALREC_KAFKA_BOOTSTRAP"
    )


def redis_error_hint(exc: BaseException) -> str:
    """What to fix when a Redis call failed with ``exc``."""
    from redis.exceptions import AuthenticationError

    if isinstance(exc, AuthenticationError) or "NOAUTH" in str(exc):
        return (
            "Redis refused the login: check the user and password in SOCIALREC_REDIS_URL "
            "(or SOCIALREC_REDIS_PASSWORD_FILE)"
        )
    return "start it with `socialrec infra up` or fix SOCIALREC_REDIS_URL"


# --- Redis -------------------------------------------------------------------------------------


def redis_connection_kwargs(settings: Settings) -> dict[str, Any]:
    """Timeouts, the password from its file and the TLS CA, for a client built from a URL (the
    URL's own user, password and ``rediss://`` scheme apply as written)."""
    kwargs: dict[str, Any] = {
        # Every call has a timeout, so a hung server (frozen, partitioned) becomes an outage
        # that is waited out instead of a process that hangs.
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
    }
    if settings.redis_password_file is not None:
        kwargs["password"] = read_secret_file(settings.redis_password_file)
    if settings.redis_ssl_ca_file is not None:
        kwargs["ssl_ca_certs"] = str(settings.redis_ssl_ca_file)
    return kwargs


#: Connections of a client's pool (redis-py's own default, said once here).
REDIS_POOL_SIZE = 100


def redis_client_for(
    settings: Settings, url: str | None = None, *, queue_for_connections: bool = False
) -> aioredis.Redis:
    """An asyncio Redis client for ``settings`` (or for ``url``, another database of the same
    server, with the same credentials); with ``redis_cluster``, a client of the cluster
    (streams/redis_cluster.py), which takes the same calls and has one database (``url`` and
    ``queue_for_connections`` do not apply).

    Its pool holds redis-py's default of 100 connections; a call past them fails at once,
    unless ``queue_for_connections`` (an HTTP server with more requests in flight than that):
    then it waits for a free connection, up to ``SOCIALREC_REDIS_TIMEOUT_S``."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # No resend by the client (from_url's default today, said here so a library change cannot
    # undo it): after a timeout Redis may have applied the command, and a resend would apply a
    # script or an unwatched transaction twice. Callers wait an outage out themselves
    # (streams/runtime/outage.py), with the guards that make a retry safe.
    if settings.redis_cluster:
        from streams.redis_cluster import redis_cluster_client_for

        return cast(aioredis.Redis, redis_cluster_client_for(settings))
    kwargs: dict[str, Any] = {
        "health_check_interval": 30,
        "retry": Retry(NoBackoff(), 0),
        **redis_connection_kwargs(settings),
    }
    if not queue_for_connections:
        return aioredis.Redis.from_url(url or settings.redis_url, **kwargs)
    pool = aioredis.BlockingConnectionPool.from_url(
        url or settings.redis_url,
        max_connections=REDIS_POOL_SIZE,
        timeout=settings.redis_timeout_s,
        **kwargs,
    )
    return aioredis.Redis.from_pool(pool)


def redis_sync_client(settings: Settings, timeout_s: float | None = None) -> redis.Redis:
    """A blocking Redis client for ``settings`` (readiness checks), with its own timeout."""
    import redis

    kwargs = redis_connection_kwargs(settings)
    if timeout_s is not None:
        kwargs.update(socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def redis_user_password(settings: Settings) -> tuple[str | None, str | None]:
    """The Redis user and password the settings log in with (None: not given)."""
    parts = urlsplit(settings.redis_url)
    password = unquote(parts.password) if parts.password is not None else None
    if settings.redis_password_file is not None:
        password = read_secret_file(settings.redis_password_file)
    return (unquote(parts.username) if parts.username else None), password


def masked_url(url: str) -> str:
    """``url`` with its password replaced, for logs and messages.

    >>> masked_url("redis://rec:s3cret@127.0.0.1:16379/0")
    'redis://rec:***@127.0.0.1:16379/0'
    >>> masked_url("rediss://:s3cret@cache:6380/2")
    'rediss://:***@cache:6380/2'
    >>> masked_url("redis://127.0.0.1:16379/0")
    'redis://127.0.0.1:16379/0'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
