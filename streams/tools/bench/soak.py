"""``socialrec bench --soak``: does a worker's cost grow with the state it has built?

One worker (with its learner) runs through a long simulator stream over a large world
(100,000 users × 50,000 items by default), fed flat out in chunks. After each chunk the soak
records the chunk's throughput, Redis ``used_memory`` and the worker's and learner's resident
memory (Redis's growth since the start: ``used_memory`` counts every database of the server;
the learner may be behind then). After the last chunk it waits until the learner has learnt
every event and takes Redis's memory again, by key family; then it sends events at a steady
rate for a minute and reads the worker's own event → publish histogram over that minute
(broker append time of the event to the producer's acknowledgement of the list, both on this
machine's clock), how long after the worker the learner had learnt that minute too (one
that keeps up at that rate is done within about a second), and the CPU each process spent
an event meanwhile.

Throughput is chunk events / time from the chunk's first send until the worker had consumed
all of it, so a slower producer would show too (the simulator's producer sends about
40,000 events/s here, far above the worker).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from models.events import Event
from models.simulator import World, generate_events, generate_world
from streams.config import Settings
from streams.tools.bench.isolation import (
    claim_redis_db,
    redis_cpu_s,
    redis_info,
    reset_redis_db,
    run_settings,
)
from streams.tools.bench.procfs import children, cpu_seconds, rss_mb
from streams.tools.bench.readback import TopicReader
from streams.tools.bench.run import RUN_TIMEOUT_S, Progress, learner_catch_up, wait_processed
from streams.tools.bench.stages import redis_commands
from streams.tools.processes import (
    LATENCY,
    STAGE_SECONDS,
    ManagedProcess,
    bucket_delta,
    histogram_quantile,
    metrics_url,
    scrape,
    worker_process,
)

if TYPE_CHECKING:
    from streams.keys import Keys

SOAK_USERS: Final = 100_000
SOAK_ITEMS: Final = 50_000
#: The steady rate and length of the latency check at the end.
FINAL_RATE: Final = 1_000.0
FINAL_SECONDS: Final = 60.0


async def soak(
    settings: Settings, *, events: int, chunk: int, seed: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """One worker through ``events`` in chunks of ``chunk``, then a minute at
    :data:`FINAL_RATE`: a row of figures per chunk, Redis's memory by key family, and the
    latency at the end."""
    from streams.ops.topics import apply_topics, delete_topics_with_prefix

    run_id = f"{int(time.time())}-soak"
    run_dir = settings.data_dir / "bench" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    db, redis_url = await claim_redis_db(settings, run_id)
    s = run_settings(settings, run_id, "soak", "worker", redis_url)
    say(f"soak {run_id}: Redis db {db}, logs in {run_dir}")
    world = generate_world(seed, users=SOAK_USERS, items=SOAK_ITEMS)
    stream = generate_events(world, seed, count=events, start_ts=time.time(), mean_gap_s=0.0)
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {"world": {"users": SOAK_USERS, "items": SOAK_ITEMS}}
    await apply_topics(s)
    # Redis's used_memory is the server's (every database): the soak reports its growth.
    baseline = await _redis_mb(settings)
    figures["redis_used_memory_at_start_mb"] = baseline
    proc = worker_process(s, run_dir / "worker.log")
    try:
        async with TopicReader(s, "recommendations") as output:
            progress = Progress("worker", s, output)
            await proc.start()
            await proc.wait_http(metrics_url(s))
            done = 0
            while done < events:
                sending = itertools.islice(stream, chunk)
                row = await _chunk(settings, world, sending, progress, proc, done, baseline)
                if row is None:
                    break
                done = row["events"]
                rows.append(row)
                say(
                    f"  {done:,} events: {row['events_per_s']:,} events/s, Redis "
                    f"{row['redis_used_memory_mb']} MB, worker {row['worker_rss_mb']} MB, "
                    f"learner {row['learner_rss_mb']} MB; ms per event: "
                    f"CPU {row['cpu_ms_per_event']}, worker stages {row['stage_ms_per_event']}; "
                    f"users refreshed per event {row['refreshed_per_event']}"
                )
            figures["chunks"] = rows
            # A chunk's row is taken when the worker is done with it, the learner may still be
            # behind; the families are counted once it has learnt every event.
            figures["learner_caught_up_after_s"] = await learner_catch_up(s, time.monotonic())
            figures["redis_used_memory_mb_learnt"] = round(await _redis_mb(settings) - baseline, 1)
            say(
                f"  the learner learnt every event {figures['learner_caught_up_after_s']} s "
                f"later: Redis {figures['redis_used_memory_mb_learnt']} MB"
            )
            sizes, counts = await memory_by_family(s)
            figures["redis_by_family_mb"], figures["redis_keys_by_family"] = sizes, counts
            say(f"  Redis by key family (MB): {sizes}")
            say(f"  bytes a key: {bytes_a_key(sizes, counts)}")
            spent, began = await _costs(settings, s, proc.pid), time.monotonic()
            final = await _final_latency(world, seed, progress, proc, done, say)
            # A learner that keeps up at this rate is done within a second or so of the worker.
            final["learner_done_after_s"] = await learner_catch_up(s, time.monotonic())
            elapsed = time.monotonic() - began
            final.update(_final_costs(spent, await _costs(settings, s, proc.pid), elapsed))
            figures["final_latency"] = final
            say(f"  {figures['final_latency']}")
    finally:
        await proc.stop()
        with contextlib.suppress(Exception):
            await delete_topics_with_prefix(s)
        await reset_redis_db(settings, redis_url, run_id, release=True)
    if rows:
        first, last = rows[0]["events_per_s"], rows[-1]["events_per_s"]
        figures["end_vs_start"] = round(last / first, 3) if first else None
    return figures


async def _chunk(
    settings: Settings,
    world: World,
    events: Iterable[Event],
    progress: Progress,
    proc: ManagedProcess,
    done: int,
    baseline: float,
) -> dict[str, Any] | None:
    """Send one chunk flat out and wait until the worker has consumed it: the chunk's row of
    figures (None when the stream had no events left)."""
    from streams.tools.simulate import produce

    s = progress.settings
    began = time.monotonic()
    spent = await _costs(settings, s, proc.pid)
    sent = await produce(s, world, events, 0.0)
    if sent == 0:
        return None
    await wait_processed(progress, proc, done + sent, RUN_TIMEOUT_S)
    done += sent
    return {
        "events": done,
        "events_per_s": round(sent / (time.monotonic() - began), 1),
        "redis_used_memory_mb": round(await _redis_mb(settings) - baseline, 1),
        "worker_rss_mb": rss_mb(proc.pid),
        "learner_rss_mb": [rss_mb(p) for p in children(proc.pid)],
        **_per_event(spent, await _costs(settings, s, proc.pid), sent),
    }


async def _final_latency(
    world: World,
    seed: int,
    progress: Progress,
    proc: ManagedProcess,
    done: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """:data:`FINAL_SECONDS` at :data:`FINAL_RATE` after the chunks: the worker's p50/p99."""
    from streams.tools.simulate import produce

    s = progress.settings
    say(f"  steady {FINAL_RATE:g} events/s for {FINAL_SECONDS:g} s")
    before = await scrape(metrics_url(s))
    count = int(FINAL_RATE * FINAL_SECONDS)
    steady = generate_events(
        world, seed + 1, count=count, start_ts=time.time(), mean_gap_s=1 / FINAL_RATE
    )
    await produce(s, world, steady, FINAL_RATE)
    await wait_processed(progress, proc, done + count, RUN_TIMEOUT_S)
    after = await scrape(metrics_url(s))
    return _latency(before, after)


