"""The event loop's lag: work that holds the loop shows in what the watcher records."""

from __future__ import annotations

import asyncio
import contextlib
import time

from streams.metrics import watch_loop_lag


def hold_the_loop(seconds: float) -> None:
    """Blocking work on the loop's thread, as a long ranking or a collection is."""
    time.sleep(seconds)


async def test_a_callback_that_holds_the_loop_shows_as_lag() -> None:
    lags: list[float] = []
    recorded = asyncio.Event()

    def record(lag: float) -> None:
        lags.append(lag)
        recorded.set()

    watcher = asyncio.create_task(watch_loop_lag(record, interval_s=0.05))
    await asyncio.sleep(0)  # the watcher is asleep now, due back 50 ms later
    hold_the_loop(0.3)  # so it wakes at least 250 ms late
    await recorded.wait()
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    assert lags[0] >= 0.25
