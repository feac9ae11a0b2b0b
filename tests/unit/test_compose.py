"""docker-compose.yml cannot run here (no Docker engine), so it is checked statically:
valid against the Compose Specification, images pinned, worker wired to the services."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from streams.config import Settings
from streams.ops.infra import kafka_cluster_id_is_valid
from streams.redis_cluster import cluster_nodes

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    if not SCHEMA.exists():
        pytest.skip("../shared/schemas/compose-spec.json is not beside this clone")
    # The schema says draft-07 (without the trailing '#' jsonschema looks up), so the
    # validator is named explicitly.
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(compose)


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"{name} has no image"
        tag = image.rpartition(":")[2]
        assert ":" in image, f"{name}: {image} has no tag"
        assert tag not in ("latest", ""), f"{name}: {image} is not pinned"


def test_worker_points_at_the_services_in_the_file(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = services["worker"]["environment"]
    assert env["SOCIALREC_KAFKA_BOOTSTRAP"].split(":")[0] in services
    assert urlsplit(env["SOCIALREC_REDIS_URL"]).hostname in services
    for name in ("kafka", "redis", "worker"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of a service's bind mounts (short syntax)."""
    mounts = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        mounts[container] = host
    return mounts


def test_prometheus_gets_its_rules_and_grafana_its_provisioning(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = _mounts(services["prometheus"])
    config_dir = Path(next(c for c in prometheus if c.endswith("prometheus.yml"))).parent
    rules = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())["rule_files"]
    for rule_file in rules:  # relative to the config file, inside the container
        assert str(config_dir / rule_file) in prometheus, f"{rule_file} is not mounted"
    grafana = _mounts(services["grafana"])
    assert grafana["/etc/grafana/provisioning"] == "./monitoring/grafana/provisioning"
    provider = yaml.safe_load(
        (ROOT / "monitoring/grafana/provisioning/dashboards/socialrec.yml").read_text()
    )
    assert grafana[provider["providers"][0]["options"]["path"]] == "./monitoring/grafana/dashboards"
    for host in [*prometheus.values(), *grafana.values()]:
        assert (ROOT / host).exists(), f"{host} is mounted but does not exist"
    datasource = yaml.safe_load(
        (ROOT / "monitoring/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"].split("//")[1].split(":")[0] in services
    assert "healthcheck" in services["grafana"]


def _readme_compose_table() -> list[list[str]]:
    """The rows of the service table in the README's "docker compose" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## docker compose", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]
    return rows[1:]  # without the header


def test_every_port_and_volume_the_readme_names_exists(compose: dict[str, Any]) -> None:
    rows = _readme_compose_table()
    assert {row[0] for row in rows} >= {"kafka", "redis", "worker", "prometheus", "grafana"}
    for service, port, volumes, _ in rows:
        spec = compose["services"][service]
        if port:
            # "host address:host port:container port": the host port is the one a user opens.
            published = {str(p).split(":")[-2] for p in spec.get("ports", [])}
            assert port in published, f"{service}: port {port} not published"
        for volume in filter(None, (v.strip() for v in volumes.split(","))):
            sources = {str(v).split(":")[0] for v in spec.get("volumes", [])}
            assert volume in sources, f"{service}: volume {volume} not mounted"
            if not volume.startswith("./"):
                assert volume in compose.get("volumes", {}), f"named volume {volume} undeclared"
            else:
                assert (ROOT / volume).exists(), f"{volume} is not in the repository"


def test_redis_wants_the_password_every_client_is_given(compose: dict[str, Any]) -> None:
    """Redis starts with an ACL from the secret; every service with the socialrec settings
    logs in as that user with the same secret (the settings refuse an unreadable file)."""
    services = compose["services"]
    redis = services["redis"]
    script = " ".join(redis["command"])
    assert "--aclfile" in script
    assert "user default off" in script
    assert "/run/secrets/redis_password" in script
    assert "redis_password" in redis["secrets"]
    assert "/run/secrets/redis_password" in " ".join(redis["healthcheck"]["test"])
    secret_file = compose["secrets"]["redis_password"]["file"]
    assert secret_file.startswith("./secrets/")
    assert "secrets/" in (ROOT / ".gitignore").read_text().splitlines()
    users = 0
    for name, service in services.items():
        env = service.get("environment", {})
        if "SOCIALREC_REDIS_URL" not in env:
            continue
        users += 1
        url = urlsplit(env["SOCIALREC_REDIS_URL"])
        assert url.username == "socialrec", name
        assert url.password is None, f"{name}: the password belongs in the secret"
        assert env["SOCIALREC_REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password", name
        assert "redis_password" in service.get("secrets", []), name
    assert users >= 3  # topics, worker, simulator


def test_every_published_port_is_bound_to_loopback(compose: dict[str, Any]) -> None:
    """Kafka takes no credentials and the API no authentication here: nothing on other
    interfaces."""
    published = [
        str(port) for service in compose["services"].values() for port in service.get("ports", [])
    ]
    assert published
    assert all(port.startswith("127.0.0.1:") for port in published), published


def _scaled(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if "scaled" in s.get("profiles", [])}


def test_scaled_profile_runs_three_brokers_with_replication_three(
    compose: dict[str, Any],
) -> None:
    """Three combined nodes of one cluster, each its own node id, listener and volume; the
    single stack is untouched (it has no profile, so `docker compose up` runs just it)."""
    scaled = _scaled(compose)
    assert not any("profiles" in compose["services"][n] for n in ("kafka", "redis", "worker"))
    brokers = {n: s["environment"] for n, s in scaled.items() if n.startswith("kafka-")}
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in brokers.values()}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert {env["CLUSTER_ID"] for env in brokers.values()} == {brokers["kafka-1"]["CLUSTER_ID"]}
    assert kafka_cluster_id_is_valid(brokers["kafka-1"]["CLUSTER_ID"])
    for name, env in brokers.items():
        assert env["KAFKA_NODE_ID"] == name.removeprefix("kafka-")
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert scaled[name]["volumes"] == [f"{name}-data:/var/lib/kafka/data"]
        assert f"{name}-data" in compose["volumes"]
        assert "healthcheck" in scaled[name]


def test_scaled_profile_joins_six_redis_nodes_into_a_cluster(compose: dict[str, Any]) -> None:
    scaled = _scaled(compose)
    nodes = sorted(n for n in scaled if n.startswith("redis-node-"))
    assert nodes == [f"redis-node-{i}" for i in range(1, 7)]
    for name in nodes:
        script = " ".join(scaled[name]["command"])
        assert "--cluster-enabled yes" in script
        assert "--aclfile" in script  # the same login as the single Redis
        assert "masterauth" in script  # replicas log in to their masters
        assert "healthcheck" in scaled[name]
    init = scaled["redis-cluster-init"]
    assert sorted(init["depends_on"]) == nodes
    assert "--cluster-replicas 1" in " ".join(init["command"])


def test_scaled_profile_runs_three_workers_on_the_three_brokers(compose: dict[str, Any]) -> None:
    scaled = _scaled(compose)
    workers = scaled["worker-scaled"]
    assert workers["deploy"]["replicas"] == 3
    assert "ports" not in workers  # replicas cannot share a host port
    for name in ("topics-scaled", "worker-scaled", "simulator-scaled"):
        env = scaled[name]["environment"]
        brokers = env["SOCIALREC_KAFKA_BOOTSTRAP"].split(",")
        assert sorted(b.partition(":")[0] for b in brokers) == ["kafka-1", "kafka-2", "kafka-3"]
        # The settings a worker reads from this environment are valid in cluster mode, with
        # the state on the six nodes.
        nodes = env["SOCIALREC_REDIS_CLUSTER_NODES"]
        settings = Settings(
            cluster=env["SOCIALREC_CLUSTER"],
            kafka_bootstrap=",".join(brokers),
            redis_cluster_nodes=nodes,
        )
        assert settings.cluster
        assert settings.redis_cluster
        assert settings.producer_acks == -1
        assert [host for host, _ in cluster_nodes(settings)] == [
            f"redis-node-{i}" for i in range(1, 7)
        ]
    assert workers["depends_on"]["topics-scaled"]["condition"] == "service_completed_successfully"


def test_every_shell_script_parses(compose: dict[str, Any]) -> None:
    """Compose turns ``$$`` into ``$``; what the container's shell then runs must parse."""
    for name, service in compose["services"].items():
        command = service.get("command")
        entry = service.get("entrypoint") or []
        if isinstance(command, list) and (command[:2] == ["sh", "-c"] or entry == ["sh", "-c"]):
            script = command[-1].replace("$$", "$")
            result = subprocess.run(["sh", "-n", "-c", script], capture_output=True, check=False)
            assert result.returncode == 0, f"{name}: {result.stderr.decode()}"
