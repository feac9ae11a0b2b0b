"""The scaled-out layout's settings: its own defaults beside the single servers', a bad value
failing at start-up naming what to fix, and what each broker and topic is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli import build_parser
from streams.config import ConfigError, Settings, load_settings
from streams.ops.infra.cluster_kafka import broker_properties
from streams.ops.topics import load_topics, replicated_for

# The caller's SOCIALREC_* variables must not leak into the defaults checked here.
pytestmark = pytest.mark.usefixtures("clean_environment")


def test_cluster_defaults_sit_beside_the_single_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    single = load_settings()
    monkeypatch.setenv("SOCIALREC_CLUSTER", "true")
    clustered = load_settings()
    assert len(clustered.kafka_ports) == 3
    taken = {*single.kafka_ports, single.kafka_controller_port, single.redis_port}
    controllers = {clustered.kafka_controller_port + i for i in range(3)}
    redis = {clustered.redis_cluster_port + i for i in range(6)}
    assert not taken & ({*clustered.kafka_ports} | controllers | redis)
    assert (single.producer_acks, clustered.producer_acks) == (1, -1)

    monkeypatch.setenv("SOCIALREC_KAFKA_BOOTSTRAP", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3")
    assert load_settings().kafka_ports == (1, 2, 3)  # what is set wins over the defaults


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("SOCIALREC_KAFKA_BOOTSTRAP", "127.0.0.1:1,127.0.0.1:2", "SOCIALREC_KAFKA_BOOTSTRAP"),
        ("SOCIALREC_CLUSTER_MIN_INSYNC_REPLICAS", "3", "SOCIALREC_CLUSTER_MIN_INSYNC_REPLICAS"),
        ("SOCIALREC_REDIS_CLUSTER_PORT", "60000", "SOCIALREC_REDIS_CLUSTER_PORT"),
        ("SOCIALREC_CLUSTER_REPLICATION_FACTOR", "0", "SOCIALREC_CLUSTER_REPLICATION_FACTOR"),
    ],
)
def test_misconfigured_cluster_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv("SOCIALREC_CLUSTER", "1")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert named in str(caught.value)


def test_the_cluster_flag_of_infra_and_topics() -> None:
    parser = build_parser()
    assert parser.parse_args(["infra", "up", "--cluster"]).cluster
    assert parser.parse_args(["topics", "apply", "--cluster"]).cluster
    assert not parser.parse_args(["infra", "down"]).cluster


def test_each_broker_has_its_own_ports_and_logs_and_the_cluster_replication() -> None:
    settings = Settings(cluster=True, data_dir=Path("/d"))
    nodes = [dict(_pairs(broker_properties(settings, n))) for n in (1, 2, 3)]
    for key in ("node.id", "listeners", "log.dirs"):
        assert len({node[key] for node in nodes}) == 3, key
    assert len({node["controller.quorum.voters"] for node in nodes}) == 1
    for node in nodes:
        assert node["default.replication.factor"] == "3"
        assert node["offsets.topic.replication.factor"] == "3"
        assert node["min.insync.replicas"] == node["transaction.state.log.min.isr"] == "2"


def _pairs(properties: str) -> list[tuple[str, str]]:
    lines = [line for line in properties.splitlines() if line and not line.startswith("#")]
    return [(key, value) for key, _, value in (line.partition("=") for line in lines)]


def test_topics_keep_the_file_replication_on_one_broker() -> None:
    single = Settings()
    for spec in load_topics(single.topics_file):
        assert replicated_for(single, spec) == spec
        clustered = replicated_for(Settings(cluster=True), spec)
        assert clustered.replication_factor == 3
        assert clustered.broker_configs() == {**spec.broker_configs(), "min.insync.replicas": "2"}
