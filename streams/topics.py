"""topics.yaml as typed specs, and ``socialrec topics apply``: make the broker match the file.

topics.yaml is the source of truth. ``apply_topics`` creates what is missing and reconciles
drift on what exists: a partition count can only grow (Kafka cannot shrink one), configs are
altered in place, and a replication-factor difference is reported but never changed (that
needs a reassignment plan, not a reconcile loop). Running it twice changes nothing the
second time.

>>> spec = parse_topics({"topics": {"events": {
...     "partitions": 6, "replication_factor": 1, "key": "user_id",
...     "cleanup_policy": "delete", "retention_ms": 604800000,
...     "config": {"max.message.bytes": 1048576}, "schema": "{event_id, ...}"}}})[0]
>>> spec.broker_configs()["retention.ms"], spec.broker_configs()["max.message.bytes"]
('604800000', '1048576')
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from streams.config import Settings
from streams.security import kafka_client_kwargs, kafka_error_hint

CLEANUP_POLICIES = frozenset({"delete", "compact", "compact,delete"})
TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
CONFIG_KEY = re.compile(r"^[a-z][a-z0-9.]*[a-z0-9]$")
REQUIRED_FIELDS = (
    "partitions",
    "replication_factor",
    "key",
    "cleanup_policy",
    "retention_ms",
    "config",
    "schema",
)
# Keys set from dedicated fields; declaring them again under ``config`` would be ambiguous.
RESERVED_CONFIG_KEYS = frozenset({"cleanup.policy", "retention.ms"})
# DescribeConfigs ``config_source`` for a per-topic override (DYNAMIC_TOPIC_CONFIG).
TOPIC_OVERRIDE_SOURCE = 1
ADMIN_TIMEOUT_MS = 30_000
SETTLE_TIMEOUT_S = 15.0
SETTLE_POLL_S = 0.05

ActionKind = Literal["create", "add_partitions", "alter_configs", "grant", "cannot_fix"]


class TopicsFileError(ValueError):
    """topics.yaml is malformed; the message names the topic and field."""


class TopicsApplyError(RuntimeError):
    """The broker refused a change or could not be reached; the message says which."""


class TopicNotVisibleError(TopicsApplyError):
    """The broker that answered does not know the topic (yet, right after a create)."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic as declared in topics.yaml (logical name, without the test prefix)."""

    name: str
    partitions: int
    replication_factor: int
    key: str
    cleanup_policy: str
    retention_ms: int
    config: Mapping[str, str] = field(default_factory=dict, hash=False)
    schema: str = ""

    def broker_configs(self) -> dict[str, str]:
        """Every topic-level config this spec pins on the broker, as Kafka strings."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **self.config,
        }


@dataclass(frozen=True)
class TopicAction:
    """One difference between topics.yaml and the broker, and whether it was (or will be) fixed.

    ``detail`` names configs and counts only; it never contains message data.
    """

    topic: str
    kind: ActionKind
    detail: str

    @property
    def fixable(self) -> bool:
        return self.kind != "cannot_fix"


@dataclass(frozen=True)
class ApplyReport:
    """What ``apply_topics`` found and did. In a dry run nothing was changed."""

    actions: tuple[TopicAction, ...]
    checked: tuple[str, ...]
    dry_run: bool = False

    @property
    def changes(self) -> tuple[TopicAction, ...]:
        return tuple(a for a in self.actions if a.fixable)

    @property
    def problems(self) -> tuple[TopicAction, ...]:
        return tuple(a for a in self.actions if not a.fixable)

    @property
    def changed(self) -> bool:
        return bool(self.changes) and not self.dry_run

    def lines(self) -> list[str]:
        verb = "would " if self.dry_run else ""
        out = [f"{a.topic}: {verb}{a.kind.replace('_', ' ')}: {a.detail}" for a in self.changes]
        out += [f"{a.topic}: CANNOT FIX: {a.detail}" for a in self.problems]
        if not self.actions:
            out.append(f"{len(self.checked)} topics match topics.yaml; no changes")
        return out


# --- topics.yaml -------------------------------------------------------------------------------


def load_topics(path: Path) -> list[TopicSpec]:
    """Read and validate topics.yaml; raise TopicsFileError naming the topic and field."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise TopicsFileError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise TopicsFileError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return parse_topics(document)
    except TopicsFileError as exc:
        raise TopicsFileError(f"{path}: {exc}") from None


