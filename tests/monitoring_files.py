"""The monitoring files as data, for the static checks (tests/unit/test_monitoring_config.py)
and the check against a real Prometheus (tests/e2e/test_monitoring.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "monitoring"
DASHBOARDS = MONITORING / "grafana" / "dashboards"
#: The operator key the scrape job sends, relative to prometheus.yml.
SCRAPE_KEY_FILE = "secrets/operator.key"
#: What Grafana substitutes for its interval variables when the tests evaluate a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m"}


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str  # with Grafana's variables substituted


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panel_queries() -> list[PanelQuery]:
    queries = []
    for name, board in dashboards().items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                queries.append(PanelQuery(name, panel["title"], expr))
    return queries


def rules() -> list[dict[str, Any]]:
    """Every rule of alerts.yml (recording and alerting), in file order."""
    data = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recording_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "record" in rule]