def _final_costs(before: dict[str, Any], after: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The steady minute's CPU per event of each process (over ``seconds``: until the learner
    was done with it too), and the share of one core the learner had meanwhile. A learner
    under one core that still lags waits, on Redis or for a core the others keep busy: their
    figures say which.

    >>> _final_costs({"worker": 1.0, "learner": 2.0, "redis": 3.0, "stages": {}, "refreshed": 0},
    ...              {"worker": 31.0, "learner": 32.0, "redis": 15.0, "stages": {},
    ...               "refreshed": 15000}, 60.0)  # doctest: +NORMALIZE_WHITESPACE
    {'cpu_ms_per_event': {'worker': 0.5, 'learner': 0.5, 'redis': 0.2},
     'refreshed_per_event': 0.25, 'learner_core_share': 0.5}
    """
    count = int(FINAL_RATE * FINAL_SECONDS)
    used = _per_event(before, after, count)
    used.pop("stage_ms_per_event")
    busy = (after["learner"] - before["learner"]) / max(seconds, 1e-9)
    # Which commands Redis's CPU went on (scripts by the commands they ran), per event.
    commands = redis_commands(before.get("info", {}), after.get("info", {}), top=8)
    per_event = {n: [round(c / count, 2), round(us / count, 1)] for n, (c, us) in commands.items()}
    if per_event:
        used["redis_calls_and_us_per_event"] = per_event
    return {**used, "learner_core_share": round(busy, 2)}


async def _costs(settings: Settings, worker: Settings, pid: int | None) -> dict[str, Any]:
    """CPU seconds so far of the worker, its learner and Redis, the worker's seconds per
    stage, and the users whose pools the learner computed: their growth over a chunk says
    which of them grows with the state, and whether a learner's CPU went on more refreshes
    or on dearer ones (it paces them to its lag: streams/runtime/refresh.py)."""
    from streams.runtime.learner_state import LearnerState
    from streams.security import redis_client_for

    info = await redis_info(settings)
    snap = await scrape(metrics_url(worker))
    client = redis_client_for(worker)
    try:
        learnt = await LearnerState(client).progress()
    finally:
        await client.aclose()
    return {
        "worker": cpu_seconds(pid) or 0.0,
        "learner": sum(cpu_seconds(child) or 0.0 for child in children(pid)),
        "redis": redis_cpu_s(info),
        "stages": {} if snap is None else snap.by_label(f"{STAGE_SECONDS}_sum", "stage"),
        "refreshed": 0 if learnt is None else learnt.refreshed,
        "info": info,
    }


def _per_event(before: dict[str, Any], after: dict[str, Any], events: int) -> dict[str, Any]:
    """Milliseconds per event over a chunk: each process's CPU (the learner's lags: it
    may still be learning the chunk when the worker is done) and each of the worker's stages
    (wall time of its batches); and the users the learner refreshed per event meanwhile.

    >>> _per_event({"worker": 1.0, "learner": 0.5, "redis": 2.0, "stages": {"state": 1.0},
    ...             "refreshed": 100},
    ...            {"worker": 3.0, "learner": 1.5, "redis": 3.0, "stages": {"state": 2.5},
    ...             "refreshed": 400}, 1000)  # doctest: +NORMALIZE_WHITESPACE
    {'cpu_ms_per_event': {'worker': 2.0, 'learner': 1.0, 'redis': 1.0},
     'refreshed_per_event': 0.3, 'stage_ms_per_event': {'state': 1.5}}
    """
    scale = 1000.0 / max(events, 1)
    cpu = {k: round((after[k] - before[k]) * scale, 3) for k in ("worker", "learner", "redis")}
    refreshed = round((after["refreshed"] - before["refreshed"]) / max(events, 1), 3)
    stages = {
        stage: round((seconds - before["stages"].get(stage, 0.0)) * scale, 3)
        for stage, seconds in after["stages"].items()
    }
    return {"cpu_ms_per_event": cpu, "refreshed_per_event": refreshed, "stage_ms_per_event": stages}


async def memory_by_family(settings: Settings) -> tuple[dict[str, float], dict[str, int]]:
    """``MEMORY USAGE`` of every key of the run, summed per family (``user:pools``,
    ``item:dot``, …; MB, largest first), and each family's number of keys: where the growth
    goes, and whether a family grew by its keys or by their size."""
    from streams.keys import Keys, decoded
    from streams.security import redis_client_for

    keys = Keys()
    totals: dict[str, int] = {}
    counts: dict[str, int] = {}
    client = redis_client_for(settings)
    try:
        batch: list[str] = []
        async for raw in client.scan_iter(match=f"{keys.prefix}*", count=2_000):
            batch.append(decoded(raw))
            if len(batch) >= 2_000:
                await _add_sizes(client, keys, batch, totals, counts)
        if batch:
            await _add_sizes(client, keys, batch, totals, counts)
    finally:
        await client.aclose()
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return {family: round(size / 2**20, 1) for family, size in ranked}, counts


def bytes_a_key(sizes: dict[str, float], counts: dict[str, int]) -> dict[str, int]:
    """Each family's mean key size (bytes), from :func:`memory_by_family`'s figures.

    >>> bytes_a_key({"user:history": 1.0}, {"user:history": 1024})
    {'user:history': 1024}
    """
    return {f: round(mb * 2**20 / counts[f]) for f, mb in sizes.items() if counts.get(f)}


async def _add_sizes(
    client: Any, keys: Keys, batch: list[str], totals: dict[str, int], counts: dict[str, int]
) -> None:
    """Add the ``MEMORY USAGE`` of a batch of keys to their families' totals and key counts;
    empties it."""
    async with client.pipeline(transaction=False) as pipe:
        for key in batch:
            pipe.memory_usage(key, samples=0)
        sizes = await pipe.execute()
    for key, size in zip(batch, sizes, strict=True):
        try:
            scope, _, field = keys.parse(key)
            family = f"{scope}:{field}"
        except ValueError:
            family = "other"
        totals[family] = totals.get(family, 0) + int(size or 0)
        counts[family] = counts.get(family, 0) + 1
    batch.clear()


async def _redis_mb(settings: Settings) -> float:
    info = await redis_info(settings)
    return round(float(info.get("used_memory", 0)) / 2**20, 1)


def _latency(before: Any, after: Any) -> dict[str, float | None]:
    """p50/p99 of the worker's event → publish histogram between two scrapes (ms)."""
    if before is None or after is None:
        return {"p50_ms": None, "p99_ms": None}
    buckets = bucket_delta(after.buckets(LATENCY), before.buckets(LATENCY))
    out: dict[str, float | None] = {}
    for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99)):
        value = histogram_quantile(q, buckets)
        out[name] = None if value is None else round(value * 1000.0, 1)
    return out


