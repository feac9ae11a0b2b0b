"""A real headless Chromium driven over the Chrome DevTools Protocol, for page tests.

Only aiohttp (already installed with Faust) is used: the DevTools endpoint is plain HTTP plus a
websocket of JSON messages, so no browser-automation dependency is needed. Debian's
``chromium`` package provides the browser (the Makefile's ``make setup`` installs it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from streams.tools.processes import free_port
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
#: Binaries tried in order; SOCIALREC_CHROMIUM overrides.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def artefacts_dir() -> Path:
    """Where tests leave screenshots and browser logs (``SOCIALREC_TEST_ARTEFACTS``)."""
    path = Path(os.environ.get("SOCIALREC_TEST_ARTEFACTS", ROOT / ".socialrec" / "test-artefacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_chromium() -> str:
    """The browser binary; skips the test locally, fails it under CI=true, when there is none."""
    override = os.environ.get("SOCIALREC_CHROMIUM")
    for name in (override,) if override else CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    unavailable("chromium not found: install it with `make setup` (apt-get install chromium)")


@dataclass
class Page:
    """One tab's DevTools session: commands by id, events kept in order of arrival."""

    ws: aiohttp.ClientWebSocketResponse
    next_id: int = 0
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data: dict[str, Any] = orjson.loads(msg.data)
            future = self.pending.pop(data["id"], None) if "id" in data else None
            if future is not None and not future.done():
                future.set_result(data)
            elif "method" in data:
                self.events.append(data)
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("DevTools connection closed"))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send_str(
            orjson.dumps({"id": self.next_id, "method": method, "params": params}).decode()
        )
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def navigate(self, url: str, timeout_s: float = 20.0) -> None:
        """Open ``url`` and wait for its load event."""
        await self.send("Page.enable")
        seen = len(self.events)
        await self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(e["method"] == "Page.loadEventFired" for e in self.events[seen:]):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{url} did not load in {timeout_s} s")

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        reply = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise AssertionError(f"page script failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def screenshot(self, path: Path) -> bytes:
        reply = await self.send("Page.captureScreenshot", format="png")
        png = base64.b64decode(reply["data"])
        await asyncio.to_thread(path.write_bytes, png)
        return png


@dataclass
class Browser:
    port: int
    http: aiohttp.ClientSession

    async def new_page(self) -> Page:
        base = f"http://127.0.0.1:{self.port}"
        async with self.http.put(f"{base}/json/new?about:blank") as response:
            target = await response.json()
        ws = await self.http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        page.start()
        return page


@contextlib.asynccontextmanager
async def chromium(log_name: str = "chromium") -> AsyncIterator[Browser]:
    """Start a headless Chromium of its own (fresh profile, free port) and stop it after."""
    binary = find_chromium()
    port = free_port()
    profile = tempfile.mkdtemp(prefix="socialrec-chromium-")
    log = (artefacts_dir() / f"{log_name}.log").open("wb")
    args = [
        binary,
        "--headless=new",
        f"--remote-debugging-port={port}",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "about:blank",
    ]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    process = await asyncio.to_thread(subprocess.Popen, args, stdout=log, stderr=subprocess.STDOUT)
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_for_devtools(http, port, process)
            yield Browser(port, http)
    finally:
        await asyncio.to_thread(_stop, process)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


async def _wait_for_devtools(
    http: aiohttp.ClientSession, port: int, process: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode}; see its log")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{port}/json/version") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError("chromium's DevTools endpoint did not answer in 30 s")