#: Topics whose records carry a user's events: an erased user must not come back from them.
TOPICS_WITH_USER_EVENTS = ("events", "events.dlq", "shares")
#: Kafka's segment.ms when a topic sets none (log.roll.hours: a week).
KAFKA_SEGMENT_MS = 604_800_000
#: Beyond the longest time a record can outlive its topic's retention, for records appended
#: just before it ran out and the broker's retention check (every 5 minutes by default).
ERASURE_MARK_MARGIN_S = 86_400


def kept_for_ms(spec: TopicSpec) -> int:
    """The longest a record of the topic can be read after it was appended, or -1 (forever).

    Kafka deletes whole segments, once the newest record of one is older than retention.ms; a
    segment takes appends for up to segment.ms, so its first record lasts up to both.

    >>> kept_for_ms(TopicSpec("shares", 1, 1, "user_id", "delete", 86_400_000))
    691200000
    >>> kept_for_ms(TopicSpec("shares", 1, 1, "k", "delete", 86_400_000, {"segment.ms": "3600000"}))
    90000000
    """
    if spec.retention_ms < 0:
        return -1
    return spec.retention_ms + int(spec.config.get("segment.ms", KAFKA_SEGMENT_MS))


def erasure_mark_ttl_s(specs: list[TopicSpec]) -> int:
    """How long an erasure mark must last: as long as any topic may still hold the user's
    events (a replay from the beginning, a lag of days, lost offsets, a DLQ replay: its
    retention plus its segment time, ``kept_for_ms``), plus a day. Infinite retention means
    marks that never expire (0).

    >>> day = {"segment.ms": "86400000"}
    >>> spec = lambda name, ms: TopicSpec(name, 1, 1, "user_id", "delete", ms, day)
    >>> erasure_mark_ttl_s([spec("events", 604_800_000), spec("events.dlq", 1_209_600_000)])
    1382400
    """
    kept = [kept_for_ms(s) for s in specs if s.name in TOPICS_WITH_USER_EVENTS]
    if any(ms < 0 for ms in kept):
        return 0
    return max(kept, default=0) // 1000 + ERASURE_MARK_MARGIN_S


def parse_topics(document: object) -> list[TopicSpec]:
    """Validate an already-parsed topics.yaml document."""
    if not isinstance(document, dict) or set(document) != {"topics"}:
        raise TopicsFileError("the file must contain exactly one top-level key, 'topics'")
    topics = document["topics"]
    if not isinstance(topics, dict) or not topics:
        raise TopicsFileError("'topics' must be a non-empty mapping of topic name to settings")
    return [_parse_topic(name, body) for name, body in topics.items()]


def _parse_topic(name: object, body: object) -> TopicSpec:
    if not isinstance(name, str) or not TOPIC_NAME.match(name):
        raise TopicsFileError(
            f"topic {name!r}: the name must be 1-200 characters of letters, digits, '.', '_', '-'"
        )
    if not isinstance(body, dict):
        raise TopicsFileError(f"topic {name!r}: expected a mapping of fields")
    missing = [f for f in REQUIRED_FIELDS if f not in body]
    if missing:
        raise TopicsFileError(f"topic {name!r}: missing field(s) {', '.join(missing)}")
    unknown = sorted(str(k) for k in body if k not in REQUIRED_FIELDS)
    if unknown:
        raise TopicsFileError(f"topic {name!r}: unknown field(s) {', '.join(unknown)}")
    return TopicSpec(
        name=name,
        partitions=_int_field(name, "partitions", body["partitions"], minimum=1),
        replication_factor=_int_field(
            name, "replication_factor", body["replication_factor"], minimum=1
        ),
        key=_text_field(name, "key", body["key"]),
        cleanup_policy=_cleanup_policy(name, body["cleanup_policy"]),
        retention_ms=_int_field(name, "retention_ms", body["retention_ms"], minimum=-1),
        config=_config_field(name, body["config"]),
        schema=_text_field(name, "schema", body["schema"]),
    )


