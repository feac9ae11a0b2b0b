"""One frozen, typed settings object for every socialrec process.

Every field can be set from the environment with the ``SOCIALREC_`` prefix, e.g.
``SOCIALREC_KAFKA_BOOTSTRAP=127.0.0.1:19092``. Misconfiguration fails at start-up with a
message naming the variable to fix, never later in the hot path. Settings stays one class in
this one file, so every variable is found here; the checks across settings live beside it
(streams/security_checks.py, streams/config_cluster.py).

>>> s = Settings(top_n=5)
>>> s.topic("events")
'events'
>>> Settings(topic_prefix="t1.").topic("recommendations")
't1.recommendations'
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.events import DEFAULT_WEIGHTS, EventType
from models.shrinkage import DEFAULT_SCALE
from models.state import COOCCURRENCE_CAP, COOCCURRENCE_WINDOW
from streams.config_cluster import cluster_problems, with_cluster_defaults
from streams.security import masked_url
from streams.security_checks import transport_problems

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(SystemExit):
    """Raised (and exits the process) when the configuration cannot work."""


#: Recommendation sources the worker can run beside item-CF and social (streams/sources).
SOURCE_NAMES: tuple[str, ...] = ("mf", "content", "user_cf", "fbt", "followees")
#: Shortest host-link secret accepted: 32 characters of `secrets.token_urlsafe` carry 192 bits.
MIN_SECRET_CHARS = 32


class Settings(BaseSettings):
    """All configuration, read once from ``SOCIALREC_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="SOCIALREC_", frozen=True, extra="forbid")

    # --- servers -----------------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_controller_port: int = Field(default=19093, ge=1, le=65535)
    redis_url: str = "redis://127.0.0.1:16379/0"
    redis_timeout_s: float = Field(
        default=5.0, gt=0, le=120, description="longest a Redis call may take before retrying"
    )
    data_dir: Path = PROJECT_ROOT / ".socialrec"
    kafka_version: str = "4.1.1"
    kafka_heap: str = "-Xms256m -Xmx768m"

    # --- scaled-out layout (`socialrec infra up --cluster`, docs/cluster.md) -----------------
    # Its defaults for the server fields above, and its checks: streams/config_cluster.py.
    cluster: bool = Field(
        default=False,
        description="one broker per SOCIALREC_KAFKA_BOOTSTRAP address (infra up starts them, "
        "their controllers on SOCIALREC_KAFKA_CONTROLLER_PORT and the next ports) and a Redis "
        "Cluster; topics get the cluster's replication, producers acks=all and idempotence",
    )
    cluster_replication_factor: int = Field(
        default=3, ge=1, description="every topic's replicas in cluster mode (at most the brokers)"
    )
    cluster_min_insync_replicas: int = Field(
        default=2,
        ge=1,
        description="replicas an acks=all write waits for; below the replication factor, so "
        "writes go on while one broker is down",
    )
    redis_cluster_port: int = Field(
        default=17000,
        ge=1,
        le=65535 - 10_000 - 5,
        description="the first of the Redis Cluster's six consecutive ports (three masters, one "
        "replica each); each node's cluster bus listens 10000 above its port",
    )
    redis_cluster: bool = Field(
        default=False,
        description="keep the state on the Redis Cluster (SOCIALREC_REDIS_CLUSTER_NODES) instead "
        "of the Redis at SOCIALREC_REDIS_URL, whose user and password still apply: workers, "
        "learners, the API; on by default in cluster mode",
    )
    redis_cluster_nodes: str = Field(
        default="",
        description="the Redis Cluster's nodes to start from, host:port,...; empty: the six on "
        "this machine from SOCIALREC_REDIS_CLUSTER_PORT (`infra up --cluster`)",
    )

    # --- transport security (streams/security.py) ----------------------------------------------
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        default="PLAINTEXT", description="how every Kafka client talks to the brokers"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_username: str = Field(default="", description="the SASL user (SASL_* protocols)")
    kafka_password: SecretStr = Field(default=SecretStr(""), description="the SASL password")
    kafka_password_file: Path | None = Field(
        default=None, description="a file holding the SASL password (a mounted secret)"
    )
    kafka_ssl_ca_file: Path | None = Field(
        default=None,
        description="CA certificates (PEM) the brokers' certificates chain to; unset: the system's",
    )
    kafka_ssl_cert_file: Path | None = Field(
        default=None, description="client certificate (PEM), for brokers that require one"
    )
    kafka_ssl_key_file: Path | None = Field(default=None, description="its private key (PEM)")
    kafka_frontend_username: str = Field(
        default="",
        description="a SASL user for shops' frontends that may only produce to `events` "
        "(`socialrec infra up` creates it on the local broker, `socialrec topics` grants it)",
    )
    kafka_frontend_password: SecretStr = Field(default=SecretStr(""), description="its password")
    kafka_frontend_password_file: Path | None = Field(
        default=None, description="a file holding its password (a mounted secret)"
    )
    kafka_broker_ssl_cert_file: Path | None = Field(
        default=None,
        description="the local broker's certificate chain (PEM) for `socialrec infra up` with "
        "SSL or SASL_SSL; unset: infra up makes a local CA and certificate in the data dir",
    )
    kafka_broker_ssl_key_file: Path | None = Field(
        default=None, description="its private key (unencrypted PKCS#8 PEM, BEGIN PRIVATE KEY)"
    )
    redis_password_file: Path | None = Field(
        default=None,
        description="a file holding the Redis password (the user stays in SOCIALREC_REDIS_URL)",
    )
    redis_ssl_ca_file: Path | None = Field(
        default=None,
        description="CA certificates (PEM) for a rediss:// server; unset: the system's CAs",
    )
    redis_server_ssl_cert_file: Path | None = Field(
        default=None,
        description="the local Redis's certificate chain (PEM) for `socialrec infra up` with a "
        "rediss:// URL; unset: infra up makes a local CA and certificate in the data dir",
    )
    redis_server_ssl_key_file: Path | None = Field(
        default=None, description="its private key (unencrypted PKCS#8 PEM, BEGIN PRIVATE KEY)"
    )

    # --- topics ------------------------------------------------------------------------------
    topics_file: Path = PROJECT_ROOT / "topics.yaml"
    topic_prefix: str = ""

    # --- worker ------------------------------------------------------------------------------
    app_id: str = "socialrec"
    web_port: int = Field(default=6066, ge=1, le=65535)
    web_host: str = "127.0.0.1"
    session_timeout_s: float = Field(
        default=10.0, ge=6.0, le=300.0, description="how fast a dead worker's partitions move"
    )
    batch_max: int = Field(
        default=5000,
        ge=1,
        le=100_000,
        description="events taken in at once: behind, the worker takes up to this many and "
        "ranks one list per user for all of theirs (docs/live-path.md)",
    )
    step_max: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="events of one partition in one atomic state step: bounds how long a "
        "step holds Redis (about 0.03 ms an event); a larger batch is applied in rounds",
    )
    batch_within_ms: int = Field(default=5, ge=1, le=10_000)
    max_event_bytes: int = Field(default=8192, ge=256)
    max_future_skew_s: float = Field(default=3600.0, ge=0)
    min_event_ts: float = Field(default=946_684_800.0, description="2000-01-01T00:00:00Z")

    events_consumer: Literal["aiokafka", "faust"] = Field(
        default="aiokafka",
        description="what consumes `events`: an aiokafka consumer service keeping its offsets "
        "with the state (streams/runtime/consumer.py), or a Faust agent (for comparison)",
    )
    learner: Literal["child", "inline", "external"] = Field(
        default="child",
        description="where the sources learn: a child process of the worker, inside its "
        "batches, or a `socialrec learner` run separately",
    )

    # --- recommender -------------------------------------------------------------------------
    event_weights: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=lambda: {t.value: w for t, w in DEFAULT_WEIGHTS.items()}
    )
    top_n: int = Field(default=10, ge=1, le=200)
    history_size: int = Field(default=30, ge=1, le=1000)
    neighbours: int = Field(default=50, ge=1, le=1000)
    cooccurrence_cap: int = Field(default=COOCCURRENCE_CAP, ge=1)
    cooccurrence_window: int = Field(default=COOCCURRENCE_WINDOW, ge=1, le=1000)
    neighbours_ttl_s: float = Field(
        default=2.0,
        ge=0,
        description="how long a worker keeps an item's neighbour list before reading it again "
        "(0: read for every list)",
    )
    popular_ttl_s: float = Field(
        default=1.0,
        ge=0,
        description="how long a worker keeps the most popular items (the lists' long-run "
        "fallback) before reading them again (0: read with every batch)",
    )
    pool_refresh_s: float = Field(
        default=1.0,
        ge=0,
        description="the learner refreshes a user's candidate pools at most this often; a user "
        "acting again sooner is refreshed when the interval is up (0: every batch)",
    )
    dedupe_window: int = Field(default=10_000, ge=1)
    affinity_cap: float = Field(default=15.0, gt=0)
    similarity_shrinkage: float = Field(default=1000.0, ge=0)
    similarity_shrinkage_scale: float = Field(
        default=DEFAULT_SCALE,
        ge=0,
        description="> 0: item-CF's λ is learnt, this many times the mean item norm² "
        "(models.shrinkage); 0: the fixed similarity_shrinkage",
    )
    popularity_cap: int = Field(default=10_000, ge=1)
    popularity_half_life_s: float = Field(default=6 * 3600.0, gt=0)
    exclude_items: Annotated[frozenset[str], NoDecode] = frozenset()
    exclude_seen: bool = True
    category_cap: int = Field(default=5, ge=0, le=200, description="0 turns the cap off")
    explore_slots: int = Field(
        default=1, ge=0, le=5, description="list positions for long-tail or new items"
    )
    learn_blend: bool = Field(
        default=True,
        description="learn the blend weights from what users act on next "
        "(streams/runtime/knobs.py); "
        "false: the fixed configured weights (like eval's --fixed-knobs)",
    )
    learn_blend_users: int = Field(
        default=10_000,
        ge=1,
        description="users whose last list's candidates the blend learner keeps in memory",
    )
    learn_blend_persist_s: float = Field(
        default=60.0, gt=0, description="how often the learnt weights are saved and logged"
    )
    sources: Annotated[tuple[str, ...], NoDecode] = Field(
        default=SOURCE_NAMES, description="recommendation sources beside item-CF and social"
    )
    seen_window_s: float = Field(default=30 * 86400.0, gt=0)
    seen_cap: int = Field(default=500, ge=1)
    model_version: str = "hybrid-1"

    # --- trending ----------------------------------------------------------------------------
    trending_window_s: float = Field(default=60.0, gt=0, le=3600)
    trending_bucket_s: float = Field(default=5.0, gt=0, le=60)
    trending_interval_s: float = Field(default=0.5, gt=0, le=10, description="publish period")
    trending_top_k: int = Field(default=20, ge=1, le=200)
    live_max_connections: int = Field(
        default=1_000, ge=1, description="open live-page event streams per worker at most"
    )
    live_max_connections_per_stream: int = Field(
        default=200, ge=1, description="open live-page event streams of one stream at most"
    )

    # --- serving apart from processing (`socialrec api`, streams/http/serving.py) -----------------
    api_port: int = Field(
        default=6067,
        ge=1,
        le=65535,
        description="the port of `socialrec api` (on SOCIALREC_WEB_HOST); each copy its own, "
        "or one shared with SOCIALREC_API_REUSE_PORT",
    )
    api_reuse_port: bool = Field(
        default=False,
        description="`socialrec api` binds with SO_REUSEPORT: copies on one port, the kernel "
        "spreads the connections",
    )

    # --- HTTP access (streams/http/auth.py, streams/http/guard.py) --------------------------------
    auth: Literal["keys", "off"] = Field(
        default="keys",
        description="keys: every route but /health needs an API key or a host link, and the "
        "worker refuses to start without any; off: everything open (local demo and tests)",
    )
    api_keys: str = Field(
        default="",
        repr=False,
        description="key entries `<role>[:<id>] sha256:<hex digest>`, separated by commas or "
        "newlines (`socialrec keys new` prints one)",
    )
    api_keys_file: Path | None = Field(
        default=None, description="a file of key entries, one a line, # comments"
    )
    host_link_secret: str = Field(
        default="",
        repr=False,
        description="signs hosts' live-page links (`socialrec host-link`); empty: no links",
    )
    api_rate_per_s: float = Field(default=100.0, gt=0, description="requests per second per key")
    api_rate_burst: float = Field(default=200.0, ge=1, description="a key's bucket size")
    api_costly_concurrency: int = Field(
        default=4, ge=1, description="/why and merchant requests in flight per worker at most"
    )

    @field_validator("event_weights", mode="before")
    @classmethod
    def _parse_weights(cls, value: object) -> object:
        """Accept ``view=1,like=3`` or a JSON object from the environment."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                import orjson

                return orjson.loads(text)
            pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("write weights as 'view=1,like=3' or a JSON object")
            return {k.strip(): float(v) for k, v in pairs}
        return value

    @field_validator("event_weights")
    @classmethod
    def _known_types(cls, value: dict[str, float]) -> dict[str, float]:
        known = {t.value for t in EventType}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {sorted(known)}")
        return {t: float(value.get(t, DEFAULT_WEIGHTS[EventType(t)])) for t in sorted(known)}

    @field_validator("sources", mode="before")
    @classmethod
    def _parse_sources(cls, value: object) -> object:
        """``mf,content`` from the environment; empty turns them all off."""
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(SOURCE_NAMES))
        if unknown:
            raise ValueError(f"unknown sources {unknown}; known: {list(SOURCE_NAMES)}")
        return tuple(dict.fromkeys(value))

    @field_validator("exclude_items", mode="before")
    @classmethod
    def _parse_excludes(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("host_link_secret")
    @classmethod
    def _long_secret(cls, value: str) -> str:
        if value and len(value) < MIN_SECRET_CHARS:
            raise ValueError(
                f"must be at least {MIN_SECRET_CHARS} characters (or empty: no host links); "
                "make one with `socialrec keys link-secret`"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("kafka_bootstrap", "redis_cluster_nodes")
    @classmethod
    def _bootstrap_pairs(cls, value: str) -> str:
        for part in value.split(",") if value else ():
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"entry {part!r} is not host:port")
        return value

    @model_validator(mode="before")
    @classmethod
    def _cluster_defaults(cls, data: object) -> object:
        """In cluster mode, the layout's own defaults for what the caller left unset."""
        return with_cluster_defaults(data)

    @model_validator(mode="after")
    def _transport_works(self) -> Settings:
        problems = transport_problems(self) + cluster_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The Redis URL may carry its password: reprs and logs show it masked.
        for name, value in super().__repr_args__():
            yield name, masked_url(value) if name == "redis_url" else value

    def topic(self, logical_name: str) -> str:
        """The real Kafka topic name for a logical name from topics.yaml."""
        return f"{self.topic_prefix}{logical_name}"

    @property
    def kafka_port(self) -> int:
        return self.kafka_ports[0]

    @property
    def kafka_ports(self) -> tuple[int, ...]:
        """Every bootstrap address's port (one broker each in cluster mode)."""
        return tuple(int(part.rpartition(":")[2]) for part in self.kafka_bootstrap.split(","))

    @property
    def producer_acks(self) -> int:
        """-1 (every in-sync replica, at least cluster_min_insync_replicas) on a replicated
        cluster; 1 (the leader) on one broker, where "all" would mean the same but slower."""
        return -1 if self.cluster else 1

    @property
    def redis_port(self) -> int:
        tail = self.redis_url.split("://", 1)[1].split("/", 1)[0]
        return int(tail.rpartition(":")[2]) if ":" in tail else 6379

    def weight(self, event_type: EventType) -> float:
        return self.event_weights[event_type.value]


def redis_url_with_db(url: str, db: int) -> str:
    """The same Redis server, another database (tests use 15, the bench claims 14 down to 1,
    the demo and a default worker 0).

    >>> redis_url_with_db("redis://127.0.0.1:16379/0", 15)
    'redis://127.0.0.1:16379/15'
    >>> redis_url_with_db("unix:///tmp/redis.sock?db=2", 15)
    'unix:///tmp/redis.sock?db=15'
    """
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        query["db"] = str(db)
        return f"{url.partition('?')[0]}?{urlencode(query)}"  # urlunsplit drops the "//"
    return urlunsplit(parts._replace(path=f"/{db}"))


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning a validation error into a message that says what to fix."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            if field:
                lines.append(f"  SOCIALREC_{field.upper()}: {err['msg']}")
            else:  # a check across settings: each problem names its variables
                lines += [f"  {p}" for p in err["msg"].removeprefix("Value error, ").splitlines()]
        raise ConfigError("socialrec: invalid configuration:\n" + "\n".join(lines)) from None
