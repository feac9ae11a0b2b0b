"""``socialrec bench --workers 1,2,3``: what more workers in one group add on this machine.

For each worker count the same simulator stream (the bench's world, pre-generated once) runs
on fresh topics and a fresh Redis database: the workers start, the run waits until every one
owns partitions of ``events`` (the group has settled), then the stream is sent flat out and
the run waits until the group consumed all of it and the lists stopped coming. Reported per
count:

- aggregate events/s: events / (last list's append time - first event's append time), both
  on the broker's clock, so the group's whole pass over the stream counts; and the same until
  the learners had learnt everything too (on two cores a lone worker publishes first and
  leaves its learner behind, so the lists alone flatter it);
- the CPU seconds per event of the workers, their learners and Redis, over the same span:
  what one more event costs wherever it runs, the figures docs/scaling.md builds on;
- the learners' lag: how long after the last list they had learnt everything.

On a 2-core machine every extra worker competes with the others, their learners, Redis and
Kafka for the same two cores, so the aggregate cannot grow linearly; the per-event costs say
where the time goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from models.simulator import World, generate_events, generate_world
from streams.config import Settings
from streams.tools.bench.isolation import (
    BenchError,
    claim_redis_db,
    redis_cpu_s,
    redis_info,
    reset_redis_db,
    run_settings,
    use_log_append_time,
)
from streams.tools.bench.procfs import children, cpu_seconds
from streams.tools.bench.readback import TopicReader, append_times, output_latencies, partitions_of
from streams.tools.bench.run import POLL_S, RUN_TIMEOUT_S, learner_catch_up, run_once
from streams.tools.bench.scenarios import ITEMS, USERS
from streams.tools.processes import (
    CONSUMED,
    DEAD_LETTERS,
    ManagedProcess,
    free_port,
    metrics_url,
    scrape,
    worker_process,
)

#: How long the workers may take to start and share the partitions.
SETTLE_GROUP_S: Final = 120.0


async def run_scale(
    settings: Settings, counts: Sequence[int], events: int, seed: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Raw aiokafka's pass over the stream (the machine's yardstick in this run), then the
    figures above per worker count."""
    from streams.ops.topics import delete_topics_with_prefix

    run_id = f"{int(time.time())}-scale"
    run_dir = settings.data_dir / "bench" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    _db, redis_url = await claim_redis_db(settings, run_id)
    world = generate_world(seed, users=USERS, items=ITEMS)
    stream = list(generate_events(world, seed, count=events, start_ts=time.time(), mean_gap_s=0))
    figures: dict[str, Any] = {"workers": {}}
    say(f"e) scale-out: {events:,} events sent flat out to 1 worker and to {list(counts)}")
    try:
        base = run_settings(settings, run_id, "e", "passthrough", redis_url)
        r = await run_once(base, system="passthrough", scenario="throughput", world=world,
                           events=lambda: stream, rate=0.0, run_dir=run_dir, say=say)  # fmt: skip
        figures["passthrough_events_per_s"] = r["events_per_s"]
        say(f"  passthrough (raw aiokafka): {r['events_per_s']:,} events/s")
        for n in counts:
            await reset_redis_db(settings, redis_url, run_id)
            s = run_settings(settings, run_id, f"e{n}", "worker", redis_url)
            figures["workers"][str(n)] = r = await _one_count(s, n, world, stream, run_dir)
            say(
                f"  {n} worker(s): {r['events_per_s']:,} events/s; CPU per event: workers "
                f"{r['worker_cpu_ms_per_event']} ms, learners {r['learner_cpu_ms_per_event']} "
                f"ms, Redis {r['redis_cpu_ms_per_event']} ms"
            )
    finally:
        with contextlib.suppress(Exception):
            await delete_topics_with_prefix(
                settings.model_copy(update={"topic_prefix": f"bench-{run_id}."})
            )
        await reset_redis_db(settings, redis_url, run_id, release=True)
    figures["setup"] = {"run_id": run_id, "world": {"users": USERS, "items": ITEMS, "seed": seed}}
    return figures


