"""One run of one system in one scenario: start it, feed it, wait for it, measure it.

Events come from the deterministic simulator (fixed seed) through its own ``produce``
coroutine, timestamped near now. Results are read from Kafka after each run (``readback``),
so the bench process stays idle (apart from a metrics poll) while the system under test works
on the machine's few cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from models.events import Event
from models.simulator import World, generate_events
from streams.config import Settings
from streams.security import kafka_client_kwargs
from streams.tools.bench.baselines import BASELINES
from streams.tools.bench.figures import summarise, summarise_reads
from streams.tools.bench.isolation import BenchError, redis_info, use_log_append_time
from streams.tools.bench.procfs import cpu_seconds
from streams.tools.bench.readback import (
    TopicReader,
    append_times,
    output_latencies,
    trending_freshness,
)
from streams.tools.bench.readers import ReadLoad
from streams.tools.bench.stages import worker_profile
from streams.tools.processes import (
    CONSUMED,
    DEAD_LETTERS,
    ManagedProcess,
    MetricsSnapshot,
    api_process,
    free_port,
    metrics_url,
    scrape,
    settings_env,
    worker_env,
    worker_process,
)

WARMUP_EVENTS: Final = 50
SETTLE_S: Final = 1.5  # output quiet this long after everything was consumed = run finished
RUN_TIMEOUT_S: Final = 1800.0
POLL_S: Final = 0.5
READERS_WARMUP_S: Final = 0.5  # the readers' process connects and reads before measuring


def _system_process(
    system: str, settings: Settings, log: Path, profile: Path | None
) -> ManagedProcess:
    if system == "worker":
        if profile is None:
            return worker_process(settings, log)
        # cProfile writes its file when the worker exits after SIGTERM (SystemExit is caught).
        args = ["cProfile", "-o", str(profile), "-m", "streams.cli", "worker"]
        return ManagedProcess("worker", args, worker_env(settings), log)
    return ManagedProcess(
        system, ["streams.tools.bench.baselines", system], settings_env(settings), log
    )


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


@dataclass
class Driven:
    """What a run's driving left to report: the process's CPU for the work, how long its
    learner lagged, when the steady stream began, and the readers' figures."""

    cpu: float | None
    learner_s: float | None
    steady_from: float
    reads: dict[str, Any]


async def wait_processed(
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
    readers: ReadLoad | None = None,
) -> dict[str, Any]:
    """Produce, process and measure one (scenario, system) combination; with ``readers``
    (the worker's latency scenario only), that many HTTP readers read a `socialrec api`
    while the events are produced."""
    from streams.ops.topics import apply_topics

    await apply_topics(settings)
    await use_log_append_time(settings, "recommendations")
    await use_log_append_time(settings, "trending")
    proc = _system_process(system, settings, run_dir / f"{scenario}-{system}.log", profile)
    info_before = await redis_info(settings) if system == "worker" else {}
    preload = scenario == "throughput"
    measured: list[Event] = []
    async with TopicReader(settings, "recommendations") as output:
        progress = Progress(system, settings, output)
        try:
            driven = await _drive(
                progress, proc, world, events, rate, run_dir, say, readers, preload, measured
            )
        finally:
            await proc.stop()
    appended = await append_times(settings)
    ids = {e.event_id for e in measured}
    latencies, published, outputs = await output_latencies(settings, system, appended, ids)
    if not published:
        raise BenchError(f"{system} published nothing for the measured events; see {proc.log_path}")
    result = summarise(latencies, events=len(measured), first=min(published), last=max(published))
    result["outputs"] = outputs
    cpu = driven.cpu
    result["process_cpu_s"] = round(cpu, 2) if cpu is not None else None
    if system == "worker":
        # How long after the lists settled the learner (the worker's child) had learnt every
        # event: the staleness of the sources' candidates at the end of the run.
        result["learner_done_after_s"] = driven.learner_s
        after = await redis_info(settings)
        result["profile"] = worker_profile(info_before, after, progress.last, cpu)
        if not preload:
            result["trending_freshness"] = await trending_freshness(settings, driven.steady_from)
        if readers:
            result["readers"] = driven.reads
    return result


