"""Every dashboard panel and every alert rule, evaluated by a real Prometheus that scrapes a real
worker under simulator traffic.

The test starts its own Prometheus (a temp data dir, a free port, a config generated from
monitoring/prometheus.yml with the worker's port and a 1 s scrape and rule interval, and the
real alerts.yml), produces a catalogue and simulated events, then asks Prometheus's HTTP API
for every query. A query that errors (a typo, a wrong function, mismatched labels) or returns
no series (a metric the worker does not export, a label value that never appears) fails.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.simulator import generate_events, generate_world
from streams.config import Settings
from streams.http.access import run_keys
from streams.tools.processes import free_port
from streams.tools.simulate import produce, produce_catalog
from tests.conftest import unavailable
from tests.e2e.conftest import ARTIFACTS, WorkerProcess, running
from tests.monitoring_files import (
    MONITORING,
    SCRAPE_KEY_FILE,
    alert_rules,
    panel_queries,
    recording_rules,
)

#: A comparison with a constant at the end of an expression: `... > 0.01`, `== 0`,
#: `> (14.4 * 0.01)`.
TRAILING_COMPARISON = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*\(?[0-9.\s*]+\)?\s*$")


@dataclass
class PrometheusProcess:
    """A Prometheus server of the test's own, scraping one worker."""

    binary: str
    worker_port: int
    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        """monitoring/prometheus.yml, pointed at the test's worker, scraping every second."""
        config: dict[str, Any] = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config["rule_files"] = [str(MONITORING / name) for name in config["rule_files"]]
        (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "socialrec-worker"]
        job["static_configs"] = [{"targets": [f"127.0.0.1:{self.worker_port}"]}]
        config["scrape_configs"] = [job]  # no `socialrec api` runs here
        return config

    def start(self) -> None:
        self.port = free_port()
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config()))
        ARTIFACTS.mkdir(exist_ok=True)
        with (ARTIFACTS / f"prometheus-{self.port}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def _get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # a bad query answers 400 with the error in JSON
            return json.loads(exc.read())

    async def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError("prometheus exited; see test-artifacts/prometheus-*.log")

        def fetch() -> bool:
            url = f"http://127.0.0.1:{self.port}/-/ready"  # plain text, 200 once ready
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        return await asyncio.to_thread(fetch)

    async def query(self, expr: str) -> dict[str, Any]:
        """The API's answer: ``{"status": "success", "data": {"result": [...]}}`` or an error."""
        path = "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer: dict[str, Any] = await asyncio.to_thread(self._get, path)
        return answer

    async def series(self, expr: str) -> list[dict[str, Any]]:
        answer = await self.query(expr)
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    async def value(self, expr: str) -> float | None:
        found = await self.series(expr)
        return float(found[0]["value"][1]) if found else None


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Prometheus's directory: its config, data, and the operator key the config names,
    made as monitoring/README.md says (``socialrec keys new --key-file``), with the worker's
    keys file beside it."""
    with tempfile.TemporaryDirectory(prefix="socialrec-prometheus-") as name:
        path = Path(name)
        assert run_keys("new", "operator", None, path / SCRAPE_KEY_FILE, path / "api-keys") == 0
        yield path


@pytest.fixture
async def worker(settings: Settings, workdir: Path) -> AsyncIterator[WorkerProcess]:
    """A worker that requires keys: Prometheus scrapes it with the operator's."""
    process = WorkerProcess(
        settings,
        extra_env={"SOCIALREC_AUTH": "keys", "SOCIALREC_API_KEYS_FILE": str(workdir / "api-keys")},
        operator_key=(workdir / SCRAPE_KEY_FILE).read_text().strip(),
    )
    async with running(process):
        yield process


@pytest.fixture
async def prometheus(worker: WorkerProcess, workdir: Path) -> AsyncIterator[PrometheusProcess]:
    binary = shutil.which("prometheus")
    if binary is None:
        unavailable("prometheus not found: install Debian's prometheus package (make setup)")
    server = PrometheusProcess(binary, worker.web_port, workdir)
    server.start()
    try:
        deadline = time.monotonic() + 30
        while not await server.ready():
            assert time.monotonic() < deadline, "prometheus not ready in 30 s"
            await asyncio.sleep(0.2)
        yield server
    finally:
        server.stop()


def underlying(expr: str) -> list[str]:
    """What an alert compares, without the comparison.

    A healthy system makes ``up == 0`` or ``rate(...) > 0.01`` return nothing, which would
    prove nothing about the selector; its operands must return data instead. Each operand of
    a top-level ``and`` loses its trailing comparison with a constant.

    >>> underlying("a > (14.4 * 0.01)\\nand b{x='1'} > 2")
    ['a', "b{x='1'}"]
    """
    return [TRAILING_COMPARISON.sub("", part).strip() for part in re.split(r"\s+and\s+", expr)]


async def _wait(check: Any, what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.5)


async def test_every_dashboard_panel_and_alert_rule_returns_data(
    settings: Settings, worker: WorkerProcess, prometheus: PrometheusProcess
) -> None:
    world = generate_world(11, users=40, items=150)
    await produce_catalog(settings, world)
    rate = 150.0
    events = generate_events(
        world, 11, 1500, start_ts=time.time(), mean_gap_s=1 / rate, id_prefix="mon-"
    )
    load = asyncio.create_task(produce(settings, world, events, rate))

    async def has(expr: str) -> bool:
        found = await prometheus.value(expr)
        return found is not None and found > 0

    try:
        await _wait(lambda: has('up{job="socialrec-worker"}'), "the first scrape")
        await _wait(lambda: has("sum(socialrec_live_requests_total)"), "live hit-rate requests")
        await _wait(lambda: has("count(socialrec_consumer_lag_messages)"), "the lag probe")
        await _wait(
            lambda: has("count(socialrec:event_to_publish_slow:ratio_rate5m >= 0)"),
            "the SLO recording rules",
        )
        await _wait(lambda: has("sum(socialrec_trending_published_total)"), "trending lists")
        await _wait(lambda: has("sum(socialrec_recommended_items_total)"), "recommendations")
        # At least two scrapes with traffic in every rate window the dashboards use.
        await asyncio.sleep(3)
    finally:
        sent = await load
    assert sent == 1500

    failures = []
    queries = panel_queries()
    for query in queries:
        answer = await prometheus.query(query.expr)
        if answer["status"] != "success":
            failures.append(f"{query.dashboard} / {query.panel}: {answer.get('error')}")
        elif not answer["data"]["result"]:
            failures.append(f"{query.dashboard} / {query.panel}: no data for {query.expr}")

    checked = 0
    for rule in alert_rules():
        # The whole expression must evaluate (it may be empty: the system is healthy)...
        answer = await prometheus.query(rule["expr"])
        if answer["status"] != "success":
            failures.append(f"alert {rule['alert']}: {answer.get('error')}")
        # ...and what it compares must return data.
        for operand in underlying(rule["expr"]):
            assert not TRAILING_COMPARISON.search(operand)
            if not await prometheus.series(operand):
                failures.append(f"alert {rule['alert']}: no data for {operand}")
            checked += 1
    for rule in recording_rules():
        if not await prometheus.series(rule["record"]):
            failures.append(f"recording rule {rule['record']}: no series recorded")
    assert not failures, "\n".join(failures)
    assert len(queries) >= 40
    assert checked >= len(alert_rules())

    measured = {
        "live_hit_rate": await prometheus.value("max(socialrec_live_hit_rate)"),
        "live_requests": await prometheus.value("sum(socialrec_live_requests_total)"),
        "max_lag": await prometheus.value(
            "max(max_over_time(socialrec_consumer_lag_messages[5m]))"
        ),
        "event_to_publish_p99_s": await prometheus.value(
            "histogram_quantile(0.99, sum by (le) (rate("
            "socialrec_event_to_publish_seconds_bucket[5m])))"
        ),
        "gini": await prometheus.value("max(socialrec_exposure_gini)"),
        "long_tail": await prometheus.value("max(socialrec_exposure_long_tail_ratio)"),
        "coverage": await prometheus.value("max(socialrec_catalog_coverage_ratio)"),
    }
    for stage in ("validate", "state", "sources", "assembly", "publish"):
        measured[f"stage_{stage}_p99_s"] = await prometheus.value(
            "histogram_quantile(0.99, sum by (le) (rate("
            f'socialrec_stage_seconds_bucket{{stage="{stage}"}}[5m])))'
        )
    (ARTIFACTS / "monitoring-e2e.json").write_text(json.dumps(measured, indent=2))
    assert (measured["live_requests"] or 0.0) > 0
    assert 0.0 <= (measured["gini"] or 0.0) <= 1.0
