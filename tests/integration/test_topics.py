"""``socialrec topics apply`` against the real broker: create, stay idempotent, fix drift.

Each test works under its own topic prefix (a sub-prefix of the ``settings`` fixture's, so the
fixture deletes everything afterwards).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.config import Settings
from streams.ops import topics


@pytest.fixture
def fresh(settings: Settings) -> Settings:
    """Settings with a prefix nothing has been applied under yet."""
    return settings.model_copy(
        update={"topic_prefix": f"{settings.topic_prefix}{uuid.uuid4().hex[:6]}."}
    )


async def layout(admin: Any, name: str) -> tuple[int, dict[str, str], set[str]]:
    """Partition count, config values and per-topic overrides of one topic."""
    (meta,) = await admin.describe_topics([name])
    (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    (resource,) = response.to_object()["resources"]
    entries = resource["config_entries"]
    values = {e["config_names"]: e["config_value"] for e in entries}
    overrides = {e["config_names"] for e in entries if e["config_source"] == 1}
    return len(meta["partitions"]), values, overrides


async def test_apply_creates_everything_then_changes_nothing(
    fresh: Settings, kafka_admin: Any
) -> None:
    specs = topics.load_topics(fresh.topics_file)

    first = await topics.apply_topics(fresh)
    assert sorted(a.topic for a in first.actions) == sorted(fresh.topic(s.name) for s in specs)
    assert {a.kind for a in first.actions} == {"create"}

    second = await topics.apply_topics(fresh)
    assert second.actions == ()
    assert not second.changed
    assert second.lines() == [f"{len(specs)} topics match topics.yaml; no changes"]

    for spec in specs:
        partitions, values, overrides = await layout(kafka_admin, fresh.topic(spec.name))
        assert partitions == spec.partitions
        for key, value in spec.broker_configs().items():
            assert values[key] == value
        assert overrides == set(spec.broker_configs())


async def test_dry_run_reports_but_changes_nothing(fresh: Settings, kafka_admin: Any) -> None:
    report = await topics.apply_topics(fresh, dry_run=True)
    assert report.actions
    assert all(a.kind == "create" for a in report.actions)
    assert not report.changed
    existing = set(await kafka_admin.list_topics())
    assert not any(t.startswith(fresh.topic_prefix) for t in existing)


async def test_drift_is_fixed(fresh: Settings, kafka_admin: Any) -> None:
    """Too few partitions, a wrong retention and an undeclared override are all reconciled."""
    events = fresh.topic("events")
    await kafka_admin.create_topics(
        [
            NewTopic(
                events,
                num_partitions=2,
                replication_factor=1,
                topic_configs={"retention.ms": "1000", "segment.bytes": "1048576"},
            )
        ]
    )

    report = await topics.apply_topics(fresh)
    mine = {a.kind: a for a in report.actions if a.topic == events}
    assert set(mine) == {"add_partitions", "alter_configs"}
    assert "2 to 6" in mine["add_partitions"].detail
    assert "retention.ms '1000' -> '604800000'" in mine["alter_configs"].detail
    assert "segment.bytes" in mine["alter_configs"].detail
    assert not report.problems

    spec = next(s for s in topics.load_topics(fresh.topics_file) if s.name == "events")
    partitions, values, overrides = await layout(kafka_admin, events)
    assert partitions == spec.partitions
    assert values["retention.ms"] == "604800000"
    assert values["message.timestamp.type"] == "LogAppendTime"
    assert "segment.bytes" not in overrides

    again = await topics.apply_topics(fresh)
    assert again.actions == ()


async def test_drift_that_cannot_be_fixed_is_reported(fresh: Settings, kafka_admin: Any) -> None:
    """More partitions than declared cannot be undone: reported, and the CLI exits 1."""
    dlq = fresh.topic("events.dlq")
    await kafka_admin.create_topics([NewTopic(dlq, num_partitions=3, replication_factor=1)])

    report = await topics.apply_topics(fresh)
    (problem,) = report.problems
    assert problem.topic == dlq
    assert "has 3 partitions" in problem.detail
    # The config half of the drift is still fixed.
    assert any(a.topic == dlq and a.kind == "alter_configs" for a in report.actions)

    again = await topics.apply_topics(fresh)
    assert [a.kind for a in again.actions] == ["cannot_fix"]


def test_cli_exit_codes(fresh: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert topics.run_apply(fresh) == 0
    assert "create" in capsys.readouterr().out
    assert topics.run_apply(fresh) == 0
    assert "no changes" in capsys.readouterr().out


def test_unreachable_broker_is_a_clear_error(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    assert topics.run_apply(nowhere) == 1
    assert "socialrec infra up" in capsys.readouterr().err
