"""The benchmark's HTTP readers: many concurrent clients reading `socialrec api` while the
event path runs (``socialrec bench --readers N``).

Each reader is closed-loop: it sends its next request when the last one is answered, with no
pause, alternating a user's list (users whose lists were published, so the cached path) and
the global trending list (the hottest key there is). They run in a process of their own
(:func:`read_for`, for a process pool), so their client-side work does not share the bench's
event loop with the producer; on a small machine they still share its cores with everything
measured, as a frontend on the same host would.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Final

import aiohttp

from streams.http.http_input import path_segment

#: What a reader asks for; a list the api had to rank (no published one) is counted apart.
KINDS: Final = ("list", "trending", "computed")
COMPUTED: Final = b'"served_from":"computed"'


def read_for(
    base: str, users: Sequence[str], readers: int, seconds: float, seed: int
) -> dict[str, object]:
    """Run ``readers`` readers against ``base`` for ``seconds``: each kind's latencies (in
    seconds, sorted), the requests that failed, and the wall time."""
    return asyncio.run(_read(base, list(users), readers, seconds, seed))


async def _read(
    base: str, users: list[str], readers: int, seconds: float, seed: int
) -> dict[str, object]:
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    failed = 0
    began = time.monotonic()
    deadline = began + seconds
    connector = aiohttp.TCPConnector(limit=readers)
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as http:

        async def reader(n: int) -> None:
            nonlocal failed
            rng = random.Random(seed * 1_000 + n)
            turn = n
            while time.monotonic() < deadline:
                turn += 1
                if turn % 2:
                    kind = "list"
                    path = f"/api/v1/users/{path_segment(rng.choice(users))}/recommendations"
                else:
                    kind, path = "trending", "/api/v1/trending/global"
                sent = time.perf_counter()
                try:
                    async with http.get(path) as response:
                        body = await response.read()
                        ok = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok, body = False, b""
                took = time.perf_counter() - sent
                if not ok:
                    failed += 1
                    continue
                if kind == "list" and COMPUTED in body:
                    kind = "computed"
                latencies[kind].append(took)

        await asyncio.gather(*(reader(n) for n in range(readers)))
    return {
        "latencies": {kind: sorted(values) for kind, values in latencies.items()},
        "failed": failed,
        "wall_s": time.monotonic() - began,
    }
