"""Every HTTP route of a real worker app under 10,000 hostile requests each (tests/fuzz/http.py).

In process: the worker's own aiohttp application (``create_app``: every handler, the guard,
the error middleware) served on a local port against the real Redis, so requests go through
real HTTP parsing and percent-decoding, thousands a second. Each request must get exactly the
status the generator expects: never a 5xx, every refusal JSON ``{"error": ...}`` (401 with
``WWW-Authenticate``), and every valid request answered, naming the ids it was asked about.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from streams.config import Settings, load_settings
from streams.runtime.worker import create_app
from tests.fuzz.http import KEYS_TEXT, NOT_READY, SECRET, HttpFuzzer
from tests.fuzz.http_check import fuzz_route
from tests.unit.test_guard import REQUESTS

CASES = 10_000


def fuzz_settings(base: Settings, **overrides: Any) -> Settings:
    """The worker's settings with the fuzz's keys and link secret, and limits no fuzz reaches
    (rates and caps have tests of their own in tests/unit/test_guard.py)."""
    values: dict[str, Any] = {
        "topic_prefix": "fuzz-http.",
        "redis_url": base.redis_url,
        "api_keys": KEYS_TEXT,
        "host_link_secret": SECRET,
        "api_rate_per_s": 1e9,
        "api_rate_burst": 1e9,
        "api_costly_concurrency": 1000,
        "live_max_connections": 100_000,
        "live_max_connections_per_stream": 100_000,
    }
    return load_settings(**{**values, **overrides})


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[TestServer]:
    app = create_app(fuzz_settings(settings))
    test_server = TestServer(app.web.web_app)  # type: ignore[attr-defined]
    await test_server.start_server(access_log=None)  # like Faust's: no access log
    try:
        yield test_server
    finally:
        await test_server.close()


@pytest.mark.parametrize("route", sorted(REQUESTS))
async def test_every_route_answers_hostile_requests_as_expected(
    server: TestServer, route: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    started = time.perf_counter()
    base = f"http://{server.host}:{server.port}"
    # Each /metrics answer renders the whole registry (about 20 ms): fewer operators there.
    let_in = 0.1 if route == "/metrics" else 0.5
    fuzzer = HttpFuzzer(sorted(REQUESTS).index(route), route, let_in=let_in)
    statuses = await fuzz_route(base, fuzzer, CASES)
    print(f"{route}: {CASES} requests in {time.perf_counter() - started:.1f} s: {statuses}")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no 500 was logged
    answered = statuses[NOT_READY if route == "/health" else 200]
    assert answered > CASES // 20  # valid requests are among them, and answered


#: Requests no HTTP client would send, as bytes, and the status each must get; the JSON ones
#: reach the worker's routes, the others are refused by aiohttp's HTTP parser (plain text).
RAW: Final = (
    (b"GET /api/v1/users/u1/recommendations HTTP/1.1\r\nAuthorization: Bearer \xff\xfe\r\n", 401),
    (b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer sr_fz_o\x00\r\n", 400),
    (b"GET /api/v1/users/\xff\xfe/recommendations HTTP/1.1\r\n", 400),
    (b"GET /api/v1/users/a\tb/recommendations HTTP/1.1\r\n", 400),
    (b"GET /api/v1/trending/" + b"x" * 9000 + b" HTTP/1.1\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS hello
    (b"POST /api/v1/query HTTP/1.1\r\nTransfer-Encoding: chunked\r\n", 401),
)


async def test_raw_bytes_get_a_4xx_and_the_worker_goes_on(server: TestServer) -> None:
    for raw, status in RAW:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(raw + b"Host: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)  # the head
        writer.close()
        assert answer.split(b" ", 2)[1] == str(status).encode(), (raw[:60], answer[:200])
    chunk = b"2000\r\n" + b"x" * 0x2000 + b"\r\n"
    body = b"Authorization: Bearer sr_fz_f\r\n\r\n" + chunk * 2 + b"0\r\n\r\n"
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = b"POST /api/v1/query HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    writer.write(head + body)
    answer = await asyncio.wait_for(reader.readuntil(b"}"), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]  # a chunked body has no length
    assert b'{"error":"body must be at most 8192 bytes"}' in answer
    base = f"http://{server.host}:{server.port}"
    async with (
        aiohttp.ClientSession(base) as http,
        http.get("/health") as response,
    ):
        assert response.status == NOT_READY
