"""``socialrec bench``: throughput and event-to-publish latency on the real path.

Real Kafka, real Redis and a real worker subprocess, measured against two baselines run in the
same invocation (streams/baselines.py): a raw aiokafka consume-and-produce passthrough (the
machine's line rate) and a Faust agent that only forwards (the framework's ceiling), both
batched like the worker. The ratios say what Faust and socialrec's own work cost on top of
Kafka on this machine, which is more portable than the absolute figures.

Method, identical for both systems:

* Events come from the deterministic simulator (fixed seed) through its own ``produce``
  coroutine, timestamped near now.
* The events topic uses ``LogAppendTime``, so every event's broker append time is read back
  from the topic itself after the run. The bench's output topics are switched to
  ``LogAppendTime`` too, so both ends of a latency are broker clock readings: latency =
  output append time − trigger event append time (Kafka timestamps: 1 ms resolution). The
  worker names its trigger in ``trigger.event_id``; the baselines in a header.
* Results are read from Kafka after each run, so the bench process stays idle (apart from a
  metrics poll) while the system under test works on the machine's few cores.

Scenarios: (a) *throughput*: all events pre-loaded flat out, then the system started;
sustained events/s = events / (last publish − first publish). (b) *latency*: the system is
started and warmed up, then events arrive at a steady rate well below its capacity (500/s, or
a third of the worker's capacity measured in (a) if that is lower) for 20 s; p50/p99/max.

Every run gets unique topic prefixes (``bench-<run>.``; deleted afterwards), its own Faust
app id and web port, and an empty Redis database claimed for the run and flushed afterwards,
so runs neither see nor disturb other data.

>>> summarise([0.004, 0.001, 0.002, 0.003], events=4, first=10.0, last=12.0)["p50_ms"]
2.0
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import redis.exceptions

from models.events import Event
from models.simulator import World, generate_events, generate_world
from streams.baselines import BASELINES, EVENT_ID_HEADER
from streams.config import PROJECT_ROOT, Settings, redis_url_with_db
from streams.processes import (
    BATCH_SECONDS,
    BATCH_SIZE,
    CONSUMED,
    DEAD_LETTERS,
    LATENCY,
    REDIS_RTT,
    STAGE_SECONDS,
    DemoError,
    ManagedProcess,
    MetricsSnapshot,
    api_process,
    ensure_infra,
    free_port,
    histogram_quantile,
    metrics_url,
    release_infra,
    scrape,
    settings_env,
    worker_env,
    worker_process,
)
from streams.security import kafka_client_kwargs, redis_client_for

USERS: Final = 500  # the simulator's defaults, so figures match `socialrec simulate`/demo
ITEMS: Final = 2000
LATENCY_RATE: Final = 500.0
LATENCY_SECONDS: Final = 20.0
LATENCY_HEADROOM: Final = 3.0  # latency is measured at capacity / this (at most LATENCY_RATE)
WARMUP_EVENTS: Final = 50
SETTLE_S: Final = 1.5  # output quiet this long after everything was consumed = run finished
RUN_TIMEOUT_S: Final = 1800.0
POLL_S: Final = 0.5
READERS_WARMUP_S: Final = 0.5  # the readers' process connects and reads before measuring
READ_TIMEOUT_S: Final = 30.0
CLAIM_KEY: Final = "socialrec:bench:claim"
SYSTEMS: Final = ("worker", *BASELINES)


class BenchError(RuntimeError):
    """The benchmark could not produce trustworthy figures; the message says why."""


# --- per-run isolation -------------------------------------------------------------------------


async def claim_redis_db(settings: Settings, run_id: str) -> tuple[int, str]:
    """Find an empty database (14 down to 1) and mark it ours for the run.

    Database 0 is the demo's and 15 the test suite's (flushed before every test).
    """
    for db in range(14, 0, -1):
        url = redis_url_with_db(settings.redis_url, db)
        client = redis_client_for(settings, url)
        try:
            if await client.dbsize() == 0 and await client.set(CLAIM_KEY, run_id, nx=True, ex=7200):
                return db, url
        finally:
            await client.aclose()
    raise BenchError("no empty Redis database (1-14) to run in; free one with FLUSHDB")


async def reset_redis_db(
    settings: Settings, url: str, run_id: str, *, release: bool = False
) -> None:
    """Empty our database (fresh state for each worker run), keeping the claim unless done."""
    client = redis_client_for(settings, url)
    try:
        owner = await client.get(CLAIM_KEY)
        if owner is not None and owner not in (run_id, run_id.encode()):
            raise BenchError("the bench's Redis database was claimed by another run")
        await client.flushdb()
        if not release:
            await client.set(CLAIM_KEY, run_id, ex=7200)
    finally:
        await client.aclose()


async def redis_info(settings: Settings, url: str | None = None) -> dict[str, Any]:
    """Server-wide Redis counters (CPU, Lua calls): a profile of where batch time goes."""
    client = redis_client_for(settings, url)
    try:
        info: dict[str, Any] = await client.info("all")
        return info
    finally:
        await client.aclose()


def run_settings(
    base: Settings, run_id: str, scenario: str, system: str, redis_url: str
) -> Settings:
    """Settings for one (scenario, system) run: own topics, app id, port and Redis db."""
    return base.model_copy(
        update={
            "topic_prefix": f"bench-{run_id}.{scenario}-{system}.",
            "app_id": f"socialrec-bench-{run_id}-{scenario}-{system}",
            "web_port": free_port(base.web_host),
            "redis_url": redis_url,
        }
    )


async def use_log_append_time(settings: Settings, logical: str) -> None:
    """Make an output topic stamp records with broker time, like the events topic.

    AlterConfigs replaces a topic's overrides wholesale, so the declared set is sent too.
    """
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from streams.topics import load_topics

    spec = next(s for s in load_topics(settings.topics_file) if s.name == logical)
    configs = {**spec.broker_configs(), "message.timestamp.type": "LogAppendTime"}
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        responses = await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.topic(logical), configs=configs)]
        )
        for response in responses:
            for resource in response.to_object()["resources"]:
                if resource["error_code"]:
                    raise BenchError(f"could not set LogAppendTime: {resource}")
    finally:
        await admin.close()


# --- reading topics back -----------------------------------------------------------------------


def partitions_of(settings: Settings, logical: str) -> int:
    from streams.topics import load_topics

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


LOG_APPEND_TIME: Final = 1


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
    return {"stream_lists": len(ordered), **_tail_ms(ordered)}


def _ms(seconds: float) -> float:
    """Milliseconds rounded to 0.1 (Kafka timestamps are 1 ms)."""
    return round(seconds * 1000.0, 1)


def _tail_ms(ordered: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max of pre-sorted seconds, in ms (None when there are none)."""
    if not ordered:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": _ms(_quantile(ordered, 0.5)),
        "p99_ms": _ms(_quantile(ordered, 0.99)),
        "max_ms": _ms(ordered[-1]),
    }


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of pre-sorted values."""
    index = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def summarise(
    latencies: Sequence[float], *, events: int, first: float, last: float
) -> dict[str, Any]:
    """Figures for one run; milliseconds rounded to 0.1 (Kafka timestamps are 1 ms)."""
    ordered = sorted(latencies)
    span = last - first
    return {
        "events": events,
        "measured_outputs": len(ordered),
        "publish_span_s": round(span, 3),
        "events_per_s": round(events / span, 1) if span > 0 else None,
        **_tail_ms(ordered),
        "mean_ms": _ms(sum(ordered) / len(ordered)) if ordered else None,
    }


# --- one run of one system ---------------------------------------------------------------------


def _cpu_seconds(pid: int | None) -> float | None:
    """User+system CPU a live process has used (from /proc), for the profile."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _system_process(
    system: str, settings: Settings, log: Path, profile: Path | None
) -> ManagedProcess:
    if system == "worker":
        if profile is None:
            return worker_process(settings, log)
        # cProfile writes its file when the worker exits after SIGTERM (SystemExit is caught).
        args = ["cProfile", "-o", str(profile), "-m", "streams.cli", "worker"]
        return ManagedProcess("worker", args, worker_env(settings), log)
    return ManagedProcess(system, ["streams.baselines", system], settings_env(settings), log)


