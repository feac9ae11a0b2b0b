"""The simulator's producer against the real broker: what lands in the topics, keyed how."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from aiokafka import AIOKafkaConsumer

from models.events import Event, parse_event
from models.simulator import generate_events, generate_world
from streams.config import Settings
from streams.security import kafka_client_kwargs
from streams.tools.simulate import produce, produce_catalog


async def consume(settings: Settings, logical: str, expected: int) -> list[Any]:
    """Read a topic from the beginning until ``expected`` records arrived (or 30 s passed)."""
    consumer = AIOKafkaConsumer(
        settings.topic(logical),
        **kafka_client_kwargs(settings),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + 30
        while len(records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_catalog_lands_keyed_by_item(settings: Settings) -> None:
    world = generate_world(5, users=20, items=120)
    assert await produce_catalog(settings, world) == 120
    records = await consume(settings, "catalog", 120)
    by_key = {r.key: r.value for r in records}
    assert by_key == {i.item_id.encode(): i.to_json() for i in world.items}


async def test_paced_events_land_keyed_by_user_in_order(settings: Settings) -> None:
    world = generate_world(5, users=40, items=150)
    rate = 1000.0
    events = list(generate_events(world, 5, 400, start_ts=time.time(), mean_gap_s=1 / rate))
    started = time.monotonic()
    assert await produce(settings, world, events, rate) == 400
    elapsed = time.monotonic() - started
    assert elapsed >= 0.38  # paced: 400 events at 1000/s take about 0.4 s, never less

    records = await consume(settings, "events", 400)
    assert len(records) == 400
    now = time.time()
    received: dict[str, list[str]] = collections.defaultdict(list)
    for record in records:
        event = parse_event(record.value, now=now)
        assert isinstance(event, Event)
        assert record.key == event.user_id.encode()
        received[event.user_id].append(event.event_id)
    # Keying by user keeps each user's actions in order (one partition per user).
    sent: dict[str, list[str]] = collections.defaultdict(list)
    for event in events:
        sent[event.user_id].append(event.event_id)
    assert received == sent


async def test_stop_ends_an_endless_stream(settings: Settings) -> None:
    world = generate_world(6, users=30, items=100)
    stop = asyncio.Event()
    endless = generate_events(world, 6, None, start_ts=time.time(), mean_gap_s=0.001)
    task = asyncio.create_task(produce(settings, world, endless, 0, stop))
    await asyncio.sleep(0.5)
    stop.set()
    sent = await asyncio.wait_for(task, timeout=30)
    assert sent > 0
    records = await consume(settings, "events", sent)
    assert len(records) == sent  # everything sent before the stop was delivered
