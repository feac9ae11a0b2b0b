"""Sending the fuzz's HTTP requests (tests/fuzz/http.py) to a worker, and checking each answer:
the exact status expected, every refusal JSON ``{"error": ...}`` (401 with
``WWW-Authenticate``), every success of its route's content type, naming the ids it was asked
about. Used in process (tests/integration/test_fuzz_http.py) and against a real worker
(tests/e2e/test_fuzz_http.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import orjson
from yarl import URL

from tests.fuzz.http import KEYS, NOT_READY, HttpFuzzer, Request

#: Requests in flight at once (the worker's event loop serves them all).
CONCURRENCY = 8
#: Content types of the routes' successful answers.
SUCCESS_TYPES = {
    "/live/{stream_id}": "text/html",
    "/live/{stream_id}/events": "text/event-stream",
    "/metrics": "text/plain",
}


async def send(http: aiohttp.ClientSession, request: Request) -> tuple[int, str, Any, Any]:
    """Status, content type, body (JSON, or the first SSE message) and headers."""
    url = URL(request.url, encoded=True)
    async with http.request(
        request.method, url, headers=request.headers, data=request.body
    ) as response:
        kind = response.content_type
        if kind == "text/event-stream":
            await response.content.readuntil(b"\n\n")  # retry
            body: Any = await response.content.readuntil(b"\n\n")
        elif kind == "application/json":
            body = orjson.loads(await response.read())
        else:
            body = await response.read()
        return response.status, kind, body, response.headers


def check(request: Request, n: int, answer: tuple[int, str, Any, Any]) -> None:
    status, kind, body, headers = answer
    said = f"case {n} {request.method} {request.url[:160]!r} ({request.what})"
    assert status == request.status, f"{said}: {status}, not {request.status}: {body!r:.300}"
    if request.route == "/health" and request.status in (200, NOT_READY):  # its own JSON
        assert kind == "application/json", said
        assert body["ready"] is (status == 200), said
        return
    if status >= 400:
        assert kind == "application/json", f"{said}: a {kind} refusal"
        assert isinstance(body.get("error"), str), said
        assert body["error"], said
        assert status != 401 or headers["WWW-Authenticate"].startswith("Bearer"), said
        return
    assert kind == SUCCESS_TYPES.get(request.route, "application/json"), said
    for name, value in request.echo.items():
        assert body[name] == value, f"{said}: {name} {body[name]!r} is not {value!r}"
    if kind == "text/event-stream":
        assert body.startswith(b"event: trending\ndata: "), said


async def fuzz_route(base: str, fuzzer: HttpFuzzer, cases: int) -> Counter[int]:
    """Send ``cases`` of the fuzzer's requests to the worker at ``base``, each checked as it
    is answered; the statuses seen."""
    requests = [fuzzer.request() for _ in range(cases)]
    statuses: Counter[int] = Counter()

    async def worker(first: int) -> None:
        for n in range(first, cases, CONCURRENCY):
            answer = await send(http, requests[n])
            check(requests[n], n, answer)
            statuses[answer[0]] += 1

    async with aiohttp.ClientSession(base, auto_decompress=False) as http:
        await asyncio.gather(*(worker(first) for first in range(CONCURRENCY)))
        # Still serving: a plain valid request afterwards.
        operator = {"Authorization": f"Bearer {KEYS['operator']}"}
        async with http.get("/api/v1/trending/global", headers=operator) as response:
            assert response.status == 200
    return statuses