@dataclass
class Progress:
    """How far the system under test got, from its own signals."""

    system: str
    settings: Settings
    output: TopicReader
    last: MetricsSnapshot | None = None

    async def processed(self) -> int:
        """Events fully handled so far (worker: consumed + dead-lettered; baselines: copied)."""
        if self.system in BASELINES:
            return await self.output.count()
        snap = await scrape(metrics_url(self.settings))
        if snap is None:
            return 0
        self.last = snap
        return int(snap.total(CONSUMED) + snap.total(DEAD_LETTERS))


async def _wait_processed(
    progress: Progress, proc: ManagedProcess, target: int, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while await progress.processed() < target:
        if proc.returncode is not None:
            raise BenchError(
                f"{proc.name} exited with code {proc.returncode}; see {proc.log_path}"
                f"{proc.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise BenchError(f"{proc.name} did not process {target} events in {timeout_s:.0f}s")
        await asyncio.sleep(POLL_S)


async def _wait_settled(progress: Progress) -> None:
    """After the last event was consumed, wait until the output topic stops growing."""
    previous, quiet_since = -1, time.monotonic()
    deadline = quiet_since + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        count = await progress.output.count()
        if count != previous:
            previous, quiet_since = count, time.monotonic()
        elif time.monotonic() - quiet_since >= SETTLE_S:
            return
        await asyncio.sleep(POLL_S / 2)
    raise BenchError(f"the output topic kept growing for {RUN_TIMEOUT_S:.0f}s")


def _profile(
    before: dict[str, Any], after: dict[str, Any], snap: MetricsSnapshot | None, cpu: float | None
) -> dict[str, Any]:
    """Where the worker's time went, from its histograms and Redis's own counters."""
    out: dict[str, Any] = {"worker_cpu_s": round(cpu, 2) if cpu is not None else None}
    if snap is not None:
        batches = snap.total(f"{BATCH_SIZE}_count")
        redis_calls = snap.total(f"{REDIS_RTT}_count")
        batch_s = snap.total(f"{BATCH_SECONDS}_sum")
        redis_s = snap.total(f"{REDIS_RTT}_sum")
        out.update(
            batches=int(batches),
            mean_batch_events=round(snap.total(f"{BATCH_SIZE}_sum") / batches, 1)
            if batches
            else None,
            batch_processing_s=round(batch_s, 2),
            redis_roundtrip_s=round(redis_s, 2),
            redis_calls=int(redis_calls),
            python_and_kafka_in_batch_s=round(batch_s - redis_s, 2),
            worker_histogram_p50_ms=_hist_ms(snap, 0.5),
            worker_histogram_p99_ms=_hist_ms(snap, 0.99),
            # Wall time per stage of the batches (socialrec_stage_seconds): where a batch waits.
            stage_s={
                stage: round(seconds, 2)
                for stage, seconds in snap.by_label(f"{STAGE_SECONDS}_sum", "stage").items()
            },
        )

    def stat(info: dict[str, Any], name: str, key: str) -> float:
        value = info.get(name, {})
        return float(value.get(key, 0.0)) if isinstance(value, dict) else 0.0

    lua_calls = stat(after, "cmdstat_evalsha", "calls") - stat(before, "cmdstat_evalsha", "calls")
    lua_usec = stat(after, "cmdstat_evalsha", "usec") - stat(before, "cmdstat_evalsha", "usec")
    redis_cpu = sum(
        float(after.get(k, 0.0)) - float(before.get(k, 0.0))
        for k in ("used_cpu_user", "used_cpu_sys")
    )
    # Commands a script runs are counted in commandstats too: the script's time, by command.
    inside: dict[str, tuple[int, float]] = {}
    for name in after:
        if not name.startswith("cmdstat_") or name == "cmdstat_evalsha":
            continue
        calls = stat(after, name, "calls") - stat(before, name, "calls")
        if calls > 0:
            usec = stat(after, name, "usec") - stat(before, name, "usec")
            inside[name.removeprefix("cmdstat_")] = (int(calls), usec)
    top = sorted(inside.items(), key=lambda kv: -kv[1][1])[:10]
    out.update(
        redis_server_lua_calls=int(lua_calls),
        redis_server_lua_s=round(lua_usec / 1e6, 2),
        redis_server_cpu_s=round(redis_cpu, 2),
        redis_commands_in_window={
            name: {"calls": calls, "seconds": round(usec / 1e6, 2)} for name, (calls, usec) in top
        },
    )
    return out


def _hist_ms(snap: MetricsSnapshot, q: float) -> float | None:
    value = histogram_quantile(q, snap.buckets(LATENCY))
    return None if value is None else round(value * 1000.0, 1)


async def run_once(
    settings: Settings,
    *,
    system: str,
    scenario: str,
    world: World,
    events: Callable[[], Iterable[Event]],
    rate: float,
    run_dir: Path,
    profile: Path | None = None,
    say: Callable[[str], None],
    readers: int = 0,
) -> dict[str, Any]:
    """Produce, process and measure one (scenario, system) combination; with ``readers``
    (the worker's latency scenario only), that many HTTP readers read a `socialrec api`
    while the events are produced."""
    from streams.simulate import produce
    from streams.topics import apply_topics

    await apply_topics(settings)
    await use_log_append_time(settings, "recommendations")
    await use_log_append_time(settings, "trending")
    proc = _system_process(system, settings, run_dir / f"{scenario}-{system}.log", profile)
    learner_s: float | None = None
    reads: dict[str, Any] = {}
    info_before = await redis_info(settings) if system == "worker" else {}
    preload = scenario == "throughput"
    warmup = 0 if preload else WARMUP_EVENTS
    measured: list[Event] = []
    steady_from = time.time()  # (b): moved past the warm-up

    def keep(event: Event) -> None:
        measured.append(event)

    async with TopicReader(settings, "recommendations") as output:
        progress = Progress(system, settings, output)
        try:
            if preload:
                began = time.monotonic()
                await produce(settings, world, events(), 0.0, on_sent=keep)
                say(
                    f"  {system}: {len(measured):,} events pre-loaded in "
                    f"{time.monotonic() - began:.1f}s; starting it"
                )
            await proc.start()
            if system == "worker":
                await proc.wait_http(metrics_url(settings))
            cpu_ready = _cpu_seconds(proc.pid)  # start-up (imports, joining) is not the work
            if not preload:
                warm = list(
                    generate_events(
                        world, world.seed + 1, count=warmup, start_ts=time.time(), mean_gap_s=0.0
                    )
                )
                await produce(settings, world, warm, 0.0)
                await _wait_processed(progress, proc, warmup, 120.0)
                say(f"  {system}: warmed up; sending at {rate:g} events/s")
                steady_from = time.time()
                if readers:
                    # Readers of the warmed-up users' lists (published) and of trending, for
                    # as long as the events are produced.
                    users = sorted({e.user_id for e in warm})
                    steady = list(events())
                    span = len(steady) / rate
                    async with reading(settings, run_dir, users, readers, span) as figures:
                        await produce(settings, world, steady, rate, on_sent=keep)
                    reads = summarise_reads(await figures, readers)
                else:
                    await produce(settings, world, events(), rate, on_sent=keep)
            await _wait_processed(progress, proc, warmup + len(measured), RUN_TIMEOUT_S)
            await _wait_settled(progress)
            settled = time.monotonic()
            if system == "worker":
                await progress.processed()  # a last scrape, after everything was published
                learner_s = await _learner_catch_up(settings, settled)
            cpu_done = _cpu_seconds(proc.pid)
            cpu = cpu_done - cpu_ready if cpu_done is not None and cpu_ready is not None else None
        finally:
            await proc.stop()
    appended = await append_times(settings)
    ids = {e.event_id for e in measured}
    latencies, published, outputs = await output_latencies(settings, system, appended, ids)
    if not published:
        raise BenchError(f"{system} published nothing for the measured events; see {proc.log_path}")
    result = summarise(latencies, events=len(measured), first=min(published), last=max(published))
    result["outputs"] = outputs
    result["process_cpu_s"] = round(cpu, 2) if cpu is not None else None
    if system == "worker":
        # How long after the lists settled the learner (the worker's child) had learnt every
        # event: the staleness of the sources' candidates at the end of the run.
        result["learner_done_after_s"] = learner_s
        result["profile"] = _profile(info_before, await redis_info(settings), progress.last, cpu)
        if not preload:
            result["trending_freshness"] = await trending_freshness(settings, steady_from)
        if readers:
            result["readers"] = reads
    return result


@contextlib.asynccontextmanager
async def reading(
    settings: Settings, run_dir: Path, users: Sequence[str], readers: int, seconds: float
) -> AsyncIterator[asyncio.Future[dict[str, Any]]]:
    """A `socialrec api` on the run's Redis, and ``readers`` HTTP readers reading it for
    ``seconds`` from a process of their own (streams/readers.py), started as the block starts;
    the block gets their figures' future, and the api stops once they are done."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from streams.readers import read_for

    port = free_port(settings.web_host)
    api = api_process(settings, port, run_dir / "api.log")
    base = f"http://{settings.web_host}:{port}"
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        try:
            await api.start()
            await api.wait_http(f"{base}/health")
            # The pool's process imports and connects before the clock starts.
            await loop.run_in_executor(pool, read_for, base, users, 1, READERS_WARMUP_S, 0)
            figures = loop.run_in_executor(pool, read_for, base, users, readers, seconds, 1)
            yield figures
            await figures
        finally:
            await api.stop()


def summarise_reads(raw: dict[str, Any], readers: int) -> dict[str, Any]:
    """The readers' figures: requests per second, and p50/p99/max per kind of read."""
    latencies: dict[str, list[float]] = raw["latencies"]
    total = sum(len(values) for values in latencies.values())
    wall = raw["wall_s"]
    return {
        "readers": readers,
        "seconds": round(wall, 1),
        "requests_per_s": round(total / wall, 1) if wall > 0 else None,
        "failed": raw["failed"],
        **{
            kind: {"requests": len(values), **_tail_ms(values)}
            for kind, values in latencies.items()
        },
    }


async def _learner_catch_up(settings: Settings, since: float) -> float | None:
    """Seconds from ``since`` until the learner's group has committed every event (None if
    it had not after :data:`RUN_TIMEOUT_S`, or runs no learner)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.learner import learner_group

    if settings.learner != "child" or not settings.sources:
        return None
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        async with TopicReader(settings, "events") as events:
            total = await events.count()
            while time.monotonic() - since < RUN_TIMEOUT_S:
                done = await admin.list_consumer_group_offsets(learner_group(settings))
                if sum(max(0, meta.offset) for meta in done.values()) >= total:
                    return round(time.monotonic() - since, 1)
                await asyncio.sleep(POLL_S / 2)
    finally:
        await admin.close()
    return None


# --- where a batch's time goes, in-process -----------------------------------------------------


async def stage_profile(
    settings: Settings, world: World, seed: int, events: int, batch: int, redis_url: str
) -> dict[str, Any]:
    """Replay the throughput events through the worker's own stages, without Kafka.

    Same store (one Lua call per batch), same ranking and JSON as streams/pipeline/, timed
    separately; the Lua script's server-side time comes from Redis's commandstats, so the
    store call splits into "Redis executing the script" and "client side" (argument encoding,
    reply parsing by redis-py, decoding into views).
    """
    import redis.utils

    from models.recommend import RecommendParams, excluded_items, recommend, source_pool
    from streams.metrics import WorkerMetrics
    from streams.pipeline import InboundRecord, recommendations_json
    from streams.sources.factory import build_sources
    from streams.store import RedisStore
    from streams.worker import state_params

    client = redis_client_for(settings, redis_url)
    store = RedisStore(
        client,
        state_params(settings),
        neighbours_ttl_s=settings.neighbours_ttl_s,
        popular_ttl_s=settings.popular_ttl_s,
    )
    sources, _ = build_sources(client, settings, store.params, WorkerMetrics())
    # learn, candidates, Redis's CPU during both (the learner's cost to the publish path)
    source_s = {m.source.value: [0.0, 0.0, 0.0] for m in sources.models}
    params = RecommendParams(
        top_n=settings.top_n,
        exclude_items=settings.exclude_items,
        exclude_seen=settings.exclude_seen,
        half_life_s=settings.popularity_half_life_s,
        category_cap=0,  # the bench sends no catalog
        explore_slots=settings.explore_slots,
    )
    stream = list(generate_events(world, seed, count=events, start_ts=time.time(), mean_gap_s=0))
    trigger = InboundRecord(None, None, settings.topic("events"), 0, 0, time.time())
    store_s = rank_s = json_s = lua_s = 0.0
    lists = 0

    async def scripts_usec() -> float:
        stats = await client.info("commandstats")
        return float(stats.get("cmdstat_evalsha", {}).get("usec", 0))

    async def redis_cpu_s() -> float:
        stats = await client.info("cpu")
        return float(stats["used_cpu_user"]) + float(stats["used_cpu_sys"])

    try:
        for start in range(0, len(stream), batch):
            chunk = stream[start : start + batch]
            # The store's script alone: the sources run scripts of their own (item-CF).
            before = await scripts_usec()
            t0 = time.perf_counter()
            result = await store.process_batch(chunk)
            t1 = time.perf_counter()
            lua_s += (await scripts_usec() - before) / 1e6
            now = time.time()
            # Each source timed on its own (the worker gathers them; their time is mostly
            # Python, so it adds up on one event loop anyway).
            exclude = {u: excluded_items(v, params) for u, v in result.views.items()}
            extra: dict[str, dict[Any, Any]] = {u: {} for u in exclude}
            for model in sources.models:
                c0 = await redis_cpu_s()
                s0 = time.perf_counter()
                await model.learn(chunk)
                s1 = time.perf_counter()
                found = await model.candidates(list(exclude), exclude, sources.k, now)
                s2 = time.perf_counter()
                spent = source_s[model.source.value]
                spent[0] += s1 - s0
                spent[1] += s2 - s1
                spent[2] += await redis_cpu_s() - c0
                for user, candidates in found.items():
                    extra[user][model.source] = source_pool(model.source, candidates)
            t1b = time.perf_counter()
            ranked = [
                recommend(v, result.popular, params, now=now, extra=extra[u])
                for u, v in result.views.items()
            ]
            t2 = time.perf_counter()
            for recs in ranked:
                recommendations_json(recs, trigger, chunk[-1].event_id, settings.model_version)
            t3 = time.perf_counter()
            store_s, rank_s, json_s = store_s + t1 - t0, rank_s + t2 - t1b, json_s + t3 - t2
            lists += len(ranked)
    finally:
        await client.aclose()
    sources_total = sum(learn + cands for learn, cands, _redis in source_s.values())
    total = store_s + sources_total + rank_s + json_s
    return {
        "events": len(stream),
        "batch_events": batch,
        "lists_ranked": lists,
        "hiredis": bool(redis.utils.HIREDIS_AVAILABLE),
        "store_call_s": round(store_s, 2),
        "redis_lua_server_s": round(lua_s, 2),
        "store_client_side_s": round(store_s - lua_s, 2),
        "sources_s": round(sources_total, 2),
        "sources_ms_per_event": {
            name: {
                "learn": round(learn / len(stream) * 1e3, 3),
                "candidates": round(cands / len(stream) * 1e3, 3),
                "redis_cpu": round(redis / len(stream) * 1e3, 3),
            }
            for name, (learn, cands, redis) in source_s.items()
        },
        "ranking_s": round(rank_s, 2),
        "json_s": round(json_s, 2),
        "events_per_s_without_kafka": round(len(stream) / total, 1) if total else None,
    }


# --- the whole benchmark -----------------------------------------------------------------------


def reader_lines(reads: dict[str, Any]) -> list[str]:
    """The readers' figures, a line per kind of read."""
    lines = [
        f"{reads['readers']} readers: {reads['requests_per_s']:,} requests/s over "
        f"{reads['seconds']} s, {reads['failed']} failed"
    ]
    names = {"list": "published lists", "trending": "trending global", "computed": "ranked now"}
    for kind, name in names.items():
        k = reads[kind]
        if k["requests"]:
            lines.append(
                f"  {name}: {k['requests']:,} requests, p50 {k['p50_ms']} ms, "
                f"p99 {k['p99_ms']} ms, max {k['max_ms']} ms"
            )
    return lines


def _table(figures: dict[str, Any]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="socialrec bench: the worker next to a forwarding Faust agent and raw aiokafka"
    )
    for name in ("scenario", "system", "events", "events/s", "p50 ms", "p99 ms", "max ms"):
        table.add_column(name, justify="left" if name in ("scenario", "system") else "right")

    def cell(value: object) -> str:
        if value is None:
            return "–"
        return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"

    tput, lat = figures["throughput"], figures["latency"]
    for system in SYSTEMS:
        r = tput[system]
        table.add_row(
            "a) throughput (pre-loaded)" if system == "worker" else "",
            system,
            cell(r["events"]),
            cell(r["events_per_s"]),
            "",
            "",
            "",
        )
    table.add_section()
    for system in SYSTEMS:
        r = lat[system]
        table.add_row(
            f"b) latency at {lat['rate']:g} ev/s" if system == "worker" else "",
            system,
            cell(r["events"]),
            cell(r["events_per_s"]),
            cell(r["p50_ms"]),
            cell(r["p99_ms"]),
            cell(r["max_ms"]),
        )
    console = Console(width=110)
    with console.capture() as captured:
        console.print(table)
    lines = [captured.get()]
    ratios = ("worker_vs_passthrough", "worker_vs_faust_forward", "faust_forward_vs_passthrough")
    for name in ratios:
        ratio = tput.get(name)
        if ratio is not None:
            a, _, b = name.partition("_vs_")
            lines.append(f"throughput: {a} = {ratio:.3f} × {b}")
    for scenario, figures_of in (("a", tput), ("b", lat)):
        done = figures_of["worker"].get("learner_done_after_s")
        if done is not None:
            lines.append(f"{scenario}) the learner had learnt every event {done} s after the lists")
    prof = tput["worker"].get("profile") or {}
    if prof.get("batch_processing_s"):
        lines.append(
            f"worker in (a): {prof['batches']} batches of {prof['mean_batch_events']} events; "
            f"{prof['batch_processing_s']}s in batches, of which {prof['redis_roundtrip_s']}s "
            f"in the Redis call (Redis executed {prof['redis_server_lua_s']}s of scripts, the "
            "learner's included)"
        )
    serving = figures.get("serving")
    if serving:
        without = lat["worker"]
        lines.append(
            f"d) event path with readers: p50 {serving['p50_ms']} ms, p99 {serving['p99_ms']} ms, "
            f"max {serving['max_ms']} ms (without, in b: p50 {without['p50_ms']} ms, "
            f"p99 {without['p99_ms']} ms, max {without['max_ms']} ms)"
        )
        lines += [f"   {line}" for line in reader_lines(serving["readers"])]
    stages = figures.get("stages")
    if stages and "error" not in stages:
        lines.append(
            f"c) same events without Kafka: store call {stages['store_call_s']}s "
            f"(Lua in Redis {stages['redis_lua_server_s']}s, client side "
            f"{stages['store_client_side_s']}s, hiredis {stages['hiredis']}), sources "
            f"{stages.get('sources_s', 0)}s, ranking {stages['ranking_s']}s, "
            f"JSON {stages['json_s']}s = {stages['events_per_s_without_kafka']} events/s"
        )
        for name, cost in (stages.get("sources_ms_per_event") or {}).items():
            lines.append(
                f"   source {name}: learn {cost['learn']} ms/event, "
                f"candidates {cost['candidates']} ms/event, Redis CPU meanwhile "
                f"{cost.get('redis_cpu', '?')} ms/event"
            )
    return "\n".join(lines)


async def _bench(
    settings: Settings,
    events: int,
    seed: int,
    say: Callable[[str], None],
    profile: Path | None,
    rate: float | None = None,
    seconds: float | None = None,
    readers: int = 0,
) -> dict[str, Any]:
    from streams.topics import delete_topics_with_prefix

    run_id = f"{int(time.time())}-{os.getpid()}"
    run_dir = settings.data_dir / "bench" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    db, redis_url = await claim_redis_db(settings, run_id)
    say(f"run {run_id}: topics bench-{run_id}.*, Redis db {db}, logs in {run_dir}")
    world = generate_world(seed, users=USERS, items=ITEMS)
    figures: dict[str, Any] = {
        "throughput": {},
        "latency": {},
    }
    try:
        say(f"a) throughput: {events:,} events pre-loaded, then the system started")
        for system in SYSTEMS:
            s = run_settings(settings, run_id, "a", system, redis_url)
            await reset_redis_db(settings, redis_url, run_id)

            def preload() -> Iterable[Event]:
                return generate_events(
                    world, seed, count=events, start_ts=time.time(), mean_gap_s=0.0
                )

            figures["throughput"][system] = r = await run_once(
                s,
                system=system,
                scenario="throughput",
                world=world,
                events=preload,
                rate=0.0,
                run_dir=run_dir,
                profile=profile if system == "worker" else None,
                say=say,
            )
            say(f"  {system}: {r['events_per_s']:,} events/s over {r['publish_span_s']}s")
        tput = figures["throughput"]
        rates = {system: tput[system]["events_per_s"] or 0.0 for system in SYSTEMS}
        for a, b in (
            ("worker", "passthrough"),
            ("worker", "faust-forward"),
            ("faust-forward", "passthrough"),
        ):
            name = f"{a}_vs_{b}".replace("-", "_")
            tput[name] = round(rates[a] / rates[b], 4) if rates[b] else None
        worker_rate = rates["worker"]

        # A third of the pre-loaded capacity: at a low rate batches hold a few events, and each
        # event then pays for a full read of its user's state (pre-loaded batches share one
        # read per user), so the small-batch capacity is well below the figure from (a).
        if rate is None:
            rate = min(LATENCY_RATE, max(10.0, round(worker_rate / LATENCY_HEADROOM, -1)))
        count = int(rate * seconds) if seconds else min(events, int(rate * LATENCY_SECONDS))
        figures["latency"].update(rate=rate, seconds=round(count / rate, 1))
        say(f"b) latency: {count:,} events at {rate:g}/s after {WARMUP_EVENTS} warm-up events")
        gap_s = 1.0 / rate

        def steady() -> Iterable[Event]:
            return generate_events(world, seed, count=count, start_ts=time.time(), mean_gap_s=gap_s)

        async def at_rate(
            letter: str, scenario: str, system: str, readers: int = 0
        ) -> dict[str, Any]:
            """(b)'s stream at (b)'s rate through ``system``, on a fresh Redis database."""
            s = run_settings(settings, run_id, letter, system, redis_url)
            await reset_redis_db(settings, redis_url, run_id)
            return await run_once(
                s,
                system=system,
                scenario=scenario,
                world=world,
                events=steady,
                rate=rate,
                run_dir=run_dir,
                say=say,
                readers=readers,
            )

        for system in SYSTEMS:
            figures["latency"][system] = r = await at_rate("b", "latency", system)
            say(f"  {system}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms")
            if "trending_freshness" in r:
                t = r["trending_freshness"]
                say(
                    f"  {system}: {t['stream_lists']:,} live-stream trending lists with a newer "
                    f"event, event to list p50 {t['p50_ms']} ms, p99 {t['p99_ms']} ms, "
                    f"max {t['max_ms']} ms"
                )
        if readers:
            say(
                f"d) serving: the worker's latency scenario again, with {readers} HTTP readers "
                "on a `socialrec api` (published lists and global trending)"
            )
            figures["serving"] = r = await at_rate("d", "serving", "worker", readers)
            without = figures["latency"]["worker"]
            say(
                f"  worker: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms with the readers "
                f"(p50 {without['p50_ms']} ms, p99 {without['p99_ms']} ms without, in b)"
            )
            for line in reader_lines(r["readers"]):
                say(f"  {line}")
        batch = figures["throughput"]["worker"].get("profile", {}).get("mean_batch_events") or 100
        say(f"c) in-process stage profile: {events:,} events in batches of {round(batch)}")
        await reset_redis_db(settings, redis_url, run_id)
        try:
            figures["stages"] = r = await stage_profile(
                settings, world, seed, events, max(1, round(batch)), redis_url
            )
        except redis.exceptions.RedisError as exc:
            # The real-path figures above stand on their own; keep them and say what failed.
            figures["stages"] = {"error": f"{type(exc).__name__}: {exc}"}
            say(f"  stage profile failed ({type(exc).__name__}); figures (a) and (b) kept")
        else:
            say(
                f"  store {r['store_call_s']}s (Lua in Redis {r['redis_lua_server_s']}s), "
                f"sources {r['sources_s']}s, ranking {r['ranking_s']}s, JSON {r['json_s']}s: "
                f"{r['events_per_s_without_kafka']} events/s"
            )
    finally:
        with contextlib.suppress(Exception):
            deleted = await delete_topics_with_prefix(
                settings.model_copy(update={"topic_prefix": f"bench-{run_id}."})
            )
            say(f"deleted {len(deleted)} bench topics")
        await reset_redis_db(settings, redis_url, run_id, release=True)
    info = await redis_info(settings)
    figures["setup"] = {
        "run_id": run_id,
        "world": {"users": USERS, "items": ITEMS, "seed": seed},
        "batch_max": settings.batch_max,
        "batch_within_ms": settings.batch_within_ms,
        "redis_version": info.get("redis_version"),
        "kafka_version": settings.kafka_version,
    }
    return figures


def _code_version() -> str:
    """The commit measured, marked dirty when the working tree differs (figures move with it)."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def run_bench(
    settings: Settings,
    *,
    events: int,
    output: str | Path,
    seed: int,
    profile: Path | None = None,
    rate: float | None = None,
    seconds: float | None = None,
    soak_chunk: int = 0,
    readers: int = 0,
    workers: Sequence[int] = (),
) -> int:
    """``socialrec bench``: measure, print a table, write the figures to ``output``.

    ``profile`` (not on the command line) runs the throughput worker under cProfile and
    writes the stats there; its figures are then slower than a plain run. ``soak_chunk`` > 0
    runs the soak instead (streams/soak.py): ``events`` in chunks of that many. ``readers``
    > 0 adds scenario (d): (b)'s worker again with that many HTTP readers on a `socialrec api`.
    ``workers`` (counts) runs scenario (e) instead (streams/bench_scale.py).
    """
    if events < WARMUP_EVENTS:
        print(f"bench: need --events >= {WARMUP_EVENTS}", file=sys.stderr)
        return 2
    say: Callable[[str], None] = lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    # aiokafka logs (even at error level) while fresh topics elect leaders and while probing
    # for a broker; both are expected and retried here, and real failures raise anyway.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        started = ensure_infra(settings)
    except Exception as exc:
        print(f"bench: could not start the infrastructure: {exc}", file=sys.stderr)
        return 1
    began = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    figures: dict[str, Any]
    try:
        if soak_chunk > 0:
            from streams.soak import soak

            run = soak(settings, events=events, chunk=soak_chunk, seed=seed, say=say)
            figures = {"soak": asyncio.run(run)}
        elif workers:
            from streams.bench_scale import run_scale

            figures = {"scale": asyncio.run(run_scale(settings, workers, events, seed, say))}
        else:
            run = _bench(settings, events, seed, say, profile, rate, seconds, readers)
            figures = asyncio.run(run)
    except (BenchError, DemoError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        release_infra(settings, started)
    figures = {
        "command": f"socialrec bench --events {events} --seed {seed}"
        + (f" --rate {rate:g}" if rate is not None else "")
        + (f" --soak --chunk {soak_chunk}" if soak_chunk else "")
        + (f" --readers {readers}" if readers else "")
        + (f" --workers {','.join(map(str, workers))}" if workers else ""),
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - began, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_before": load_before,
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "code": _code_version(),
        "method": {
            "latency": "output LogAppendTime - trigger event LogAppendTime (broker clock, 1 ms)",
            "throughput": "events / (last output append time - first output append time), "
            "all events pre-loaded flat out before the system starts",
            "latency_load": "events produced at a fixed rate (simulator pacing) after warm-up",
            "baseline": "aiokafka getmany(batch_max, batch_within_ms) -> send futures -> gather",
        },
        **figures,
    }
    path = Path(output)
    if not path.is_absolute():
        path = Path.cwd() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2) + b"\n")
    if "soak" in figures:
        from streams.soak import soak_table

        print(soak_table(figures["soak"]))
    elif "scale" in figures:
        from streams.bench_scale import scale_lines

        print("\n".join(scale_lines(figures["scale"]["workers"])))
    else:
        print(_table(figures))
    shown = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
    print(f"figures written to {shown}")
    return 0