async def _drive(
    progress: Progress,
    proc: ManagedProcess,
    world: World,
    events: Callable[[], Iterable[Event]],
    rate: float,
    run_dir: Path,
    say: Callable[[str], None],
    readers: ReadLoad | None,
    preload: bool,
    measured: list[Event],
) -> Driven:
    """Pre-load (a) or warm up and send at ``rate`` (b, d), then wait until every event was
    handled and the output settled; the events sent for measuring go to ``measured``."""
    from streams.tools.simulate import produce

    system, settings = progress.system, progress.settings
    if preload:
        began = time.monotonic()
        await produce(settings, world, events(), 0.0, on_sent=measured.append)
        say(
            f"  {system}: {len(measured):,} events pre-loaded in "
            f"{time.monotonic() - began:.1f}s; starting it"
        )
    await proc.start()
    if system == "worker":
        await proc.wait_http(metrics_url(settings))
    cpu_ready = cpu_seconds(proc.pid)  # start-up (imports, joining) is not the work
    steady_from, reads = time.time(), {}  # (b): moved past the warm-up
    if not preload:
        warm = list(
            generate_events(
                world, world.seed + 1, count=WARMUP_EVENTS, start_ts=time.time(), mean_gap_s=0.0
            )
        )
        await produce(settings, world, warm, 0.0)
        await wait_processed(progress, proc, WARMUP_EVENTS, 120.0)
        say(f"  {system}: warmed up; sending at {rate:g} events/s")
        steady_from = time.time()
        if readers:
            # Readers of the warmed-up users' lists (published) and of trending, for
            # as long as the events are produced.
            users = sorted({e.user_id for e in warm})
            steady = list(events())
            span = len(steady) / rate
            async with reading(settings, run_dir, users, readers, span) as figures:
                await produce(settings, world, steady, rate, on_sent=measured.append)
            reads = summarise_reads(await figures, readers)
        else:
            await produce(settings, world, events(), rate, on_sent=measured.append)
    warmup = 0 if preload else WARMUP_EVENTS
    cpu, learner_s = await _settle(progress, proc, warmup + len(measured), cpu_ready)
    return Driven(cpu, learner_s, steady_from, reads)


async def _settle(
    progress: Progress, proc: ManagedProcess, handled: int, cpu_ready: float | None
) -> tuple[float | None, float | None]:
    """Wait until ``handled`` events were handled and the output settled: the CPU the process
    spent since ``cpu_ready``, and how long the worker's learner took after."""
    await wait_processed(progress, proc, handled, RUN_TIMEOUT_S)
    await _wait_settled(progress)
    settled = time.monotonic()
    learner_s = None
    if progress.system == "worker":
        await progress.processed()  # a last scrape, after everything was published
        learner_s = await learner_catch_up(progress.settings, settled)
    cpu_done = cpu_seconds(proc.pid)
    cpu = cpu_done - cpu_ready if cpu_done is not None and cpu_ready is not None else None
    return cpu, learner_s


@contextlib.asynccontextmanager
async def reading(
    settings: Settings, run_dir: Path, users: Sequence[str], readers: ReadLoad, seconds: float
) -> AsyncIterator[asyncio.Future[dict[str, Any]]]:
    """A `socialrec api` on the run's Redis, and the ``readers`` reading it for
    ``seconds`` from a process of their own (streams/tools/bench/readers.py), started as the block
    starts; the block gets their figures' future, and the api stops once they are done."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from streams.tools.bench.readers import read_for

    port = free_port(settings.web_host)
    api = api_process(settings, port, run_dir / "api.log")
    base = f"http://{settings.web_host}:{port}"
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        try:
            await api.start()
            await api.wait_http(f"{base}/health")
            # The pool's process imports and connects before the clock starts.
            warm = ReadLoad(1)
            await loop.run_in_executor(pool, read_for, base, users, warm, READERS_WARMUP_S, 0)
            figures = loop.run_in_executor(pool, read_for, base, users, readers, seconds, 1)
            yield figures
            await figures
        finally:
            await api.stop()


async def learner_catch_up(settings: Settings, since: float) -> float | None:
    """Seconds from ``since`` until the learner's group has committed every event (None if
    it had not after :data:`RUN_TIMEOUT_S`, or runs no learner)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.runtime.learner import learner_group

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
