"""The bench's HTTP readers (streams/tools/bench/readers.py) against a small local server that
answers every request after a fixed delay: closed-loop readers wait for their answers, paced
readers count each request from when it was due, so a slow server shows in their latency."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestServer

from streams.tools.bench.readers import ReadLoad, _read

DELAY_S = 0.05


async def _slow_server() -> TestServer:
    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(DELAY_S)
        return web.json_response({"items": []})

    app = web.Application()
    app.router.add_get("/api/v1/users/{user}/recommendations", answer)
    app.router.add_get("/api/v1/trending/global", answer)
    server = TestServer(app)
    await server.start_server()
    return server


async def _latencies(load: ReadLoad, seconds: float) -> list[float]:
    server = await _slow_server()
    try:
        base = str(server.make_url(""))
        raw = await _read(base, ["u1", "u2"], load, seconds, seed=1)
    finally:
        await server.close()
    assert raw["failed"] == 0
    found = raw["latencies"]
    assert isinstance(found, dict)
    return sorted(t for kind in ("list", "trending") for t in found[kind])


async def test_closed_loop_readers_wait_for_each_answer() -> None:
    latencies = await _latencies(ReadLoad(2), 0.3)
    assert latencies
    assert min(latencies) >= DELAY_S


async def test_paced_readers_count_the_wait_behind_a_slow_answer() -> None:
    """One reader due every 10 ms on a server that takes 50: the k-th request goes out no
    sooner than k answers later, so it waits at least k × 40 ms past when it was due."""
    # A second holds about 20 answers; three (two behind the first) are enough for the bound,
    # which only gets easier for a slower machine.
    latencies = await _latencies(ReadLoad(1, rate=100.0), 1.0)
    behind = len(latencies) - 1
    assert behind >= 2
    assert latencies[-1] >= DELAY_S + behind * (DELAY_S - 0.01) - 1e-3