def soak_table(figures: dict[str, Any]) -> str:
    """The soak's figures as plain lines.

    >>> print(soak_table({"chunks": [{"events": 10, "events_per_s": 5.0,
    ...     "redis_used_memory_mb": 1.0, "worker_rss_mb": 2.0, "learner_rss_mb": [3.0]}],
    ...     "final_latency": {"p50_ms": 4.0, "p99_ms": 9.0}, "end_vs_start": 1.0}))
    events  events/s  Redis MB  worker MB  learner MB
        10       5.0       1.0        2.0         3.0
    end/start throughput 1.0; at 1000/s at the end: p50 4.0 ms, p99 9.0 ms
    """
    lines = ["events  events/s  Redis MB  worker MB  learner MB"]
    for row in figures.get("chunks", []):
        learner = ",".join(str(m) for m in row["learner_rss_mb"]) or "-"
        lines.append(
            f"{row['events']:>6,}  {row['events_per_s']:>8}  {row['redis_used_memory_mb']:>8}  "
            f"{row['worker_rss_mb']:>9}  {learner:>10}"
        )
    if figures.get("redis_used_memory_mb_learnt") is not None:
        lines.append(
            f"once the learner had learnt every event "
            f"({figures.get('learner_caught_up_after_s')} s later): Redis "
            f"{figures['redis_used_memory_mb_learnt']} MB"
        )
    final = figures.get("final_latency", {})
    lines.append(
        f"end/start throughput {figures.get('end_vs_start')}; at {FINAL_RATE:g}/s at the end: "
        f"p50 {final.get('p50_ms')} ms, p99 {final.get('p99_ms')} ms"
    )
    if "learner_done_after_s" in final:
        lines.append(f"the learner done with it {final['learner_done_after_s']} s after the worker")
    if "cpu_ms_per_event" in final:
        lines.append(
            f"CPU ms an event meanwhile {final['cpu_ms_per_event']}, the learner on "
            f"{final['learner_core_share']} of a core"
        )
    return "\n".join(lines)
