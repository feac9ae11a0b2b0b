"""Who may call what: every route of the worker with every role, in process.

The app here has the worker's exact route templates (read from a real ``create_app``) with
stub handlers, behind the real guard middleware: what is tested is the decision, not the
handlers (tests/e2e/test_access.py shows a real worker doing the same).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.config import ConfigError, Settings, load_settings
from streams.http.auth import Keyring, entry_line, link_query
from streams.http.guard import RULES, Guard, load_guard
from streams.metrics import WorkerMetrics
from streams.runtime.worker import create_app

SECRET = "s" * 40
KEYS = {
    "frontend": "sr_frontend_key",
    "merchant": "sr_merchant_m1_key",
    "operator": "sr_operator_key",
}
KEYS_TEXT = ",".join(
    [
        entry_line(KEYS["frontend"], "frontend"),
        entry_line(KEYS["merchant"], "merchant", "m1"),
        entry_line(KEYS["operator"], "operator"),
    ]
)
#: A request on each route template of the worker (for merchant m1, stream s1).
REQUESTS = {
    "/health": ("GET", "/health"),
    "/metrics": ("GET", "/metrics"),
    "/api/v1/openapi.json": ("GET", "/api/v1/openapi.json"),
    "/api/v1/users/{user_id}/recommendations": ("GET", "/api/v1/users/u1/recommendations"),
    "/api/v1/users/{user_id}/why/{item_id}": ("GET", "/api/v1/users/u1/why/i1"),
    "/api/v1/trending/{scope}": ("GET", "/api/v1/trending/global"),
    "/api/v1/merchants/{merchant_id}": ("GET", "/api/v1/merchants/m1"),
    "/api/v1/query": ("POST", "/api/v1/query"),
    "/live/{stream_id}": ("GET", "/live/s1"),
    "/live/{stream_id}/events": ("GET", "/live/s1/events"),
}
#: Who gets through (200); everyone else with credentials gets 403, without 401.
ALLOWED = {
    "/health": {"anonymous", "frontend", "merchant", "operator", "host"},
    "/metrics": {"operator"},
    "/api/v1/openapi.json": {"frontend", "merchant", "operator"},
    "/api/v1/users/{user_id}/recommendations": {"frontend", "operator"},
    "/api/v1/users/{user_id}/why/{item_id}": {"operator"},
    "/api/v1/trending/{scope}": {"frontend", "operator"},
    "/api/v1/merchants/{merchant_id}": {"merchant", "operator"},
    "/api/v1/query": {"frontend", "operator"},
    "/live/{stream_id}": {"host", "operator"},
    "/live/{stream_id}/events": {"host", "operator"},
}
ROLES = ("anonymous", "frontend", "merchant", "operator", "host")
Client = TestClient[web.Request, web.Application]
#: Holds the users' routes until set (to keep expensive requests in flight).
GATE = web.AppKey("gate", asyncio.Event)


def _settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"api_keys": KEYS_TEXT, "host_link_secret": SECRET}
    return load_settings(**{**base, **overrides})


def _link(stream: str, expires_in: float = 3600.0) -> str:
    return link_query(SECRET, stream, int(time.time() + expires_in))


def _worker_routes() -> set[tuple[str, str]]:
    app = create_app(load_settings(topic_prefix="guard-test.", auth="off"))
    return {
        (route.method, route.resource.canonical)
        for route in cast(Any, app.web).web_app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


async def _ok(request: web.Request) -> web.Response:
    gate = request.app.get(GATE)
    if gate is not None and request.path.startswith("/api/v1/users/"):
        await gate.wait()
    return web.json_response({"ok": True})


@asynccontextmanager
async def _client(
    settings: Settings, gate: asyncio.Event | None = None
) -> AsyncIterator[tuple[Client, Guard]]:
    guard = load_guard(settings, WorkerMetrics())
    app = web.Application(middlewares=[guard.middleware])
    if gate is not None:
        app[GATE] = gate
    for method, path in REQUESTS.values():
        template = next(t for t, (_, p) in REQUESTS.items() if p == path)
        app.router.add_route(method, template, _ok)
    # No access log, like Faust's web server (its AppRunner is made with access_log=None):
    # a log line would hold the path, and with it user ids and hosts' links.
    server = TestServer(app)
    await server.start_server(access_log=None)
    async with TestClient(server) as client:
        yield client, guard


def _credentials(role: str, path: str) -> tuple[dict[str, str], str]:
    if role == "host":
        return {}, f"{path}?{_link('s1')}"
    if role == "anonymous":
        return {}, path
    return {"Authorization": f"Bearer {KEYS[role]}"}, path


def test_the_matrix_covers_every_route_the_worker_serves() -> None:
    assert {(m, t) for t, (m, _) in REQUESTS.items()} == _worker_routes()
    assert set(RULES) | {"/health"} == set(REQUESTS)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(REQUESTS))
async def test_route_by_role(route: str, role: str) -> None:
    method, path = REQUESTS[route]
    headers, url = _credentials(role, path)
    # Without credentials 401 (a host link is none outside the live pages), with others' 403.
    expected = 200 if role in ALLOWED[route] else 401 if role in {"anonymous", "host"} else 403
    async with (
        _client(_settings()) as (client, _),
        client.request(method, url, headers=headers) as r,
    ):
        assert r.status == expected, (route, role)
        assert r.content_type == "application/json"
        body = await r.json()
        assert ("error" in body) == (expected != 200)
        if expected == 401:
            assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def _status(client: Client, url: str, key: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with client.get(url, headers=headers) as r:
        return r.status, await r.json()


async def test_a_merchant_key_reads_its_merchant_only() -> None:
    async with _client(_settings()) as (client, guard):
        assert (await _status(client, "/api/v1/merchants/m1", KEYS["merchant"]))[0] == 200
        status, body = await _status(client, "/api/v1/merchants/m2", KEYS["merchant"])
        assert status == 403
        assert "another merchant" in body["error"]
        refused = guard.refused.labels("/api/v1/merchants/{merchant_id}", "scope")
        assert refused._value.get() == 1


async def test_a_host_link_opens_its_stream_only_and_until_it_expires() -> None:
    async with _client(_settings()) as (client, _):
        assert (await _status(client, f"/live/s1/events?{_link('s1')}"))[0] == 200
        assert (await _status(client, f"/live/s2?{_link('s1')}"))[0] == 403
        status, body = await _status(client, f"/live/s1?{_link('s1', expires_in=-1)}")
        assert (status, body["error"]) == (401, "this link has expired: ask for a new one")
        tampered = _link("s1").replace("sig=", "sig=x")
        assert (await _status(client, f"/live/s1?{tampered}"))[0] == 401
        forever = _link("s1", expires_in=30 * 86_400)  # signed, but longer than links may live
        assert (await _status(client, f"/live/s1?{forever}"))[0] == 401
        # Another secret signed it (or the secret was changed since): invalid.
        other = link_query("t" * 40, "s1", int(time.time() + 60))
        assert (await _status(client, f"/live/s1?{other}"))[0] == 401


@pytest.mark.parametrize(
    "header", ["Bearer sr_unknown", "Bearer ", "Basic sr_operator_key", "sr_operator_key"]
)
async def test_a_bad_authorization_header_is_401(header: str) -> None:
    async with _client(_settings()) as (client, guard):
        async with client.get("/metrics", headers={"Authorization": header}) as r:
            assert r.status == 401
            assert (await r.json())["error"].startswith("unknown API key")
        assert guard.refused.labels("/metrics", "invalid")._value.get() == 1


async def test_past_its_rate_a_key_gets_429_with_retry_after() -> None:
    async with _client(_settings(api_rate_per_s=0.5, api_rate_burst=2)) as (client, guard):
        url = "/api/v1/trending/global"
        assert [(await _status(client, url, KEYS["frontend"]))[0] for _ in range(2)] == [200, 200]
        async with client.get(url, headers={"Authorization": f"Bearer {KEYS['frontend']}"}) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "2"
            assert "too many requests" in (await r.json())["error"]
        # Buckets are per key: another key is not slowed down by this one.
        assert (await _status(client, url, KEYS["operator"]))[0] == 200
        assert guard.refused.labels("/api/v1/trending/{scope}", "rate_limited")._value.get() == 1


async def test_expensive_requests_cost_more_of_the_rate() -> None:
    async with _client(_settings(api_rate_per_s=0.1, api_rate_burst=24)) as (client, _):
        day = "/api/v1/merchants/m1?window_s=86400"  # 24 tokens: the whole bucket
        assert (await _status(client, day, KEYS["merchant"]))[0] == 200
        assert (await _status(client, "/api/v1/merchants/m1", KEYS["merchant"]))[0] == 429
        why = "/api/v1/users/u1/why/i1"  # 10 tokens
        assert [(await _status(client, why, KEYS["operator"]))[0] for _ in range(3)] == [
            200,
            200,
            429,
        ]


async def test_too_many_expensive_requests_at_once_get_503() -> None:
    gate = asyncio.Event()
    settings = _settings(api_costly_concurrency=1)
    async with _client(settings, gate=gate) as (client, _):
        why = "/api/v1/users/u1/why/i1"
        first = asyncio.create_task(_status(client, why, KEYS["operator"]))
        await asyncio.sleep(0.05)
        status, body = await _status(client, why, KEYS["operator"])
        assert status == 503
        assert "expensive" in body["error"]
        gate.set()
        assert (await first)[0] == 200
        assert (await _status(client, why, KEYS["operator"]))[0] == 200


async def test_with_auth_off_everything_is_open_and_unlimited() -> None:
    settings = load_settings(auth="off", api_rate_per_s=0.1, api_rate_burst=1)
    async with _client(settings) as (client, _):
        for method, path in REQUESTS.values():
            for _ in range(2):
                async with client.request(method, path) as r:
                    assert r.status == 200, path


async def test_no_key_digest_or_link_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with _client(_settings(api_rate_per_s=0.1, api_rate_burst=1)) as (client, _):
        for key in (*KEYS.values(), "sr_wrong"):
            for _ in range(2):
                await _status(client, "/api/v1/merchants/m1", key)
        link = _link("s1")
        await _status(client, f"/live/s1?{link}")
    secrets = [*KEYS.values(), "sr_wrong", link.rpartition("sig=")[2]]
    secrets += [line.split("sha256:")[1] for line in KEYS_TEXT.split(",")]
    assert "keys by role" in caplog.text
    assert not [s for s in secrets if s in caplog.text]


def test_a_worker_without_keys_refuses_to_start_and_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match=r"socialrec keys new --role operator.*AUTH=off"):
        load_guard(load_settings(), WorkerMetrics())
    with pytest.raises(ConfigError, match="no API keys"):
        create_app(load_settings(topic_prefix="guard-test."))


def test_keys_come_from_a_file_too(tmp_path: Any) -> None:
    path = tmp_path / "keys"
    path.write_text(
        f"# the shop's frontend, and m-1's\n{entry_line('sr_file_key', 'frontend')}  # web, new\n"
        f"{entry_line('sr_m', 'merchant', 'm-1')}\n"
    )
    ring = Keyring.load(load_settings(api_keys_file=path))
    principal = ring.verify("sr_file_key")
    assert principal is not None
    assert principal.role == "frontend"
    assert ring.roles() == {"frontend": 1, "merchant": 1, "operator": 0}
    with pytest.raises(ConfigError, match="cannot be read"):
        Keyring.load(load_settings(api_keys_file=tmp_path / "missing"))
    path.write_text(f"{entry_line('k', 'operator')}\n{entry_line('k', 'operator')}\n")
    with pytest.raises(ConfigError, match="entry 2 repeats"):
        Keyring.load(load_settings(api_keys_file=path))


def test_a_short_link_secret_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match=r"SOCIALREC_HOST_LINK_SECRET.*at least 32"):
        load_settings(host_link_secret="short")


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCIALREC_HOST_LINK_SECRET", SECRET)


async def test_the_cli_makes_keys_and_links_the_worker_accepts(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.cli import main

    assert main(["keys", "new", "--role", "merchant", "--merchant", "m1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    key, entry = lines[0].rsplit(" ", 1)[1], lines[2]
    assert main(["host-link", "--stream", "s1", "--ttl", "30m", "--base", "https://x.test"]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith("https://x.test/live/s1?stream=s1&exp=")
    assert main(["keys", "new", "--role", "merchant"]) == 2
    assert main(["keys", "new", "--role", "merchant", "--merchant", "a,b"]) == 2
    assert main(["host-link", "--stream", "s1", "--ttl", "8d"]) == 2
    async with _client(_settings(api_keys=entry)) as (client, _):
        assert (await _status(client, "/api/v1/merchants/m1", key))[0] == 200
        assert (await _status(client, url.removeprefix("https://x.test"))) == (200, {"ok": True})
        body = orjson.dumps((await _status(client, "/api/v1/merchants/m1"))[1])
        assert b"credentials required" in body


def test_the_worker_writes_no_access_log() -> None:
    # An access log line would hold the path: user ids, and a host's link with its signature.
    app = create_app(load_settings(topic_prefix="guard-test.", auth="off"))
    assert cast(Any, app.web)._runner._kwargs["access_log"] is None


def test_keys_new_can_write_the_key_to_a_file_for_a_program(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.cli import main

    key_file, keys_file = tmp_path / "secrets" / "operator.key", tmp_path / "api-keys"
    args = ["keys", "new", "--role", "operator", "--key-file", str(key_file)]
    assert main([*args, "--keys-file", str(keys_file)]) == 0
    key = key_file.read_text().strip()
    assert key not in capsys.readouterr().out  # in the file only
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert main([*args, "--keys-file", str(keys_file)]) == 0  # again: the same key, one line
    assert key_file.read_text().strip() == key
    (line,) = keys_file.read_text().splitlines()
    principal = Keyring.parse(line, "test").verify(key)
    assert principal is not None
    assert principal.role == "operator"
    key_file.write_text("")  # a placeholder is no key: never registered
    assert main(args) == 2
    assert Keyring.parse(entry_line("", "operator"), "test").verify("") is None
