"""Transport security settings: what each combination builds, and what fails at start-up.

The clients' arguments are checked against what aiokafka and Faust's own driver make of them;
the servers' side (a SASL broker, an ACL Redis) runs in tests/e2e/test_security.py.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streams.config import ConfigError, Settings, load_settings
from streams.ops import infra
from streams.ops.infra_auth import (
    AuthSetupError,
    check_formatted_user,
    record_formatted_user,
    redis_acl,
)
from streams.security import (
    faust_credentials,
    kafka_client_kwargs,
    redis_client_for,
    redis_connection_kwargs,
)
from streams.tools.processes import settings_env

#: Whatever SOCIALREC_* variables the caller's shell has are ignored (tests/unit/conftest.py).
pytestmark = pytest.mark.usefixtures("clean_environment")


def secret_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def sasl(**more: object) -> Settings:
    """SASL_PLAINTEXT with SCRAM as user ``rec``, password ``pw-1``, unless ``more`` says else."""
    base: dict[str, object] = {
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_username": "rec",
        "kafka_password": "pw-1",
    }
    return Settings(**{**base, **more})  # type: ignore[arg-type]


def test_plaintext_by_default_and_faust_gets_no_credentials() -> None:
    settings = Settings(kafka_bootstrap="a:1,b:2")
    assert kafka_client_kwargs(settings) == {
        "bootstrap_servers": "a:1,b:2",
        "security_protocol": "PLAINTEXT",
    }
    assert faust_credentials(settings) is None


def test_sasl_scram_from_a_password_file(tmp_path: Path) -> None:
    password = secret_file(tmp_path, "kafka.pw", "from-file\n")  # as `echo` writes it
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_username="rec",
        kafka_password_file=password,
    )
    kwargs = kafka_client_kwargs(settings)
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("rec", "from-file")
    assert "ssl_context" not in kwargs
    # Faust's own driver turns our credentials into exactly the same arguments.
    credentials = faust_credentials(settings)
    assert isinstance(credentials, SASLCredentials)
    assert _without_bootstrap(kwargs) == _defined(credentials_to_aiokafka_auth(credentials))
    password.write_text("rotated\n")  # a mounted secret is read again by each new client
    assert kafka_client_kwargs(settings)["sasl_plain_password"] == "rotated"


def test_sasl_ssl_with_a_ca_file_and_client_certificate(certs: Path) -> None:
    settings = sasl(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_ssl_ca_file=certs / "ca.pem",
        kafka_ssl_cert_file=certs / "server.pem",
        kafka_ssl_key_file=certs / "server.key",
    )
    kwargs = kafka_client_kwargs(settings)
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 1  # our CA, not the system's
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-256"
    credentials = faust_credentials(settings)
    assert isinstance(credentials, SASLCredentials)
    faust_kwargs = _defined(credentials_to_aiokafka_auth(credentials))
    assert faust_kwargs["security_protocol"] == "SASL_SSL"
    assert faust_kwargs.keys() == _without_bootstrap(kwargs).keys()


def test_the_worker_faust_app_logs_in_as_its_clients_do(tmp_path: Path) -> None:
    from streams.runtime.worker import faust_app

    app = faust_app(sasl(data_dir=tmp_path))
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, SASLCredentials)
    assert (credentials.username, credentials.password) == ("rec", "pw-1")
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert faust_app(Settings(data_dir=tmp_path)).conf.broker_credentials is None


def test_ssl_without_a_ca_file_trusts_the_system_cas() -> None:
    settings = Settings(kafka_security_protocol="SSL")
    kwargs = kafka_client_kwargs(settings)
    assert kwargs["security_protocol"] == "SSL"
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert "sasl_mechanism" not in kwargs
    credentials = faust_credentials(settings)
    assert isinstance(credentials, SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


def _without_bootstrap(kwargs: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in kwargs.items() if k not in ("bootstrap_servers", "ssl_context")}


def _defined(kwargs: object) -> dict[str, object]:
    assert isinstance(kwargs, dict)
    return {k: v for k, v in kwargs.items() if v is not None and k != "ssl_context"}


@pytest.mark.parametrize(
    ("env", "hint"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs SOCIALREC_KAFKA_USERNAME"),
        ({"KAFKA_USERNAME": "rec", "KAFKA_PASSWORD": "x"}, "does not use SASL"),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_USERNAME": "rec",
                "KAFKA_PASSWORD": "x",
                "KAFKA_PASSWORD_FILE": "{tmp}/pw",
            },
            "not both",
        ),
        ({"KAFKA_PASSWORD_FILE": "{tmp}/missing"}, "SOCIALREC_KAFKA_PASSWORD_FILE: cannot read"),
        ({"KAFKA_PASSWORD_FILE": "{tmp}"}, "SOCIALREC_KAFKA_PASSWORD_FILE: cannot read"),
        (
            {"REDIS_PASSWORD_FILE": "{tmp}/empty"},
            "SOCIALREC_REDIS_PASSWORD_FILE: {tmp}/empty is empty",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "{tmp}/nope.pem"},
            "SOCIALREC_KAFKA_SSL_CA_FILE: {tmp}/nope.pem does not exist",
        ),
        ({"KAFKA_SSL_CA_FILE": "{tmp}/pw"}, "does not use TLS"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "{tmp}/pw"}, "_SSL_KEY_FILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "SOCIALREC_KAFKA_SECURITY_PROTOCOL: Input should be"),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "SOCIALREC_KAFKA_SASL_MECHANISM: Input should be"),
        ({"REDIS_SSL_CA_FILE": "{tmp}/pw"}, "needs a rediss:// SOCIALREC_REDIS_URL"),
        (
            {"REDIS_URL": "redis://rec:pw@127.0.0.1:1/0", "REDIS_PASSWORD_FILE": "{tmp}/pw"},
            "keep one",
        ),
        (
            {"REDIS_URL": "rediss://127.0.0.1:1/0", "REDIS_SERVER_SSL_CERT_FILE": "{tmp}/pw"},
            "the Redis certificate needs both SOCIALREC_REDIS_SERVER_SSL_CERT_FILE and _KEY_FILE",
        ),
        (
            {"REDIS_URL": "rediss://127.0.0.1:1/0", "REDIS_SERVER_SSL_KEY_FILE": "{tmp}/pw"},
            "needs both",
        ),
        (
            {
                "REDIS_URL": "rediss://127.0.0.1:1/0",
                "REDIS_SERVER_SSL_CERT_FILE": "{tmp}/no.pem",
                "REDIS_SERVER_SSL_KEY_FILE": "{tmp}/pw",
            },
            "SOCIALREC_REDIS_SERVER_SSL_CERT_FILE: cannot read {tmp}/no.pem",
        ),
        (
            {
                "REDIS_URL": "rediss://127.0.0.1:1/0",
                "REDIS_SERVER_SSL_CERT_FILE": "{tmp}",
                "REDIS_SERVER_SSL_KEY_FILE": "{tmp}/pw",
            },
            "SOCIALREC_REDIS_SERVER_SSL_CERT_FILE: cannot read {tmp} (Is a directory)",
        ),
        (
            {"REDIS_SERVER_SSL_CERT_FILE": "{tmp}/pw", "REDIS_SERVER_SSL_KEY_FILE": "{tmp}/pw"},
            "SOCIALREC_REDIS_SERVER_SSL_KEY_FILE set but SOCIALREC_REDIS_URL is not rediss://",
        ),
    ],
)
def test_misconfiguration_fails_at_start_naming_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], hint: str
) -> None:
    (tmp_path / "pw").write_text("s3cret-value\n")
    (tmp_path / "empty").write_text("\n")
    for name, value in env.items():
        monkeypatch.setenv(f"SOCIALREC_{name}", value.format(tmp=tmp_path))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert hint.format(tmp=tmp_path) in message
    assert "s3cret-value" not in message
    assert "Value error" not in message


def test_secrets_stay_out_of_reprs_but_reach_child_processes(tmp_path: Path) -> None:
    settings = sasl(redis_url="redis://rec:redis-pw@127.0.0.1:16379/0")
    for text in (repr(settings), str(settings)):
        assert "pw-1" not in text
        assert "redis-pw" not in text
        assert "redis://rec:***@127.0.0.1:16379/0" in text
    env = settings_env(settings)  # what a demo's or bench's worker is started with
    assert env["SOCIALREC_KAFKA_PASSWORD"] == "pw-1"
    assert env["SOCIALREC_REDIS_URL"] == "redis://rec:redis-pw@127.0.0.1:16379/0"


async def test_redis_clients_take_the_password_file_and_the_tls_ca(
    tmp_path: Path, certs: Path
) -> None:
    password = secret_file(tmp_path, "redis.pw", "redis-pw\n")
    settings = Settings(
        redis_url="rediss://rec@cache.example:6380/2",
        redis_password_file=password,
        redis_ssl_ca_file=certs / "ca.pem",
    )
    kwargs = redis_connection_kwargs(settings)
    assert kwargs["password"] == "redis-pw"
    assert kwargs["socket_timeout"] == settings.redis_timeout_s
    client = redis_client_for(settings, "rediss://rec@cache.example:6380/5")
    try:
        options = client.connection_pool.connection_kwargs
        assert (options["username"], options["password"], options["db"]) == ("rec", "redis-pw", 5)
        assert options["ssl_ca_certs"] == str(certs / "ca.pem")
        assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    finally:
        await client.aclose()


def test_local_broker_gets_a_scram_listener_only_when_configured(tmp_path: Path) -> None:
    plain = infra.kafka_server_properties(Settings(data_dir=tmp_path))
    assert "listeners=PLAINTEXT://" in plain
    assert "sasl" not in plain
    props = infra.kafka_server_properties(sasl(data_dir=tmp_path))
    lines = set(props.splitlines())
    assert (
        "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
        in lines
    )
    assert "inter.broker.listener.name=SASL_PLAINTEXT" in lines
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512" in lines
    scram = "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
    jaas = next(line for line in lines if line.startswith(scram))
    assert jaas.endswith('ScramLoginModule required username="rec" password="pw-1";')
    # With the authorizer (tests/unit/test_local_broker_tls.py).
    assert "super.users=User:rec" in lines


@pytest.mark.parametrize(
    ("more", "hint"),
    [
        ({"kafka_sasl_mechanism": "PLAIN"}, "SCRAM only"),
        ({"kafka_username": "a b"}, "user names of letters"),
        ({"kafka_password": 'say "hi"'}, "without quotes"),
    ],
)
def test_local_broker_refuses_what_it_cannot_run(
    tmp_path: Path, more: dict[str, object], hint: str
) -> None:
    with pytest.raises(AuthSetupError, match=hint):
        infra.kafka_server_properties(sasl(data_dir=tmp_path, **more))


def test_a_broker_formatted_without_the_user_or_with_another_password_is_refused(
    tmp_path: Path,
) -> None:
    settings = sasl(data_dir=tmp_path)
    with pytest.raises(AuthSetupError, match="formatted without SCRAM users"):
        check_formatted_user(settings, tmp_path)
    record_formatted_user(settings, tmp_path)
    marker = tmp_path / "scram-user"
    assert marker.stat().st_mode & 0o777 == 0o600
    assert "pw-1" not in marker.read_text()
    check_formatted_user(settings, tmp_path)  # the same user and password: fine
    other = settings.model_copy(
        update={"kafka_password": sasl(kafka_password="pw-2").kafka_password}
    )
    with pytest.raises(AuthSetupError, match="another password for 'rec'"):
        check_formatted_user(other, tmp_path)
    with pytest.raises(AuthSetupError, match="user 'rec', not SCRAM-SHA-512 'ops'"):
        check_formatted_user(settings.model_copy(update={"kafka_username": "ops"}), tmp_path)


def test_local_redis_gets_an_acl_only_with_a_password(tmp_path: Path) -> None:
    assert redis_acl(Settings(redis_url="redis://127.0.0.1:1/0")) is None
    acl = redis_acl(Settings(redis_url="redis://rec:pw@127.0.0.1:1/0"))
    assert acl is not None
    assert acl.splitlines()[0] == "user default off"
    assert acl.splitlines()[1].startswith("user rec on #")
    assert "pw" not in acl.replace("+@all", "")  # a hash, never the password
    only_password = redis_acl(Settings(redis_url="redis://:pw@127.0.0.1:1/0"))
    assert only_password is not None
    assert only_password.startswith("user default on #")
    with pytest.raises(AuthSetupError, match="needs a password"):
        redis_acl(Settings(redis_url="redis://rec@127.0.0.1:1/0"))
