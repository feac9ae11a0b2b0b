"""`socialrec api` beside a real worker: it serves what the worker published (the user's list
as on `recommendations`, the trending list as on `trending`), with the worker's guard and JSON,
and its own metrics, without a Kafka consumer of its own."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.config import Settings
from streams.http.auth import entry_line
from streams.security import kafka_client_kwargs
from streams.tools.processes import ManagedProcess, api_process, free_port
from tests.e2e.conftest import ARTIFACTS, WorkerProcess, consume_until, produce_json, wait_for

USER = "u-serving-5e1f"
KEYS = {"frontend": "sr_it_frontend", "merchant": "sr_it_merchant_m1", "operator": "sr_it_op"}


@pytest.fixture
async def api(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[str, ManagedProcess]]:
    """A worker (routes open, as the suite's workers are) and a `socialrec api` with keys."""
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(
        f"{entry_line(KEYS['frontend'], 'frontend')}\n"
        f"{entry_line(KEYS['merchant'], 'merchant', 'm1')}\n"
        f"{entry_line(KEYS['operator'], 'operator')}\n"
    )
    worker = WorkerProcess(settings)
    await worker.start()
    port = free_port()
    process = api_process(
        settings,
        port,
        ARTIFACTS / f"api-{uuid.uuid4().hex[:8]}.log",
        {"SOCIALREC_AUTH": "keys", "SOCIALREC_API_KEYS_FILE": str(keys_file)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await process.start()
        await process.wait_http(f"{base}/health")
        yield base, process
    finally:
        await process.stop()
        worker.stop()


async def _get(
    http: aiohttp.ClientSession, path: str, role: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {KEYS[role]}"} if role else {}
    async with http.get(path, headers=headers) as response:
        assert response.content_type == "application/json", path
        return response.status, await response.json()


async def test_api_serves_what_the_worker_published_to_callers_with_rights(
    settings: Settings, api: tuple[str, ManagedProcess]
) -> None:
    base, process = api
    now = time.time()
    events = [
        {"event_id": f"s{n}", "type": kind, "user_id": USER, "item_id": item, "ts": now}
        for n, (kind, item) in enumerate([("view", "p1"), ("cart", "p1"), ("view", "c1")])
    ]
    producer = AIOKafkaProducer(**kafka_client_kwargs(settings), linger_ms=2)
    await producer.start()
    try:
        await produce_json(producer, settings, events)
    finally:
        await producer.stop()
    recs = f"/api/v1/users/{USER}/recommendations"
    async with aiohttp.ClientSession(base) as http:

        async def list_published() -> bool:
            status, body = await _get(http, recs, "frontend")
            return status == 200 and (body.get("trigger") or {}).get("event_id") == "s2"

        await wait_for(list_published, what="the user's published list, read by the api")
        _, served = await _get(http, recs, "frontend")
        assert served["served_from"] == "published"
        records = await consume_until(
            settings,
            "recommendations",
            lambda rs: any(r.key == USER.encode() and b'"s2"' in r.value for r in rs),
        )
        on_topic = [orjson.loads(r.value) for r in records if r.key == USER.encode()][-1]
        assert {k: v for k, v in served.items() if k != "served_from"} == on_topic

        async def trending_published() -> bool:
            _, body = await _get(http, "/api/v1/trending/global", "frontend")
            return [i["item_id"] for i in body["items"]] == ["p1", "c1"]

        await wait_for(trending_published, what="the global trending list, read by the api")
        _, trending = await _get(http, "/api/v1/trending/global", "frontend")
        records = await consume_until(
            settings,
            "trending",
            lambda rs: any(
                r.key == b"global" and orjson.loads(r.value)["as_of"] == trending["as_of"]
                for r in rs
            ),
        )
        published = next(
            orjson.loads(r.value)
            for r in records
            if r.key == b"global" and orjson.loads(r.value)["as_of"] == trending["as_of"]
        )
        # The list as published; only its freshness is the reader's own (now - newest event).
        assert {k: v for k, v in trending.items() if k != "freshness_s"} == {
            k: v for k, v in published.items() if k != "freshness_s"
        }
        status, top = await _get(http, "/api/v1/trending/global?k=1", "frontend")
        assert (status, [i["item_id"] for i in top["items"]]) == (200, ["p1"])

        # Without credentials, or with a key whose role may not read users: refused.
        status, body = await _get(http, recs)
        assert status == 401
        assert body["error"].startswith("credentials required")
        assert (await _get(http, recs, "merchant"))[0] == 403
        assert (await _get(http, f"/api/v1/users/{USER}/why/p1", "frontend"))[0] == 403
        status, why = await _get(http, f"/api/v1/users/{USER}/why/p1", "operator")
        assert (status, why["status"]) == (200, "excluded")
        assert (await _get(http, "/api/v1/merchants/m2", "merchant"))[0] == 403
        assert (await _get(http, "/metrics"))[0] == 401

        operator = {"Authorization": f"Bearer {KEYS['operator']}"}
        async with http.get("/metrics", headers=operator) as r:
            assert r.status == 200
            metrics = await r.text()
    served_ok = 'socialrec_http_responses_total{route="/api/v1/users/{user_id}/recommendations",'
    assert served_ok + 'status="200"}' in metrics
    assert 'reason="missing",route="/api/v1/users/{user_id}/recommendations"} 1.0' in metrics
    assert "socialrec_http_request_seconds_bucket" in metrics
    assert USER not in metrics
    await process.stop()
    log = process.log_path.read_text(errors="replace")
    for secret in (*KEYS.values(), USER):
        assert secret not in log
