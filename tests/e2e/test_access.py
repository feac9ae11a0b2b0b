"""A real worker with keys: real keys and links work, a missing or wrong one is refused, the
per-stream cap of live pages holds, and the worker's log names no key, link or user."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from streams.config import Settings
from streams.http.auth import entry_line, link_query
from streams.http.live import TOO_MANY_PAGES
from tests.e2e.conftest import WorkerProcess

SECRET = "e2e-host-link-secret-of-forty-characters"
USER = "u-e2e-7f3a"
KEYS = {"frontend": "sr_e2e_frontend", "merchant": "sr_e2e_merchant_m1", "operator": "sr_e2e_op"}


async def _get(http: aiohttp.ClientSession, path: str, key: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.get(path, headers=headers) as response:
        assert response.content_type == "application/json", path
        return response.status, await response.json()


async def test_keys_and_links_open_their_routes_only(settings: Settings, tmp_path: Path) -> None:
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(
        "# e2e keys\n"
        f"{entry_line(KEYS['frontend'], 'frontend')}\n"
        f"{entry_line(KEYS['merchant'], 'merchant', 'm1')}\n"
        f"{entry_line(KEYS['operator'], 'operator')}\n"
    )
    worker = WorkerProcess(
        settings,
        extra_env={
            "SOCIALREC_AUTH": "keys",
            "SOCIALREC_API_KEYS_FILE": str(keys_file),
            "SOCIALREC_HOST_LINK_SECRET": SECRET,
            "SOCIALREC_LIVE_MAX_CONNECTIONS_PER_STREAM": "1",
        },
        operator_key=KEYS["operator"],  # the readiness check reads /metrics with it
    )
    await worker.start()
    link = link_query(SECRET, "s1", int(time.time()) + 600)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{worker.web_port}") as http:
            status, body = await _get(http, f"/api/v1/users/{USER}/recommendations")
            assert status == 401
            assert body["error"].startswith("credentials required")
            status, body = await _get(
                http, f"/api/v1/users/{USER}/recommendations", KEYS["frontend"]
            )
            assert (status, body["user_id"], body["served_from"]) == (200, USER, "computed")
            assert (await _get(http, f"/api/v1/users/{USER}/why/p1", KEYS["frontend"]))[0] == 403
            assert (await _get(http, f"/api/v1/users/{USER}/why/p1", KEYS["operator"]))[0] == 200
            assert (await _get(http, "/api/v1/merchants/m1", KEYS["merchant"]))[0] == 200
            assert (await _get(http, "/api/v1/merchants/m2", KEYS["merchant"]))[0] == 403
            assert (await _get(http, "/metrics"))[0] == 401
            assert (await _get(http, "/health"))[0] == 200

            async with http.get(f"/live/s1?{link}") as page:
                assert (page.status, page.content_type) == (200, "text/html")
            assert (await _get(http, f"/live/s2?{link}"))[0] == 403
            events = await http.get(f"/live/s1/events?{link}")
            assert events.content_type == "text/event-stream"
            await events.content.readuntil(b"\n\n")  # subscribed
            status, body = await _get(http, f"/live/s1/events?{link}")  # this stream is full
            assert (status, body["error"]) == (503, TOO_MANY_PAGES)
            other = await http.get(
                "/live/s2/events", headers={"Authorization": f"Bearer {KEYS['operator']}"}
            )
            assert other.status == 200  # another stream is not
            other.close()
            events.close()
        text = await worker.metrics_text() or ""
        refused = {
            reason: sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("socialrec_http_refusals_total{") and f'"{reason}"' in line
            )
            for reason in ("missing", "role", "scope", "connections")
        }
        assert refused == {"missing": 2, "role": 1, "scope": 2, "connections": 1}
    finally:
        worker.stop()
    assert worker.log_path is not None
    log = worker.log_path.read_text(errors="replace")
    for secret in (*KEYS.values(), link.rpartition("sig=")[2], SECRET, USER):
        assert secret not in log


async def test_a_worker_without_keys_does_not_start(settings: Settings) -> None:
    worker = WorkerProcess(settings, extra_env={"SOCIALREC_AUTH": "keys"})
    worker.spawn()
    assert worker.process is not None
    assert worker.process.wait(timeout=60) != 0
    assert worker.log_path is not None
    assert "no API keys configured" in worker.log_path.read_text()
