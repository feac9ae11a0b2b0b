"""The benchmark's HTTP readers: many concurrent clients reading `socialrec api` while the
event path runs (``socialrec bench --readers N``).

Each reader alternates a user's list (users whose lists were published, so the cached path)
and the global trending list (the hottest key there is). Closed-loop (the default), a reader
sends its next request as soon as the last is answered: a measure of capacity, where the
latency is the readers' own queue (100 readers at 1,000 requests/s wait 100 ms on average).
At a ``rate``, the readers share that many requests a second, each on its own schedule, and a
request's latency counts from when it was due, not when it went out: a slow answer delays
the requests behind it, and their wait counts too (no coordinated omission).

They run in a process of their own (:func:`read_for`, for a process pool), so their
client-side work does not share the bench's event loop with the producer; on a small machine
they still share its cores with everything measured, as a frontend on the same host would.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Final, NamedTuple

import aiohttp

from streams.http.http_input import path_segment

#: What a reader asks for; a list the api had to rank (no published one) is counted apart.
KINDS: Final = ("list", "trending", "computed")
COMPUTED: Final = b'"served_from":"computed"'


class ReadLoad(NamedTuple):
    """Scenario (d)'s readers: how many, and the requests a second they send in all (None:
    closed-loop).

    >>> str(ReadLoad(100)), str(ReadLoad(100, 500.0))
    ('100 closed-loop HTTP readers', '100 HTTP readers at 500 requests/s in all')
    """

    readers: int
    rate: float | None = None

    def __str__(self) -> str:
        if self.rate is None:
            return f"{self.readers} closed-loop HTTP readers"
        return f"{self.readers} HTTP readers at {self.rate:g} requests/s in all"


def read_for(
    base: str, users: Sequence[str], load: ReadLoad, seconds: float, seed: int
) -> dict[str, object]:
    """Run the readers of ``load`` against ``base`` for ``seconds``: each kind's latencies
    (in seconds, sorted), the requests that failed, and the wall time."""
    return asyncio.run(_read(base, list(users), load, seconds, seed))


async def _read(
    base: str, users: list[str], load: ReadLoad, seconds: float, seed: int
) -> dict[str, object]:
    readers, rate = load
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
            # At a rate, reader n's requests are due every readers/rate s, the readers staggered.
            due = time.perf_counter() + (n / rate if rate else 0.0)
            while time.monotonic() < deadline:
                if rate:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    sent, due = due, due + readers / rate
                else:
                    sent = time.perf_counter()
                turn += 1
                if turn % 2:
                    kind = "list"
                    path = f"/api/v1/users/{path_segment(rng.choice(users))}/recommendations"
                else:
                    kind, path = "trending", "/api/v1/trending/global"
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
