"""topics.yaml parsing, validation and drift detection, without a broker."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from streams.config import PROJECT_ROOT
from streams.ops.topics.drift import ApplyReport, ObservedTopic, TopicAction, find_drift
from streams.ops.topics.spec import TopicsFileError, TopicSpec, load_topics, parse_topics

VALID_TOPIC: dict[str, Any] = {
    "partitions": 6,
    "replication_factor": 1,
    "key": "user_id",
    "cleanup_policy": "delete",
    "retention_ms": 604_800_000,
    "config": {"message.timestamp.type": "LogAppendTime", "max.message.bytes": 1048576},
    "schema": "{event_id, type, user_id}",
}


def document(**changes: Any) -> dict[str, Any]:
    """A one-topic document ('events') with some fields replaced (None deletes a field)."""
    body = copy.deepcopy(VALID_TOPIC)
    for key, value in changes.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    return {"topics": {"events": body}}


def test_project_topics_yaml_is_valid_and_complete() -> None:
    specs = {s.name: s for s in load_topics(PROJECT_ROOT / "topics.yaml")}
    assert {"events", "catalog", "recommendations", "events.dlq"} <= set(specs)
    assert specs["events"].key == "user_id"
    assert specs["recommendations"].key == "user_id"
    assert specs["catalog"].cleanup_policy == "compact"
    assert specs["recommendations"].cleanup_policy == "compact,delete"
    for spec in specs.values():
        assert spec.partitions >= 1
        assert spec.replication_factor == 1
        assert spec.schema
        assert spec.broker_configs()["cleanup.policy"] == spec.cleanup_policy
        assert spec.broker_configs()["retention.ms"] == str(spec.retention_ms)


def test_config_values_become_kafka_strings() -> None:
    raw = document(config={"max.message.bytes": 1048576, "preallocate": True, "x.ratio": 0.5})
    (spec,) = parse_topics(raw)
    assert spec.config == {"max.message.bytes": "1048576", "preallocate": "true", "x.ratio": "0.5"}
    assert isinstance(spec, TopicSpec)


@pytest.mark.parametrize("policy", ["delete,compact", "compact, delete", " compact,delete "])
def test_cleanup_policy_order_and_spaces_do_not_matter(policy: str) -> None:
    (spec,) = parse_topics(document(cleanup_policy=policy))
    assert spec.cleanup_policy == "compact,delete"


def test_empty_config_is_allowed() -> None:
    (spec,) = parse_topics(document(config={}))
    assert spec.config == {}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"partitions": 0}, "partitions"),
        ({"partitions": "six"}, "partitions"),
        ({"partitions": True}, "partitions"),
        ({"replication_factor": 0}, "replication_factor"),
        ({"retention_ms": -2}, "retention_ms"),
        ({"retention_ms": "7d"}, "retention_ms"),
        ({"cleanup_policy": "forever"}, "cleanup_policy"),
        ({"key": ""}, "key"),
        ({"schema": 42}, "schema"),
        ({"config": ["a", "b"]}, "config"),
        ({"config": {"retention.ms": "1"}}, "config.retention.ms"),
        ({"config": {"Bad Key": "1"}}, "config.Bad Key"),
        ({"config": {"segment.bytes": [1]}}, "config.segment.bytes"),
        ({"partitions": None}, "partitions"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_field_names_topic_and_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(TopicsFileError) as caught:
        parse_topics(document(**changes))
    message = str(caught.value)
    assert "'events'" in message
    assert field in message


@pytest.mark.parametrize(
    "raw",
    [None, [], {"topics": {}}, {"topics": []}, {"topics": {"x": 1}}, {"topic": {}}],
)
def test_bad_document_shape_is_rejected(raw: object) -> None:
    with pytest.raises(TopicsFileError):
        parse_topics(raw)


def test_bad_topic_name_is_named() -> None:
    raw = {"topics": {"events/v2": VALID_TOPIC}}
    with pytest.raises(TopicsFileError, match="events/v2"):
        parse_topics(raw)


def test_load_topics_reports_the_file(tmp_path: Path) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text("topics: {events: {partitions: [}\n")
    with pytest.raises(TopicsFileError, match=r"topics\.yaml: not valid YAML"):
        load_topics(path)
    with pytest.raises(TopicsFileError, match="cannot read"):
        load_topics(tmp_path / "missing.yaml")


# --- drift -------------------------------------------------------------------------------------

SPEC = parse_topics(document())[0]


def observed(partitions: int = 6, replication: int = 1, **configs: str) -> ObservedTopic:
    current = {**SPEC.broker_configs(), **{k.replace("_", "."): v for k, v in configs.items()}}
    return ObservedTopic(partitions, replication, current, frozenset(current))


def test_matching_topic_has_no_drift() -> None:
    assert find_drift("events", SPEC, observed()) == []


def test_fewer_partitions_grow() -> None:
    (action,) = find_drift("events", SPEC, observed(partitions=2))
    assert action.kind == "add_partitions"
    assert action.fixable
    assert "2 to 6" in action.detail


def test_more_partitions_cannot_be_fixed() -> None:
    (action,) = find_drift("events", SPEC, observed(partitions=12))
    assert action.kind == "cannot_fix"
    assert not action.fixable


def test_replication_factor_difference_is_reported_only() -> None:
    (action,) = find_drift("events", SPEC, observed(replication=3))
    assert action.kind == "cannot_fix"
    assert "replication factor is 3" in action.detail


def test_config_difference_is_altered() -> None:
    (action,) = find_drift("events", SPEC, observed(retention_ms="1000"))
    assert action.kind == "alter_configs"
    assert "retention.ms '1000' -> '604800000'" in action.detail


def test_cleanup_policy_compares_as_a_set() -> None:
    (spec,) = parse_topics(document(cleanup_policy="compact,delete"))
    seen = ObservedTopic(6, 1, {**spec.broker_configs(), "cleanup.policy": "delete,compact"})
    assert find_drift("events", spec, seen) == []


def test_undeclared_override_is_removed() -> None:
    seen = observed()
    seen = ObservedTopic(
        6, 1, {**seen.configs, "segment.bytes": "1"}, seen.overrides | {"segment.bytes"}
    )
    (action,) = find_drift("events", SPEC, seen)
    assert action.kind == "alter_configs"
    assert "segment.bytes" in action.detail


def test_report_lines() -> None:
    quiet = ApplyReport(actions=(), checked=("events", "catalog"))
    assert quiet.lines() == ["2 topics match topics.yaml; no changes"]
    assert not quiet.changed
    grow = TopicAction("events", "add_partitions", "grow from 2 to 6")
    stuck = TopicAction("events", "cannot_fix", "replication factor is 3")
    report = ApplyReport(actions=(grow, stuck), checked=("events",), dry_run=True)
    assert report.lines() == [
        "events: would add partitions: grow from 2 to 6",
        "events: CANNOT FIX: replication factor is 3",
    ]
    assert report.problems == (stuck,)
    assert not report.changed  # a dry run changes nothing


class _LaggingAdmin:
    """An admin client whose brokers disagree for a moment after a create.

    The first describe (from the visibility check) reaches a broker that knows the topic,
    the second (from the observation) one that does not yet; then all agree.
    """

    def __init__(self, spec: TopicSpec) -> None:
        self.spec = spec
        self.describes = 0

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        self.describes += 1
        code = 3 if self.describes == 2 else 0
        partitions = [{"replicas": [1]}] * self.spec.partitions
        return [{"topic": n, "error_code": code, "partitions": partitions} for n in names]

    async def describe_configs(self, resources: list[Any]) -> list[Any]:
        entries = [
            {"config_names": k, "config_value": v, "config_source": 1}
            for k, v in self.spec.broker_configs().items()
        ]
        body = {
            "resources": [
                {"resource_name": r.name, "error_code": 0, "config_entries": entries}
                for r in resources
            ]
        }
        return [type("Response", (), {"to_object": lambda self: body})()]


async def test_settle_waits_out_a_broker_that_has_not_seen_a_new_topic_yet() -> None:
    from streams.ops.topics.apply import _settle

    (spec,) = parse_topics({"topics": {"events": VALID_TOPIC}})
    admin = _LaggingAdmin(spec)
    await _settle(admin, {spec.name: spec})
    assert admin.describes == 4  # seen, not seen (waited), seen, observed
