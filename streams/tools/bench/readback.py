"""Reading a run's topics back from Kafka after it, so the bench stays idle while it runs.

The events topic uses ``LogAppendTime``, and the bench switches its output topics to it too
(``isolation.use_log_append_time``), so both ends of a latency are broker clock readings:
latency = output append time − trigger event append time (Kafka timestamps: 1 ms
resolution). The worker names its trigger in ``trigger.event_id``; the baselines in a header.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

from streams.config import Settings
from streams.security import kafka_client_kwargs
from streams.tools.bench.baselines import BASELINES, EVENT_ID_HEADER
from streams.tools.bench.figures import tail_ms
from streams.tools.bench.isolation import BenchError

READ_TIMEOUT_S: Final = 30.0
LOG_APPEND_TIME: Final = 1


def partitions_of(settings: Settings, logical: str) -> int:
    from streams.ops.topics import load_topics

    return next(s.partitions for s in load_topics(settings.topics_file) if s.name == logical)


class TopicReader:
    """End offsets and full reads of one topic, without a consumer group."""

    def __init__(self, settings: Settings, logical: str) -> None:
        from aiokafka import TopicPartition

        self.settings = settings
        self.topic = settings.topic(logical)
        self.partitions = [
            TopicPartition(self.topic, p) for p in range(partitions_of(settings, logical))
        ]
        self._consumer: Any = None

    async def __aenter__(self) -> TopicReader:
        from aiokafka import AIOKafkaConsumer

        self._consumer = AIOKafkaConsumer(
            **kafka_client_kwargs(self.settings),
            group_id=None,
            enable_auto_commit=False,
            client_id="socialrec-bench-reader",
            auto_offset_reset="earliest",  # never "latest": a reset must not skip records
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self._consumer.start()
        self._consumer.assign(self.partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def count(self) -> int:
        ends: dict[Any, int] = await self._consumer.end_offsets(self.partitions)
        return sum(ends.values())

    async def read_all(self) -> list[Any]:
        """Every record currently in the topic, partition by partition."""
        consumer = self._consumer
        ends: dict[Any, int] = await consumer.end_offsets(self.partitions)
        await consumer.seek_to_beginning(*self.partitions)
        records: list[Any] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while True:
            positions = {tp: await consumer.position(tp) for tp in self.partitions}
            behind = [tp for tp in self.partitions if positions[tp] < ends[tp]]
            if not behind:
                return records
            if time.monotonic() > deadline:
                stuck = {tp.partition: (positions[tp], ends[tp]) for tp in behind}
                raise BenchError(
                    f"could not read {self.topic} back within {READ_TIMEOUT_S:.0f}s "
                    f"(partition: (position, end) {stuck})"
                )
            batches = await consumer.getmany(*behind, timeout_ms=500, max_records=10_000)
            for batch in batches.values():
                records.extend(batch)


async def append_times(settings: Settings) -> dict[str, float]:
    """Each event's broker append time (Unix seconds), read back from the events topic."""
    async with TopicReader(settings, "events") as reader:
        records = await reader.read_all()
    times: dict[str, float] = {}
    for record in records:
        if record.timestamp_type != LOG_APPEND_TIME:
            raise BenchError(f"{reader.topic} does not use LogAppendTime; re-apply topics.yaml")
        times[orjson.loads(record.value)["event_id"]] = record.timestamp / 1000.0
    return times


def trigger_id(system: str, record: Any) -> str | None:
    if system in BASELINES:
        for key, value in record.headers or ():
            if key == EVENT_ID_HEADER:
                return bytes(value).decode()
        return None
    if record.value is None:
        return None
    trigger = orjson.loads(record.value).get("trigger") or {}
    event_id = trigger.get("event_id")
    return str(event_id) if event_id is not None else None


async def output_latencies(
    settings: Settings, system: str, appended: dict[str, float], measured: set[str]
) -> tuple[list[float], list[float], int]:
    """(latencies in s, output append times, outputs) for outputs triggered by ``measured``."""
    async with TopicReader(settings, "recommendations") as reader:
        records = await reader.read_all()
    latencies: list[float] = []
    published: list[float] = []
    for record in records:
        if record.timestamp_type != LOG_APPEND_TIME:
            raise BenchError(f"{reader.topic} does not use LogAppendTime")
        event_id = trigger_id(system, record)
        if event_id is None or event_id not in measured or event_id not in appended:
            continue
        at = record.timestamp / 1000.0
        latencies.append(at - appended[event_id])
        published.append(at)
    return latencies, published, len(records)


async def trending_freshness(settings: Settings, since: float) -> dict[str, Any]:
    """How soon a live stream's trending list showed its newest event: for each ``stream:``
    list on the ``trending`` topic that counts a newer event than the scope's list before it,
    its append time less that event's arrival (both the broker's clock), over the lists
    published after ``since``. (A list published again only because its window slid shows
    nothing new and is left out.)"""
    async with TopicReader(settings, "trending") as reader:
        records = await reader.read_all()
    ages: list[float] = []
    shown: dict[str, float] = {}  # scope -> newest event its last list counted
    for record in sorted(records, key=lambda r: r.timestamp):
        if record.timestamp_type != LOG_APPEND_TIME:
            raise BenchError(f"{reader.topic} does not use LogAppendTime")
        body = orjson.loads(record.value)
        scope, newest = str(body.get("scope", "")), body.get("newest_event_at")
        if not scope.startswith("stream:") or newest is None or newest <= shown.get(scope, 0.0):
            continue
        shown[scope] = newest
        at = record.timestamp / 1000.0
        if at >= since:
            ages.append(at - newest)
    ordered = sorted(ages)
    return {"stream_lists": len(ordered), **tail_ms(ordered)}
