"""One chaos run (streams/tools/chaos.py) from the first event to the checks.

The checks, each of which must pass:

- *lists*: every user got a list triggered by their last event that asks for one (any
  event but a follow or unfollow);
- *dead letters*: ``events.dlq`` is empty (every simulator event is valid);
- *worker state*, *item-CF counts*, *MF*: the state in Redis against a clean replay of the same
  events (streams/tools/replay.py, streams/tools/chaos_mf.py say what is compared and how closely);
- *recovery*: a list was published after every fault was repaired.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from models.events import Event
from models.simulator import generate_events, generate_world
from streams.config import Settings
from streams.tools.chaos import ChaosError, Fault, ListWatcher, Plan, Workers, inject, schedule

#: How long the run may take to finish the stream once the last event was sent.
SETTLE_TIMEOUT_S: Final = 900.0
#: The longest a batch of events may wait for the broker while it restarts.
PRODUCER_PATIENCE_S: Final = 300.0


async def run_chaos(
    settings: Settings, plan: Plan, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Send the stream, fire the schedule, check; returns the figures (``passed`` says)."""
    from streams.tools.chaos import servers_restored
    from streams.tools.simulate import produce_catalog

    items = plan.items or settings.cooccurrence_cap
    if items > settings.cooccurrence_cap:
        raise ChaosError("more items than SOCIALREC_COOCCURRENCE_CAP: counts would not compare")
    world = generate_world(plan.seed, users=plan.users, items=items)
    stream = generate_events(
        world, plan.seed, count=plan.events, start_ts=time.time(), mean_gap_s=1.0 / plan.rate
    )
    events = list(stream)
    faults = schedule(plan)
    sent_at: dict[str, float] = {}
    workers = Workers(settings, settings.data_dir / "chaos" / settings.app_id)
    watcher, stop = ListWatcher(settings, sent_at), asyncio.Event()
    rows: list[dict[str, Any]] = []
    began = time.monotonic()
    say(f"chaos: {len(events):,} events at {plan.rate:g}/s, faults {[f.kind for f in faults]}")
    async with servers_restored(settings):
        await produce_catalog(settings, world)
        watching = asyncio.ensure_future(watcher.run(stop))
        try:
            await workers.start()
            bounds = [0, *(f.at for f in faults), len(events)]
            await _send(settings, world, events[: bounds[1]], plan.rate, sent_at)
            for n, fault in enumerate(faults):
                segment = events[bounds[n + 1] : bounds[n + 2]]
                rows.append(await _fire(fault, segment, plan, workers, watcher, world, sent_at))
                say(f"  {_row_line(rows[-1])}")
            say("  stream sent; waiting for the worker and the learner to finish it")
            await _settle(settings, workers, watcher, events)
            checks = await _checks(settings, events, watcher, rows)
        finally:
            stop.set()
            await workers.stop()
            await watching
    return {
        "plan": {
            "events": plan.events, "rate_per_s": plan.rate, "seed": plan.seed,
            "users": plan.users, "items": items, "freeze_s": plan.freeze_s,
        },
        "duration_s": round(time.monotonic() - began, 1),
        "faults": rows,
        "checks": checks,
        "passed": all(c["passed"] for c in checks),
    }  # fmt: skip


async def _send(
    settings: Settings, world: Any, events: Sequence[Event], rate: float,
    sent_at: dict[str, float], first: asyncio.Event | None = None,
) -> None:  # fmt: skip
    from streams.tools.simulate import produce

    def note(event: Event) -> None:
        sent_at[event.event_id] = time.time()
        if first is not None:
            first.set()

    await produce(settings, world, events, rate, on_sent=note, patience_s=PRODUCER_PATIENCE_S)


async def _fire(
    fault: Fault, segment: Sequence[Event], plan: Plan, workers: Workers,
    watcher: ListWatcher, world: Any, sent_at: dict[str, float],
) -> dict[str, Any]:  # fmt: skip
    """Start the segment that follows ``fault``, fire it, and time the way back."""
    first = asyncio.Event()
    sending = _send(workers.settings, world, segment, plan.rate, sent_at, first)
    feeding = asyncio.ensure_future(sending)
    # The producer is connected before anything breaks (or the segment was empty).
    await asyncio.wait(
        [asyncio.ensure_future(first.wait()), feeding], return_when=asyncio.FIRST_COMPLETED
    )
    began = time.time()
    outage = await inject(fault, workers, plan)
    repaired = time.time()
    row: dict[str, Any] = {"fault": fault.kind, "at_event": fault.at, "outage_s": round(outage, 1)}
    try:
        published = await _alive_while(
            workers, watcher.first_list(began, repaired), plan.recover_timeout_s
        )
        row["to_next_publish_s"] = round(published - began, 1)
        row["after_repair_s"] = round(published - repaired, 1)
    except TimeoutError:
        row["to_next_publish_s"] = row["after_repair_s"] = None
    await feeding
    return row


async def _alive_while(workers: Workers, waiting: Any, timeout_s: float) -> Any:
    """Await ``waiting`` (at most ``timeout_s``), failing at once if the worker dies."""
    task = asyncio.ensure_future(waiting)
    deadline = time.monotonic() + timeout_s
    try:
        while not task.done():
            workers.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError
            await asyncio.wait([task], timeout=0.5)
        return task.result()
    finally:
        task.cancel()


def _last_lists(events: Sequence[Event]) -> dict[str, str]:
    """Each user's last event that asks for a list (follows do not)."""
    return {e.user_id: e.event_id for e in events if e.item_id is not None}


async def _settle(
    settings: Settings, workers: Workers, watcher: ListWatcher, events: Sequence[Event]
) -> None:
    """Wait until every user's last list is out and both consumer groups committed it all."""
    from streams.runtime.consumer import events_group
    from streams.runtime.learner import learner_group
    from streams.tools.replay import group_caught_up

    wanted = set(_last_lists(events).items())
    groups = (events_group(settings), learner_group(settings))

    async def poll() -> None:
        while True:  # the condition is in Kafka: nothing here could signal it
            if wanted <= watcher.published and all(
                [await group_caught_up(settings, g) for g in groups]
            ):
                return
            await asyncio.sleep(1.0)

    with contextlib.suppress(TimeoutError):  # the checks say what is missing
        await _alive_while(workers, poll(), SETTLE_TIMEOUT_S)


async def _checks(
    settings: Settings, events: Sequence[Event], watcher: ListWatcher, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    from streams.tools.chaos_state import check, state_checks

    missing = set(_last_lists(events).items()) - watcher.published
    checks = [
        check("lists", not missing, f"{len(missing)} users without a list after their last event"),
        *(await state_checks(settings, events)),
    ]
    unrecovered = [r["fault"] for r in rows if r["to_next_publish_s"] is None]
    checks.append(check("recovery", not unrecovered, f"no publish after: {unrecovered or 'none'}"))
    return checks


def _row_line(row: dict[str, Any]) -> str:
    return (
        f"{row['fault']} at event {row['at_event']:,}: outage {row['outage_s']} s, "
        f"next publish {row['to_next_publish_s']} s after the fault"
    )
