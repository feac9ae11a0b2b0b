"""The monitoring files, checked without a worker: promtool on the config and rules (including
the rule unit tests of alerts_test.yml), dashboards well-formed and pointing at the provisioned
datasource, every metric they name exists, and the catalogue in monitoring/README.md lists every
metric and alert. tests/e2e/test_monitoring.py evaluates the same queries against live data."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from streams.http.access import run_keys
from streams.metrics import WorkerMetrics
from tests.conftest import unavailable
from tests.monitoring_files import (
    MONITORING,
    SCRAPE_KEY_FILE,
    alert_rules,
    dashboards,
    panel_queries,
    recording_rules,
)

METRIC_NAME = re.compile(r"\b(socialrec(?::[a-z0-9_]+)+|socialrec_[a-z0-9_]+)\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool not found: install Debian's prometheus package (make setup)")
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool_accepts_the_monitoring_files(args: list[str], tmp_path: Path) -> None:
    # A copy, with the operator key file the scrape job reads made as the README says (promtool
    # checks that it exists; the checkout has none).
    for name in ("prometheus.yml", "alerts.yml", "alerts_test.yml"):
        shutil.copy(MONITORING / name, tmp_path / name)
    key_file = tmp_path / SCRAPE_KEY_FILE
    assert run_keys("new", "operator", None, key_file) == 0
    assert key_file.stat().st_mode & 0o077 == 0  # the operator's key: its owner's only
    done = subprocess.run(
        [_promtool(), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_scrape_job_reads_the_operator_key_from_a_file() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"socialrec-worker", "socialrec-api"}
    for job in jobs.values():
        assert job["authorization"] == {"type": "Bearer", "credentials_file": SCRAPE_KEY_FILE}


def _exported_names() -> set[str]:
    names = {"up"}
    family: Metric
    for family in WorkerMetrics().registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    names.update(rule["record"] for rule in recording_rules())
    return names


def test_every_metric_the_dashboards_and_rules_name_exists() -> None:
    exported = _exported_names()
    exprs = [q.expr for q in panel_queries()] + [r["expr"] for r in alert_rules()]
    exprs += [r["expr"] for r in recording_rules()]
    named = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert named, "no metric found in the dashboards: the pattern is broken"
    assert named - exported == set()


def test_dashboards_are_complete_and_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]["uid"]
    boards = dashboards()
    assert set(boards) == {"operations", "model-quality", "trending", "merchants", "fairness"}
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    for name, board in boards.items():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in board["panels"]:
            if panel["type"] == "text":
                continue
            assert panel["datasource"]["uid"] == provisioned, f"{name}: {panel['title']}"
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == provisioned
                assert target["expr"].strip()
    for query in panel_queries():
        assert "$" not in query.expr, f"unsubstituted variable in {query}"


def test_every_alert_has_a_severity_and_says_what_to_do() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_the_catalogue_lists_every_metric_and_alert() -> None:
    readme = (MONITORING / "README.md").read_text()
    listed = set(re.findall(r"^\| `([A-Za-z_:]+)` \|", readme, flags=re.MULTILINE))
    families = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in WorkerMetrics().registry.collect()
    }
    assert families - listed == set(), "metrics missing from monitoring/README.md"
    assert {rule["alert"] for rule in alert_rules()} - listed == set()