def _int_field(topic: str, name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TopicsFileError(
            f"topic {topic!r} field {name!r}: expected an integer >= {minimum}, got {value!r}"
        )
    return value


def _text_field(topic: str, name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TopicsFileError(f"topic {topic!r} field {name!r}: expected non-empty text")
    return value.strip()


def _cleanup_policy(topic: str, value: object) -> str:
    """Accept 'delete', 'compact' or both (in either order, spaces allowed)."""
    parts = sorted(p.strip() for p in value.split(",")) if isinstance(value, str) else []
    policy = ",".join(parts)
    if policy not in CLEANUP_POLICIES:
        raise TopicsFileError(
            f"topic {topic!r} field 'cleanup_policy': expected one of "
            f"{sorted(CLEANUP_POLICIES)}, got {value!r}"
        )
    return policy


def _config_field(topic: str, value: object) -> dict[str, str]:
    """Topic configs as Kafka strings; YAML numbers and booleans are converted."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TopicsFileError(f"topic {topic!r} field 'config': expected a mapping")
    config: dict[str, str] = {}
    for key, raw in value.items():
        where = f"topic {topic!r} field 'config.{key}'"
        if not isinstance(key, str) or not CONFIG_KEY.match(key):
            raise TopicsFileError(f"{where}: not a Kafka config name")
        if key in RESERVED_CONFIG_KEYS:
            raise TopicsFileError(f"{where}: set it with the cleanup_policy/retention_ms field")
        if isinstance(raw, bool):
            config[key] = "true" if raw else "false"
        elif isinstance(raw, str | int | float):
            config[key] = str(raw)
        else:
            raise TopicsFileError(f"{where}: expected a string or number, got {raw!r}")
    return config


# --- reconcile ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObservedTopic:
    """A topic as the broker reports it; ``overrides`` are the per-topic config keys set."""

    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict, hash=False)
    overrides: frozenset[str] = frozenset()


async def apply_topics(settings: Settings, dry_run: bool = False) -> ApplyReport:
    """Create missing topics and fix drift so the broker matches topics.yaml.

    Names on the broker are ``settings.topic(logical name)``, so tests can isolate themselves
    with a prefix. In a dry run the report lists what would change and nothing is sent.
    """
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    specs = [replicated_for(settings, spec) for spec in load_topics(settings.topics_file)]
    admin = AIOKafkaAdminClient(
        **kafka_client_kwargs(settings),
        client_id="socialrec-topics",
        request_timeout_ms=ADMIN_TIMEOUT_MS,
    )
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        await admin.close()
        raise TopicsApplyError(await kafka_error_hint(settings, exc)) from exc
    try:
        return await _reconcile(admin, settings, specs, dry_run)
    finally:
        await admin.close()


def replicated_for(settings: Settings, spec: TopicSpec) -> TopicSpec:
    """The topic as the settings' Kafka should hold it: topics.yaml's replication on one
    broker; on a cluster (SOCIALREC_CLUSTER) the cluster's replication factor, and its
    ``min.insync.replicas`` pinned on the topic so acks=all writes survive a broker's loss
    whatever the brokers' default.

    >>> from streams.config import Settings
    >>> spec = load_topics(Settings().topics_file)[0]
    >>> three = "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003"
    >>> clustered = replicated_for(Settings(cluster=True, kafka_bootstrap=three), spec)
    >>> clustered.replication_factor, clustered.broker_configs()["min.insync.replicas"]
    (3, '2')
    """
    if not settings.cluster:
        return spec
    return replace(
        spec,
        replication_factor=settings.cluster_replication_factor,
        config={**spec.config, "min.insync.replicas": str(settings.cluster_min_insync_replicas)},
    )


async def _reconcile(
    admin: Any, settings: Settings, specs: list[TopicSpec], dry_run: bool
) -> ApplyReport:
    by_name = {settings.topic(s.name): s for s in specs}
    existing = set(await admin.list_topics())
    present = [name for name in by_name if name in existing]
    missing = [name for name in by_name if name not in existing]
    created = missing
    if missing and not dry_run:
        # The broker's metadata can lag a topic created moments ago (by us or anyone), so a
        # "missing" topic may already exist: treat those as present and check them for drift.
        raced = await _create(admin, {name: by_name[name] for name in missing})
        if raced:
            await _settle(admin, {name: None for name in raced})
        created = [name for name in missing if name not in raced]
        present += raced
    actions = [TopicAction(name, "create", _describe_new(by_name[name])) for name in created]
    observed = await _observe(admin, present)
    grow: dict[str, int] = {}
    alter: dict[str, dict[str, str]] = {}
    for name in present:
        drift = find_drift(name, by_name[name], observed[name])
        actions += drift
        if any(a.kind == "add_partitions" for a in drift):
            grow[name] = by_name[name].partitions
        if any(a.kind == "alter_configs" for a in drift):
            alter[name] = by_name[name].broker_configs()
    if not dry_run:
        await _grow(admin, grow)
        await _alter(admin, alter)
        await _settle(admin, {name: by_name[name] for name in [*created, *grow, *alter]})
    if settings.kafka_frontend_username:  # the frontends' producer user (streams/kafka_acl.py)
        actions += await _grant_frontend(admin, settings, dry_run)
    return ApplyReport(tuple(actions), tuple(by_name), dry_run)


async def _grant_frontend(admin: Any, settings: Settings, dry_run: bool) -> list[TopicAction]:
    from streams.kafka_acl import KafkaAclError, grant_frontend

    try:
        granted = await grant_frontend(admin, settings, dry_run)
    except KafkaAclError as exc:
        raise TopicsApplyError(str(exc)) from None
    principal = f"User:{settings.kafka_frontend_username}"
    detail = f"{' and '.join(granted)} to {principal}"
    return [TopicAction(settings.topic("events"), "grant", detail)] if granted else []


async def _settle(admin: Any, topics: Mapping[str, TopicSpec | None]) -> None:
    """Wait until the broker's metadata shows our changes, so apply returns only when done.

    KRaft acknowledges a change once the controller commits it; the broker that answers
    metadata and config requests catches up a few milliseconds later. Without this wait an
    immediate second apply (or a producer) could see the old state. ``None`` as a spec means
    "just wait until the topic is visible".
    """
    if not topics:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    names = list(topics)
    while True:
        metadata = await admin.describe_topics(names)
        visible = {t["topic"] for t in metadata if t["error_code"] == 0 and t["partitions"]}
        if visible >= set(names):
            try:
                observed = await _observe(admin, names)
            except TopicNotVisibleError:
                # Each request may reach another broker, one that has not caught up yet.
                observed = None
            if observed is not None and not any(
                action.fixable
                for name, spec in topics.items()
                if spec is not None
                for action in find_drift(name, spec, observed[name])
            ):
                return
        if loop.time() > deadline:
            raise TopicsApplyError(
                f"changes to {', '.join(sorted(names))} were accepted but not visible after "
                f"{SETTLE_TIMEOUT_S:.0f}s; run `socialrec topics apply` again"
            )
        await asyncio.sleep(SETTLE_POLL_S)


def _describe_new(spec: TopicSpec) -> str:
    configs = ", ".join(f"{k}={v}" for k, v in sorted(spec.broker_configs().items()))
    return f"{spec.partitions} partitions, replication {spec.replication_factor}, {configs}"


def find_drift(name: str, spec: TopicSpec, seen: ObservedTopic) -> list[TopicAction]:
    """Compare one declared topic with what the broker reports."""
    actions: list[TopicAction] = []
    if seen.partitions < spec.partitions:
        actions.append(
            TopicAction(name, "add_partitions", f"grow from {seen.partitions} to {spec.partitions}")
        )
    elif seen.partitions > spec.partitions:
        actions.append(
            TopicAction(
                name,
                "cannot_fix",
                f"has {seen.partitions} partitions, topics.yaml declares {spec.partitions}; "
                "Kafka cannot remove partitions (recreate the topic or update topics.yaml)",
            )
        )
    if seen.replication_factor != spec.replication_factor:
        actions.append(
            TopicAction(
                name,
                "cannot_fix",
                f"replication factor is {seen.replication_factor}, topics.yaml declares "
                f"{spec.replication_factor}; change it with a partition reassignment",
            )
        )
    wanted = spec.broker_configs()
    diffs = [
        f"{key} {seen.configs.get(key)!r} -> {value!r}"
        for key, value in sorted(wanted.items())
        if not _same_config(key, seen.configs.get(key), value)
    ]
    diffs += [f"remove undeclared override {key}" for key in sorted(seen.overrides - set(wanted))]
    if diffs:
        actions.append(TopicAction(name, "alter_configs", "; ".join(diffs)))
    return actions


def _same_config(key: str, current: str | None, wanted: str) -> bool:
    """Compare config values the way Kafka means them (cleanup.policy is an unordered list)."""
    if current is None:
        return False
    if key == "cleanup.policy":
        return sorted(p.strip() for p in current.split(",")) == wanted.split(",")
    return current == wanted


async def _observe(admin: Any, names: list[str]) -> dict[str, ObservedTopic]:
    """Partition count, replication factor and configs of existing topics."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    if not names:
        return {}
    metadata = await admin.describe_topics(names)
    layout: dict[str, tuple[int, int]] = {}
    for topic in metadata:
        _raise_for_code(topic["error_code"], f"describing topic {topic['topic']}")
        partitions = topic["partitions"]
        replicas = max((len(p["replicas"]) for p in partitions), default=0)
        layout[topic["topic"]] = (len(partitions), replicas)
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    )
    configs: dict[str, dict[str, str]] = {}
    overrides: dict[str, set[str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            topic = resource["resource_name"]
            _raise_for_code(resource["error_code"], f"describing configs of {topic}")
            entries = resource["config_entries"]
            configs[topic] = {e["config_names"]: e["config_value"] for e in entries}
            overrides[topic] = {
                e["config_names"]
                for e in entries
                if e.get("config_source") == TOPIC_OVERRIDE_SOURCE
            }
    return {
        name: ObservedTopic(
            partitions=layout[name][0],
            replication_factor=layout[name][1],
            configs=configs.get(name, {}),
            overrides=frozenset(overrides.get(name, set())),
        )
        for name in names
    }


async def _create(admin: Any, specs: dict[str, TopicSpec]) -> list[str]:
    """Create topics; return the names the broker says already exist (created concurrently)."""
    from aiokafka.admin import NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    response = await admin.create_topics(
        [
            NewTopic(
                name=name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                topic_configs=spec.broker_configs(),
            )
            for name, spec in specs.items()
        ],
        timeout_ms=ADMIN_TIMEOUT_MS,
    )
    raced = []
    for item in response.to_object()["topic_errors"]:
        if item["error_code"] == TopicAlreadyExistsError.errno:
            raced.append(item["topic"])
            continue
        _raise_for_code(
            item["error_code"], f"creating topic {item['topic']}", item.get("error_message")
        )
    return raced


async def _grow(admin: Any, totals: dict[str, int]) -> None:
    from aiokafka.admin import NewPartitions
    from aiokafka.errors import KafkaError

    if not totals:
        return
    try:
        await admin.create_partitions(
            {name: NewPartitions(total_count=count) for name, count in totals.items()},
            timeout_ms=ADMIN_TIMEOUT_MS,
        )
    except KafkaError as exc:
        raise TopicsApplyError(f"adding partitions failed: {exc}") from exc


async def _alter(admin: Any, configs: dict[str, dict[str, str]]) -> None:
    """Set each topic's full declared config set.

    AlterConfigs (non-incremental) replaces a topic's overrides with exactly the set sent, so
    sending the whole declared set also removes overrides topics.yaml does not declare.
    """
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    if not configs:
        return
    responses = await admin.alter_configs(
        [
            ConfigResource(ConfigResourceType.TOPIC, name, configs=values)
            for name, values in configs.items()
        ]
    )
    for response in responses:
        for resource in response.to_object()["resources"]:
            _raise_for_code(
                resource["error_code"],
                f"altering configs of {resource['resource_name']}",
                resource.get("error_message"),
            )


def _raise_for_code(code: int, doing: str, message: str | None = None) -> None:
    from aiokafka.errors import UnknownTopicOrPartitionError, for_code

    if code:
        error = for_code(code)
        text = f"{doing}: {error.__name__}{f' ({message})' if message else ''}"
        if error is UnknownTopicOrPartitionError:
            raise TopicNotVisibleError(text)
        raise TopicsApplyError(text)


async def delete_topics_with_prefix(settings: Settings) -> list[str]:
    """Delete every topic whose name starts with ``settings.topic_prefix`` (test clean-up).

    The declared topics are deleted by name as well as everything listed under the prefix:
    a topic created moments ago may not be in the broker's metadata (and so the listing)
    yet, but the controller deletes it by name. Refuses an empty prefix, so it can never
    wipe a real deployment's topics.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    prefix = settings.topic_prefix
    if not prefix:
        raise ValueError("refusing to delete topics without a topic_prefix")
    try:
        declared = {settings.topic(spec.name) for spec in load_topics(settings.topics_file)}
    except TopicsFileError:
        declared = set()
    admin = AIOKafkaAdminClient(
        **kafka_client_kwargs(settings),
        client_id="socialrec-topics",
        request_timeout_ms=ADMIN_TIMEOUT_MS,
    )
    try:
        await admin.start()
        listed = {t for t in await admin.list_topics() if t.startswith(prefix)}
        response = await admin.delete_topics(sorted(declared | listed), timeout_ms=ADMIN_TIMEOUT_MS)
        return sorted(
            item["topic"]
            for item in response.to_object()["topic_error_codes"]
            if item["error_code"] == 0
        )
    finally:
        await admin.close()


def run_apply(settings: Settings, dry_run: bool = False) -> int:
    """``socialrec topics apply``: print the report; exit 1 if drift could not be fixed."""
    try:
        report = asyncio.run(apply_topics(settings, dry_run=dry_run))
    except (TopicsFileError, TopicsApplyError) as exc:
        print(f"socialrec topics: error: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 1 if report.problems else 0
