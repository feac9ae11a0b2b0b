"""The HTTP API of a real worker: catalog and events through Kafka, answers over HTTP.

Every answer is also checked against the OpenAPI description the worker serves, so the
document cannot drift from what the handlers return. Latencies of each endpoint are measured
here against the real Redis and printed (``-s``) for the README.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from streams.config import Settings
from tests.e2e.conftest import WorkerProcess, consume_until, produce_json, wait_for

CATALOG = [
    {"item_id": "p1", "title": "Smartphone X", "category": "phones", "merchant_id": "m1"},
    {
        "item_id": "p2",
        "title": "5G 手机",
        "category": "phones",
        "brand": "华为",
        "merchant_id": "m2",
    },
    {"item_id": "p3", "title": "华为 智能手机 256GB", "category": "phones", "merchant_id": "m1"},
    {"item_id": "c1", "title": "Smartphone case", "category": "accessories", "merchant_id": "m1"},
    {"item_id": "mat", "title": "Cork Yoga Mat", "category": "sports", "merchant_id": "m3"},
]
PHONES = {"p1", "p2", "p3"}


def _event(n: str, kind: str, user: str, item: str, ts: float) -> dict[str, Any]:
    return {"event_id": n, "type": kind, "user_id": user, "item_id": item, "ts": ts}


@pytest.fixture
async def http(worker: WorkerProcess) -> AsyncIterator[aiohttp.ClientSession]:
    base = f"http://127.0.0.1:{worker.web_port}"
    async with aiohttp.ClientSession(base) as session:
        yield session


async def _get(http: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with http.get(path) as response:
        assert response.content_type == "application/json", path
        return response.status, await response.json()


async def _post(http: aiohttp.ClientSession, path: str, body: bytes) -> tuple[int, Any]:
    async with http.post(path, data=body, headers={"content-type": "application/json"}) as r:
        assert r.content_type == "application/json", path
        return r.status, await r.json()


def _checker(spec: dict[str, Any], schema: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]}
    )


async def _latency_ms(http: aiohttp.ClientSession, method: str, path: str, body: bytes) -> str:
    times = []
    for _ in range(200):
        started = time.perf_counter()
        async with http.request(method, path, data=body or None) as response:
            await response.read()
            assert response.status == 200
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
    return f"{method} {path}: p50 {p50:.2f} ms, p99 {p99:.2f} ms"


async def test_every_endpoint_answers_from_the_live_state(
    settings: Settings,
    worker: WorkerProcess,
    producer: AIOKafkaProducer,
    http: aiohttp.ClientSession,
) -> None:
    for record in CATALOG:
        await producer.send_and_wait(
            settings.topic("catalog"), orjson.dumps(record), key=record["item_id"].encode()
        )
    now = time.time()
    events = [
        _event("b1", "view", "bob", "p1", now),
        _event("b2", "view", "bob", "mat", now),
        _event("b3", "cart", "bob", "mat", now),
        _event("c1", "view", "cy", "p3", now),
        _event("c2", "like", "cy", "p3", now),
    ]
    await wait_for(
        lambda: _at_least(worker, "socialrec_catalog_items_total", len(CATALOG)), what="catalog"
    )
    await produce_json(producer, settings, events)

    # Ann's list must hold something she has not seen whenever her last event lands: wait until
    # the worker's fallback (the global trending list, handed to the ranking before it is
    # published) holds the others' items, then send her events.
    async def others_trending() -> bool:
        _, overall = await _get(http, "/api/v1/trending/global")
        return {"mat", "p3"} <= {i["item_id"] for i in overall["items"]}

    await wait_for(others_trending, what="bob's and cy's items trending")
    ann_events = [
        _event("a1", "view", "ann", "p1", now),
        _event("a2", "cart", "ann", "p1", now),
        _event("a3", "purchase", "ann", "p1", now),
        _event("a4", "view", "ann", "c1", now),
    ]
    await produce_json(producer, settings, ann_events)

    # The API's list is the one the topic got (ann's last event triggered it).
    async def ann_is_current() -> bool:
        status, body = await _get(http, "/api/v1/users/ann/recommendations")
        return status == 200 and (body.get("trigger") or {}).get("event_id") == "a4"

    await wait_for(ann_is_current, what="ann's list for her last event")
    status, spec = await _get(http, "/api/v1/openapi.json")
    assert status == 200
    validate(spec)
    status, ann = await _get(http, "/api/v1/users/ann/recommendations")
    assert status == 200
    assert ann["served_from"] == "published"
    _checker(spec, "Recommendations").validate(ann)
    records = await consume_until(
        settings,
        "recommendations",
        lambda rs: any(r.key == b"ann" and b'"a4"' in r.value for r in rs),
    )
    on_topic = [orjson.loads(r.value) for r in records if r.key == b"ann"][-1]
    assert {k: v for k, v in ann.items() if k != "served_from"} == on_topic
    assert "p1" not in {i["item_id"] for i in ann["items"]}  # bought

    # A user the worker never saw gets a cold-start list, computed and not published.
    status, nobody = await _get(http, "/api/v1/users/nobody/recommendations")
    assert status == 200
    assert nobody["served_from"] == "computed"
    assert nobody["cold_start"] is True
    assert nobody["trigger"] is None
    assert nobody["items"]
    _checker(spec, "Recommendations").validate(nobody)

    # Why: ann bought p1 (and saw it); an item in her list is explained by the list.
    status, why = await _get(http, "/api/v1/users/ann/why/p1")
    assert status == 200
    assert why["status"] == "excluded"
    assert "bought" in why["exclusions"]
    _checker(spec, "Why").validate(why)
    first = ann["items"][0]
    status, why = await _get(http, f"/api/v1/users/ann/why/{first['item_id']}")
    assert why["status"] == "recommended"
    assert why["position"] == 1
    assert why["sources"] == first["sources"]
    status, why = await _get(http, "/api/v1/users/ann/why/never-heard-of-it")
    assert why["status"] == "not_a_candidate"

    # Merchant m1: p1, p3 and c1 are theirs.
    async def m1_counted() -> bool:
        _, body = await _get(http, "/api/v1/merchants/m1?window_s=600")
        # Rising items come from the merchant's trending list as last published (0.5 s ticks).
        return int(body["funnel"]["counts"]["view"]) >= 4 and len(body["rising"]) == 3

    await wait_for(m1_counted, what="merchant counters")
    status, m1 = await _get(http, "/api/v1/merchants/m1?window_s=600")
    assert status == 200
    _checker(spec, "Merchant").validate(m1)
    counts = m1["funnel"]["counts"]
    assert (counts["view"], counts["cart"], counts["purchase"], counts["like"]) == (4, 1, 1, 1)
    assert m1["funnel"]["rates"] == {
        "view_to_cart": 0.25,
        "cart_to_purchase": 1.0,
        "view_to_purchase": 0.25,
    }
    assert 0 < m1["exposure"]["slots"] <= m1["exposure"]["total_slots"]
    assert {i["item_id"] for i in m1["rising"]} == {"p1", "p3", "c1"}
    _, m3 = await _get(http, "/api/v1/merchants/m3")
    assert (m3["funnel"]["counts"]["view"], m3["funnel"]["counts"]["cart"]) == (1, 1)

    # Trending per scope, as last published (the worker's next tick after the events).
    async def phones_published() -> bool:
        _, phones = await _get(http, "/api/v1/trending/category:phones?k=5")
        _, overall = await _get(http, "/api/v1/trending/global")
        first = overall["items"][0]["item_id"] if overall["items"] else None
        return {i["item_id"] for i in phones["items"]} == {"p1", "p3"} and first == "p1"

    await wait_for(phones_published, what="the phones' and the global trending lists")
    status, phones = await _get(http, "/api/v1/trending/category:phones?k=5")
    assert status == 200
    _checker(spec, "Trending").validate(phones)
    assert {i["item_id"] for i in phones["items"]} == {"p1", "p3"}
    _, overall = await _get(http, "/api/v1/trending/global")
    assert overall["items"][0]["item_id"] == "p1"  # ann's cart and purchase, bob's view

    # Search, English and Chinese, anonymous and for a user. The index follows the catalogue
    # through its change stream, read at most every sync interval: wait until it holds the
    # phones (a fresh-clone CI run once found only p1 at the first query).
    async def index_has_the_phones() -> bool:
        _, found = await _post(http, "/api/v1/query", b'{"text": "smartphone", "k": 5}')
        return {r["item_id"] for r in found["results"]} >= PHONES

    await wait_for(index_has_the_phones, timeout_s=30, what="the search index to hold the phones")
    for text in ("I want to buy a smartphone", "我想买一个智能手机"):
        for user in (None, "bob"):
            body: dict[str, Any] = {"text": text, "k": 5}
            if user:
                body["user_id"] = user
            status, found = await _post(http, "/api/v1/query", orjson.dumps(body))
            assert status == 200, found
            _checker(spec, "QueryResponse").validate(found)
            ids = [r["item_id"] for r in found["results"]]
            assert set(ids[:3]) == PHONES, (text, ids)
            assert "mat" not in ids
            assert found["terms"][0]["concept"] == "phone"
            assert found["results"][0]["reasons"][0]["type"] == "matched"
            assert found["personalised"] is (user is not None)

    # p1 trends, and the query says so once the worker's next trending tick has seen it (the
    # query reads the worker's latest global list, refreshed every SOCIALREC_TRENDING_INTERVAL_S).
    async def says_p1_trends() -> bool:
        _, found = await _post(http, "/api/v1/query", b'{"text": "smartphone", "k": 5}')
        return any(
            r["item_id"] == "p1" and any(x["type"] == "trending" for x in r["reasons"])
            for r in found["results"]
        )

    await wait_for(says_p1_trends, timeout_s=30, what="the query to name p1 as trending")

    # Errors: JSON, a message, the right status.
    bad = [
        (await _get(http, "/api/v1/nope"), 404),
        (await _get(http, "/api/v1/trending/user:ann"), 400),
        (await _get(http, "/api/v1/trending/global?k=0"), 400),
        (await _get(http, "/api/v1/merchants/m1?window_s=abc"), 400),
        (await _get(http, "/api/v1/query"), 405),
        (await _post(http, "/api/v1/query", b"{not json"), 400),
        (await _post(http, "/api/v1/query", b'{"text": 5}'), 400),
        (await _post(http, "/api/v1/query", b'{"text": "phone", "k": 500}'), 400),
        (await _post(http, "/api/v1/query", b'{"text": "phone", "extra": 1}'), 400),
        (await _post(http, "/api/v1/query", orjson.dumps({"text": "x" * 501})), 400),
        (await _post(http, "/api/v1/query", orjson.dumps({"text": "x" * 9000})), 413),
    ]
    for (status, body), expected in bad:
        assert status == expected, body
        _checker(spec, "Error").validate(body)
        assert "Traceback" not in body["error"]

    report = [
        await _latency_ms(http, "GET", "/api/v1/users/ann/recommendations", b""),
        await _latency_ms(http, "GET", "/api/v1/users/nobody/recommendations", b""),
        await _latency_ms(http, "GET", "/api/v1/users/ann/why/c1", b""),
        await _latency_ms(http, "GET", "/api/v1/trending/global", b""),
        await _latency_ms(http, "GET", "/api/v1/merchants/m1", b""),
        await _latency_ms(
            http, "POST", "/api/v1/query", orjson.dumps({"text": "我想买一个智能手机"})
        ),
        await _latency_ms(
            http,
            "POST",
            "/api/v1/query",
            orjson.dumps({"text": "I want to buy a smartphone", "user_id": "bob"}),
        ),
    ]
    print("\nAPI latency (200 sequential requests each, real Redis):\n" + "\n".join(report))


async def _at_least(worker: WorkerProcess, name: str, value: float) -> bool:
    return await worker.metric(name) >= value