@dataclass
class _GroupRun:
    """What one group of workers did with the stream: when they had consumed how much, when
    it settled, how long the learners took after, and the CPU seconds each part spent."""

    timeline: list[list[float]]
    settled_at: float
    learner_s: float | None
    worker_cpu_s: float
    learner_cpu_s: float
    redis_cpu_s: float


async def _run_group(
    settings: Settings, n: int, world: World, stream: list[Any], run_dir: Path
) -> _GroupRun:
    """Start ``n`` workers in one group, send them ``stream`` flat out, wait until they have
    consumed it and the learners have caught up, and stop them."""
    from streams.tools.simulate import produce

    # One group (the run's app id), each worker on its own HTTP port.
    group = [
        settings.model_copy(update={"web_port": free_port(settings.web_host)}) for _ in range(n)
    ]
    procs = [worker_process(s, run_dir / f"scale-{n}-{i}.log") for i, s in enumerate(group)]
    try:
        for proc, s in zip(procs, group, strict=True):
            await proc.start()
            await proc.wait_http(metrics_url(s))
        await _balanced(group, procs, partitions_of(settings, "events"))
        cpu_before = [_cpu_tree(p) for p in procs]
        redis_before = redis_cpu_s(await redis_info(settings))
        await produce(settings, world, stream, 0.0)
        timeline = await _consumed(group, procs, len(stream))
        settled, settled_at = time.monotonic(), time.time()
        learner_s = await learner_catch_up(settings, settled)
        cpu_after = [_cpu_tree(p) for p in procs]
        redis_after = redis_cpu_s(await redis_info(settings))
    finally:
        for proc in procs:
            await proc.stop()
    workers = sum(a[0] - b[0] for a, b in zip(cpu_after, cpu_before, strict=True))
    learners = sum(a[1] - b[1] for a, b in zip(cpu_after, cpu_before, strict=True))
    return _GroupRun(timeline, settled_at, learner_s, workers, learners, redis_after - redis_before)


async def _one_count(
    settings: Settings, n: int, world: World, stream: list[Any], run_dir: Path
) -> dict[str, Any]:
    from streams.ops.topics import apply_topics

    await apply_topics(settings)
    await use_log_append_time(settings, "recommendations")
    run = await _run_group(settings, n, world, stream, run_dir)
    appended = await append_times(settings)
    _, published, _ = await output_latencies(settings, "worker", appended, set(appended))
    if not published:
        raise BenchError(f"{n} workers published nothing; see {run_dir}")
    sizes = {name: await _mean_bytes(settings, name) for name in ("events", "recommendations")}
    span = max(published) - min(appended.values())
    per_second: dict[int, int] = {}
    for at in published:
        second = int(at - min(appended.values()))
        per_second[second] = per_second.get(second, 0) + 1
    per_event = 1000.0 / len(stream)
    return {
        "workers": n,
        "events": len(stream),
        "span_s": round(span, 2),
        "events_per_s": round(len(stream) / span, 1),
        # Until the learners had learnt it all too (this machine's clock, 0.25 s polls).
        "learnt_events_per_s": None
        if run.learner_s is None
        else round(len(stream) / (run.settled_at + run.learner_s - min(appended.values())), 1),
        "worker_cpu_ms_per_event": round(run.worker_cpu_s * per_event, 3),
        "learner_cpu_ms_per_event": round(run.learner_cpu_s * per_event, 3),
        "redis_cpu_ms_per_event": round(run.redis_cpu_s * per_event, 3),
        "learner_done_after_s": run.learner_s,
        "event_bytes": sizes["events"],
        "list_bytes": sizes["recommendations"],
        "lists_per_event": round(len(published) / len(stream), 3),
        "consumed_timeline": run.timeline,
        "lists_per_second": [per_second.get(t, 0) for t in range(max(per_second) + 1)],
    }


