"""The hosts' live page in a real headless Chromium, fed by a real worker through Kafka."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from yarl import URL

from streams.config import Settings
from streams.http.http_input import path_segment
from streams.http.live import TOO_MANY_PAGES
from tests.e2e.chromium import Page, artefacts_dir, chromium, find_chromium
from tests.e2e.conftest import WorkerProcess, produce_json, wait_for

#: What the test reads from the page: connection state, list rows and when they were drawn.
DOM_STATE = """JSON.stringify({
  status: document.getElementById("status").className,
  empty: document.body.classList.contains("empty"),
  bannerShown: getComputedStyle(document.getElementById("banner")).display !== "none",
  updated: document.getElementById("updated").textContent,
  renderedAt: Number(document.getElementById("list").dataset.renderedAt),
  rows: Array.from(document.querySelectorAll("#list li")).map(li => [
    li.querySelector(".rank").textContent, li.querySelector(".name").textContent,
    li.querySelector(".count").textContent, li.querySelector(".trend").getAttribute("aria-label")
  ])
})"""


def _view(n: str, kind: str, user: str, item: str, stream: str) -> dict[str, Any]:
    return {
        "event_id": n,
        "type": kind,
        "user_id": user,
        "item_id": item,
        "stream_id": stream,
        "ts": time.time(),
    }


async def _page_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = orjson.loads(await page.evaluate(DOM_STATE))
    return state


async def _until(
    page: Page, check: Callable[[dict[str, Any]], bool], what: str, timeout_s: float = 20.0
) -> dict[str, Any]:
    """Poll the DOM every 10 ms until ``check`` holds; the first matching state."""
    deadline = time.monotonic() + timeout_s
    state = await _page_state(page)
    while not check(state):
        if time.monotonic() > deadline:
            raise AssertionError(f"page never showed {what}; last state: {state}")
        await asyncio.sleep(0.01)
        state = await _page_state(page)
    return state


async def _metric_at_least(worker: WorkerProcess, name: str, value: float) -> bool:
    return await worker.metric(name) >= value


async def test_bad_stream_ids_get_a_json_400(worker: WorkerProcess) -> None:
    base = f"http://127.0.0.1:{worker.web_port}/live"
    async with aiohttp.ClientSession() as http:
        # Any id events accept names a stream; these are not ids (tab, length, NUL, C1).
        for bad in ["a%09b", "x" * 129, "%00", "%C2%85"]:
            for suffix in ("", "/events"):
                url = URL(f"{base}/{bad}{suffix}", encoded=True)
                async with http.get(url) as response:
                    assert response.status == 400, (bad, suffix)
                    assert response.content_type == "application/json"
                    body = await response.json()
                    assert body["error"].startswith("stream_id must be 1 to 128 characters")
                    assert "Traceback" not in await response.text()
        async with http.get(f"{base}/live-7") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
        async with http.get(URL(f"{base}/{path_segment('لايف 🛍 a/b')}", encoded=True)) as r:
            assert (r.status, r.content_type) == (200, "text/html")
        async with http.get(f"{base}/live-7/events") as response:
            assert response.status == 200
            assert response.content_type == "text/event-stream"
            first = await response.content.readuntil(b"\n\n")
            assert first.startswith(b"retry: ")
            message = await response.content.readuntil(b"\n\n")
            assert message.startswith(b"event: trending\ndata: ")
            assert orjson.loads(message.split(b"data: ", 1)[1])["items"] == []


async def test_live_pages_beyond_the_limit_are_told_to_come_back(settings: Settings) -> None:
    """SOCIALREC_LIVE_MAX_CONNECTIONS bounds the open event streams: one more gets a 503 with
    Retry-After, and a slot frees when a page goes away."""
    worker = WorkerProcess(settings, extra_env={"SOCIALREC_LIVE_MAX_CONNECTIONS": "1"})
    await worker.start()
    url = f"http://127.0.0.1:{worker.web_port}/live/live-3/events"
    try:
        async with aiohttp.ClientSession() as http:
            first = await http.get(url)
            assert first.status == 200
            await first.content.readuntil(b"\n\n")  # the stream is open and subscribed
            async with http.get(url) as refused:
                assert refused.status == 503
                assert refused.headers["Retry-After"] == "5"
                assert (await refused.json())["error"] == TOO_MANY_PAGES
            first.close()

            async def accepted() -> bool:
                async with http.get(url) as again:
                    return again.status == 200

            await wait_for(accepted, what="the closed page's slot to be free again")
    finally:
        worker.stop()


async def test_live_page_shows_a_streams_trending_items_as_they_change(
    settings: Settings, worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    find_chromium()  # skip (locally) or fail (CI=true) before producing anything
    artefacts = artefacts_dir()
    catalog = [
        {"item_id": "lipstick", "title": "Red lipstick", "category": "beauty", "merchant_id": "m1"},
        {"item_id": "mascara", "title": "Mascara", "category": "beauty", "merchant_id": "m1"},
    ]
    for record in catalog:
        await producer.send_and_wait(
            settings.topic("catalog"), orjson.dumps(record), key=record["item_id"].encode()
        )
    await wait_for(
        lambda: _metric_at_least(worker, "socialrec_catalog_items_total", 2), what="catalog"
    )

    async with chromium("chromium-live-page") as browser:
        page = await browser.new_page()
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            width=390,
            height=844,
            deviceScaleFactor=2,
            mobile=True,
        )
        await page.navigate(f"http://127.0.0.1:{worker.web_port}/live/live-7")
        state = await _until(page, lambda s: s["status"] == "live", "the live state")
        assert state["empty"]
        assert state["rows"] == []

        # Viewers of live-7 (and of another stream, which must not show up).
        sent = time.time()
        views = [_view(f"v{n}", "view", f"viewer{n}", "lipstick", "live-7") for n in range(3)]
        views.append(_view("u1", "view", "viewer9", "sku-unknown", "live-7"))
        views.append(_view("o1", "purchase", "viewer8", "elsewhere", "live-8"))
        await produce_json(producer, settings, views)
        expected = [["1", "Red lipstick", "3", "rising"], ["2", "sku-unknown", "1", "rising"]]
        state = await _until(page, lambda s: s["rows"] == expected, "the first viewers' items")
        first_ms = state["renderedAt"] - sent * 1000
        assert not state["empty"]
        assert re.fullmatch(r"updated \d+ s ago", state["updated"]), state["updated"]

        # A purchase (weight 8) takes the lead.
        sent = time.time()
        await produce_json(
            producer, settings, [_view("p1", "purchase", "viewer1", "mascara", "live-7")]
        )
        expected = [
            ["1", "Mascara", "8", "rising"],
            ["2", "Red lipstick", "3", "rising"],
            ["3", "sku-unknown", "1", "rising"],
        ]
        state = await _until(page, lambda s: s["rows"] == expected, "the purchase on top")
        second_ms = state["renderedAt"] - sent * 1000
        print(
            f"event produced -> live page DOM updated: {first_ms:.0f} ms (first views), "
            f"{second_ms:.0f} ms (purchase)"
        )
        # Figures, not bounds: a loaded CI machine once took 1,073 ms (speed is a benchmark's
        # question; this test's is what the page shows).
        assert first_ms > 0
        assert second_ms > 0

        png = await page.screenshot(artefacts / "live-page-phone.png")
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(png) > 5000

        # The worker goes away: the page says so (and keeps the last list, dimmed)...
        stopped = time.monotonic()
        await asyncio.to_thread(worker.stop)
        stop_s = time.monotonic() - stopped
        print(f"worker stopped in {stop_s:.1f} s with the page's event stream open")
        assert worker.process is not None
        assert worker.process.returncode == 0  # not killed after the shutdown grace
        state = await _until(page, lambda s: s["status"] == "dropped", "the dropped state")
        assert state["bannerShown"]
        assert len(state["rows"]) == 3
        await page.screenshot(artefacts / "live-page-phone-dropped.png")

        # ...and reconnects by itself when a worker serves the page again.
        again = WorkerProcess(settings, web_port=worker.web_port)
        await again.start()
        try:
            state = await _until(page, lambda s: s["status"] == "live", "the reconnection")
            assert not state["bannerShown"]
            assert [r[1] for r in state["rows"]] == ["Mascara", "Red lipstick", "sku-unknown"]
        finally:
            again.stop()
