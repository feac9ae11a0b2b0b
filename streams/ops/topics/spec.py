"""topics.yaml as typed specs: read the file, validate every field, name what is wrong.

>>> spec = parse_topics({"topics": {"events": {
...     "partitions": 6, "replication_factor": 1, "key": "user_id",
...     "cleanup_policy": "delete", "retention_ms": 604800000,
...     "config": {"max.message.bytes": 1048576}, "schema": "{event_id, ...}"}}})[0]
>>> spec.broker_configs()["retention.ms"], spec.broker_configs()["max.message.bytes"]
('604800000', '1048576')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

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


class TopicsFileError(ValueError):
    """topics.yaml is malformed; the message names the topic and field."""


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