async def _mean_bytes(settings: Settings, logical: str) -> float:
    """Mean value size of a topic's records (for the brokers' share of docs/scaling.md)."""
    async with TopicReader(settings, logical) as reader:
        records = await reader.read_all()
    return round(sum(len(r.value or b"") for r in records) / max(1, len(records)), 1)


def _cpu_tree(proc: ManagedProcess) -> tuple[float, float]:
    """(the worker's CPU seconds, its learner children's)."""
    learners = [cpu_seconds(pid) or 0.0 for pid in children(proc.pid)]
    return cpu_seconds(proc.pid) or 0.0, sum(learners)


async def _balanced(group: list[Settings], procs: list[ManagedProcess], partitions: int) -> None:
    """Wait until every worker owns partitions and together they own them all."""

    async def owned() -> list[float]:
        snaps = [await scrape(metrics_url(s)) for s in group]
        return [snap.total("socialrec_partitions_owned") if snap else 0.0 for snap in snaps]

    await _until(lambda found: all(found) and sum(found) == partitions, owned, procs,
                 SETTLE_GROUP_S, "the workers to share the partitions")  # fmt: skip


async def _consumed(
    group: list[Settings], procs: list[ManagedProcess], target: int
) -> list[list[float]]:
    """Wait until the group consumed (or dead-lettered) ``target`` events; returns what each
    worker had handled at every poll, [seconds, worker 1, worker 2, ...]: where the run's
    time went (a stall, or a worker left behind)."""
    timeline: list[list[float]] = []
    began = time.monotonic()

    async def handled() -> float:
        counts = []
        for s in group:
            snap = await scrape(metrics_url(s))
            counts.append(snap.total(CONSUMED) + snap.total(DEAD_LETTERS) if snap else 0.0)
        timeline.append([round(time.monotonic() - began, 2), *counts])
        return sum(counts)

    await _until(lambda found: found >= target, handled, procs, RUN_TIMEOUT_S, "every event")
    return timeline


async def _until(
    done: Callable[[Any], bool],
    probe: Callable[[], Any],
    procs: list[ManagedProcess],
    timeout_s: float,
    what: str,
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done(await probe()):
        for proc in procs:
            if proc.returncode is not None:
                raise BenchError(f"a worker exited ({proc.returncode}); see {proc.log_path}")
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(POLL_S)


def scale_lines(figures: dict[str, Any]) -> list[str]:
    """The table of a scale-out run (its ``workers`` part).

    >>> row = {"workers": 1, "events_per_s": 3000.0, "learnt_events_per_s": 2000.0,
    ...        "worker_cpu_ms_per_event": 0.3, "learner_cpu_ms_per_event": 0.2,
    ...        "redis_cpu_ms_per_event": 0.1, "learner_done_after_s": 1.5}
    >>> print("\\n".join(scale_lines({"1": row})))
    workers  events/s  learnt/s  worker ms/ev  learner ms/ev  Redis ms/ev  learner done after
          1     3,000     2,000         0.300          0.200        0.100               1.5 s
    """
    lines = [
        "workers  events/s  learnt/s  worker ms/ev  learner ms/ev  Redis ms/ev  learner done after"
    ]
    for r in figures.values():
        lag, learnt = r["learner_done_after_s"], r["learnt_events_per_s"]
        lines.append(
            f"{r['workers']:>7}  {r['events_per_s']:>8,.0f}  "
            f"{'-' if learnt is None else f'{learnt:,.0f}':>8}"
            f"  {r['worker_cpu_ms_per_event']:>12.3f}  {r['learner_cpu_ms_per_event']:>13.3f}"
            f"  {r['redis_cpu_ms_per_event']:>11.3f}"
            f"  {'-' if lag is None else f'{lag:.1f} s':>18}"
        )
    return lines
