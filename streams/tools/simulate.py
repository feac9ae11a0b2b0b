"""Produce the simulated world to Kafka: the catalogue, then a paced stream of shopper events.

``socialrec simulate`` calls :func:`run_simulate`; the demo and benchmark drive the coroutines
:func:`produce_catalog` and :func:`produce` directly.

Pacing schedules event *n* at ``start + n / rate`` on the monotonic clock, so the achieved rate
does not drift however long it runs. Whatever is due when the loop wakes is sent at once (small
bursts), through ``send()`` futures rather than awaiting each delivery; delivery results are
collected as they complete, and a bounded number in flight gives backpressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from models.events import Event
from models.simulator import World, generate_events, generate_world
from streams.config import Settings
from streams.security import kafka_client_kwargs

log = logging.getLogger(__name__)

LINGER_MS: Final = 5  # small batches: a few ms of latency buys far fewer requests
MAX_IN_FLIGHT: Final = 20_000  # unacknowledged sends before we wait for the oldest
MIN_SLEEP_S: Final = 0.002  # below this, sending now beats a timer wake-up
MAX_SLEEP_S: Final = 0.1  # so a stop request is noticed promptly even at low rates
YIELD_EVERY: Final = 512  # let other tasks (the producer's sender, a stop signal) run
DEFAULT_PATIENCE_S: Final = 40.0  # aiokafka's own default request timeout


def _producer(settings: Settings, patience_s: float = DEFAULT_PATIENCE_S) -> Any:
    return AIOKafkaProducer(
        **kafka_client_kwargs(settings),
        client_id="socialrec-simulate",
        acks=1,  # the leader has it: enough for synthetic load, and lower latency than "all"
        linger_ms=LINGER_MS,
        # How long a batch may wait for the broker (aiokafka drops it after this): the
        # chaos run restarts the broker under a running producer.
        request_timeout_ms=int(patience_s * 1000),
    )


def _settle(in_flight: deque[Any], *, block_until: int) -> Any | None:
    """Drop completed sends from the front (raising on a failed one); return the oldest still
    pending future if more than ``block_until`` remain, for the caller to await."""
    while in_flight and in_flight[0].done():
        in_flight.popleft().result()  # re-raises a delivery error
    if len(in_flight) > block_until:
        return in_flight.popleft()
    return None


async def produce_catalog(settings: Settings, world: World) -> int:
    """Send every catalogue item to the catalog topic (key = item_id); return how many."""
    topic = settings.topic("catalog")
    producer = _producer(settings)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=item.item_id.encode(), value=item.to_json())
            for item in world.items
        ]
        await producer.flush()
        for fut in futures:
            await fut  # re-raises a delivery error
    finally:
        await producer.stop()
    log.info("catalog: %d items sent to %s", len(futures), topic)
    return len(futures)


async def produce(
    settings: Settings,
    world: World,
    events_iter: Iterable[Event],
    rate: float,
    stop: asyncio.Event | None = None,
    on_sent: Callable[[Event], None] | None = None,
    patience_s: float = DEFAULT_PATIENCE_S,
) -> int:
    """Send events to the events topic (key = user_id) at ``rate`` per second; return how many.

    ``rate <= 0`` sends as fast as the broker takes them; the simulated clock then means
    nothing, so each event is re-stamped with the wall-clock time it is sent. At a positive
    rate events keep their own ``ts`` (generate them with ``start_ts=time.time()`` and
    ``mean_gap_s=1/rate`` so it tracks the wall clock). Stops at the end of ``events_iter`` or
    when ``stop`` is set, after delivering everything already sent. ``on_sent`` is called with
    each event once it is handed to the producer. A batch the broker has not taken within
    ``patience_s`` fails the call.
    """
    topic = settings.topic("events")
    log.info(
        "producing events to %s for %d users / %d items at %s",
        topic,
        len(world.users),
        len(world.items),
        f"{rate:g}/s" if rate > 0 else "full speed",
    )
    loop = asyncio.get_running_loop()
    producer = _producer(settings, patience_s)
    await producer.start()
    sent = 0
    in_flight: deque[Any] = deque()
    try:
        start = loop.time()
        for event in events_iter:
            if stop is not None and stop.is_set():
                break
            if rate > 0:
                if not await _wait_until(loop, start + sent / rate, stop):
                    break
            else:
                event = dataclasses.replace(event, ts=round(time.time(), 3))
            if sent % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # when behind schedule, nothing else would yield
            in_flight.append(
                await producer.send(topic, key=event.user_id.encode(), value=event.to_json())
            )
            sent += 1
            if on_sent is not None:
                on_sent(event)
            oldest = _settle(in_flight, block_until=MAX_IN_FLIGHT)
            if oldest is not None:
                await oldest
        await producer.flush()
        while in_flight:
            await in_flight.popleft()
    finally:
        await producer.stop()
    return sent


async def _wait_until(
    loop: asyncio.AbstractEventLoop, due: float, stop: asyncio.Event | None
) -> bool:
    """Sleep until ``due`` (loop monotonic time) unless stopped first; False if stopped."""
    while True:
        remaining = due - loop.time()
        if remaining < MIN_SLEEP_S:
            return True
        await asyncio.sleep(min(remaining, MAX_SLEEP_S))
        if stop is not None and stop.is_set():
            return False


def run_simulate(
    settings: Settings,
    *,
    users: int,
    items: int,
    events: int,
    rate: float,
    seed: int,
    catalog: bool,
) -> int:
    """The ``socialrec simulate`` command: ``events=0`` runs until Ctrl-C, ``rate=0`` flat out.

    Returns the process exit code.
    """
    if users < 2 or items < 1 or events < 0 or rate < 0:
        print(
            "simulate: need --users >= 2, --items >= 1, --events >= 0, --rate >= 0",
            file=sys.stderr,
        )
        return 2
    world = generate_world(seed, users=users, items=items)
    try:
        return asyncio.run(_simulate(settings, world, events=events, rate=rate, catalog=catalog))
    except TopicAuthorizationFailedError as exc:
        print(
            f"simulate: Kafka at {settings.kafka_bootstrap} refused a topic to this user: {exc}"
            " (a frontend user may write `events` only: pass --no-catalog, or use a user with"
            " the right ACLs)",
            file=sys.stderr,
        )
        return 1
    except KafkaError as exc:
        print(
            f"simulate: Kafka at {settings.kafka_bootstrap} failed: {type(exc).__name__}: {exc}"
            " (is it running? try `socialrec infra up`)",
            file=sys.stderr,
        )
        return 1


async def _simulate(
    settings: Settings, world: World, *, events: int, rate: float, catalog: bool
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(sig, stop.set)
    items_sent = await produce_catalog(settings, world) if catalog else 0
    # Timestamps start now and advance at the target rate, so the worker sees live events.
    # Ids carry the start time: the worker de-duplicates by id, and a re-run with the same
    # seed must count as new events.
    started = time.time()
    stream = generate_events(
        world,
        world.seed,
        count=events or None,
        start_ts=started,
        mean_gap_s=1.0 / rate if rate > 0 else 0.0,
        id_prefix=f"sim-{world.seed}-{int(started * 1000):x}-",
    )
    began = time.monotonic()
    sent = await produce(settings, world, stream, rate, stop=stop)
    elapsed = max(time.monotonic() - began, 1e-9)
    target = f"{rate:g}/s" if rate > 0 else "full speed"
    print(
        f"simulate: sent {sent} events in {elapsed:.1f}s ({sent / elapsed:,.0f}/s, target {target})"
        f" to {settings.topic('events')}; catalog {items_sent} items"
        + ("; stopped early" if stop.is_set() else "")
    )
    return 0
