"""The bench's scenarios, each run for the worker and both baselines
(streams/tools/bench/baselines.py).

(a) *throughput*: all events pre-loaded flat out, then the system started; sustained
events/s = events / (last publish − first publish). (b) *latency*: the system is started and
warmed up, then events arrive at a steady rate well below its capacity (500/s, or a third of
the worker's capacity measured in (a) if that is lower) for 20 s; p50/p99/max. (c) the
in-process stage profile (streams/tools/bench/stages.py). (d) with ``--readers``: (b)'s worker again
while HTTP readers read a `socialrec api`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import redis.exceptions

from models.events import Event
from models.simulator import World, generate_events, generate_world
from streams.config import Settings
from streams.tools.bench.baselines import SYSTEMS
from streams.tools.bench.isolation import claim_redis_db, redis_info, reset_redis_db, run_settings
from streams.tools.bench.readers import ReadLoad
from streams.tools.bench.report import reader_lines
from streams.tools.bench.run import WARMUP_EVENTS, run_once
from streams.tools.bench.stages import stage_profile

USERS: Final = 500  # the simulator's defaults, so figures match `socialrec simulate`/demo
ITEMS: Final = 2000
LATENCY_RATE: Final = 500.0
LATENCY_SECONDS: Final = 20.0
LATENCY_HEADROOM: Final = 3.0  # latency is measured at capacity / this (at most LATENCY_RATE)


@dataclass(frozen=True)
class Stream:
    """The simulator's stream for a run, generated afresh (timestamped from then) per call."""

    world: World
    seed: int
    count: int
    gap_s: float

    def __call__(self) -> Iterable[Event]:
        return generate_events(
            self.world, self.seed, count=self.count, start_ts=time.time(), mean_gap_s=self.gap_s
        )


@dataclass(frozen=True)
class Bench:
    """What every run of one invocation shares: its id, logs, Redis database and world."""

    settings: Settings
    run_id: str
    run_dir: Path
    redis_url: str
    world: World
    say: Callable[[str], None]

    async def fresh(self, letter: str, system: str) -> Settings:
        """A run's own settings, on the invocation's Redis database emptied for it."""
        s = run_settings(self.settings, self.run_id, letter, system, self.redis_url)
        await reset_redis_db(self.settings, self.redis_url, self.run_id)
        return s


async def run_scenarios(
    settings: Settings,
    events: int,
    seed: int,
    say: Callable[[str], None],
    profile: Path | None,
    rate: float | None = None,
    seconds: float | None = None,
    readers: ReadLoad | None = None,
) -> dict[str, Any]:
    """(a), (b), (d) if ``readers``, then (c); the figures of each, and the run's setup."""
    from streams.ops.topics import delete_topics_with_prefix

    run_id = f"{int(time.time())}-{os.getpid()}"
    run_dir = settings.data_dir / "bench" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    db, redis_url = await claim_redis_db(settings, run_id)
    say(f"run {run_id}: topics bench-{run_id}.*, Redis db {db}, logs in {run_dir}")
    world = generate_world(seed, users=USERS, items=ITEMS)
    bench = Bench(settings, run_id, run_dir, redis_url, world, say)
    figures: dict[str, Any] = {"throughput": {}, "latency": {}}
    try:
        say(f"a) throughput: {events:,} events pre-loaded, then the system started")
        tput = figures["throughput"] = await _throughput(
            bench, Stream(world, seed, events, 0.0), profile
        )
        # A third of the pre-loaded capacity: at a low rate batches hold a few events, and each
        # event then pays for a full read of its user's state (pre-loaded batches share one
        # read per user), so the small-batch capacity is well below the figure from (a).
        if rate is None:
            worker_rate = tput["worker"]["events_per_s"] or 0.0
            rate = min(LATENCY_RATE, max(10.0, round(worker_rate / LATENCY_HEADROOM, -1)))
        count = int(rate * seconds) if seconds else min(events, int(rate * LATENCY_SECONDS))
        figures["latency"].update(rate=rate, seconds=round(count / rate, 1))
        say(f"b) latency: {count:,} events at {rate:g}/s after {WARMUP_EVENTS} warm-up events")
        steady = Stream(world, seed, count, 1.0 / rate)
        await _latency(bench, steady, rate, figures["latency"])
        if readers:
            figures["serving"] = await _serving(bench, steady, rate, readers, figures["latency"])
        batch = tput["worker"].get("profile", {}).get("mean_batch_events") or 100
        figures["stages"] = await _stages(bench, seed, events, batch)
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


async def _throughput(bench: Bench, preload: Stream, profile: Path | None) -> dict[str, Any]:
    """(a) for every system, then the ratios of their events/s."""
    tput: dict[str, Any] = {}
    for system in SYSTEMS:
        s = await bench.fresh("a", system)
        tput[system] = r = await run_once(
            s,
            system=system,
            scenario="throughput",
            world=bench.world,
            events=preload,
            rate=0.0,
            run_dir=bench.run_dir,
            profile=profile if system == "worker" else None,
            say=bench.say,
        )
        bench.say(f"  {system}: {r['events_per_s']:,} events/s over {r['publish_span_s']}s")
    rates = {system: tput[system]["events_per_s"] or 0.0 for system in SYSTEMS}
    for a, b in (
        ("worker", "passthrough"),
        ("worker", "faust-forward"),
        ("faust-forward", "passthrough"),
    ):
        name = f"{a}_vs_{b}".replace("-", "_")
        tput[name] = round(rates[a] / rates[b], 4) if rates[b] else None
    return tput


async def _at_rate(
    bench: Bench,
    steady: Stream,
    rate: float,
    letter: str,
    scenario: str,
    system: str,
    readers: ReadLoad | None = None,
) -> dict[str, Any]:
    """(b)'s stream at (b)'s rate through ``system``, on a fresh Redis database."""
    return await run_once(
        await bench.fresh(letter, system),
        system=system,
        scenario=scenario,
        world=bench.world,
        events=steady,
        rate=rate,
        run_dir=bench.run_dir,
        say=bench.say,
        readers=readers,
    )


async def _latency(bench: Bench, steady: Stream, rate: float, into: dict[str, Any]) -> None:
    """(b) for every system, each one's figures added to ``into`` as it finishes."""
    say = bench.say
    for system in SYSTEMS:
        into[system] = r = await _at_rate(bench, steady, rate, "b", "latency", system)
        say(f"  {system}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms")
        if "trending_freshness" in r:
            t = r["trending_freshness"]
            say(
                f"  {system}: {t['stream_lists']:,} live-stream trending lists with a newer "
                f"event, event to list p50 {t['p50_ms']} ms, p99 {t['p99_ms']} ms, "
                f"max {t['max_ms']} ms"
            )


async def _serving(
    bench: Bench, steady: Stream, rate: float, readers: ReadLoad, latency: dict[str, Any]
) -> dict[str, Any]:
    """(d): (b)'s worker again, with ``readers`` on a `socialrec api`."""
    say = bench.say
    say(
        f"d) serving: the worker's latency scenario again, with {readers} "
        "on a `socialrec api` (published lists and global trending)"
    )
    r = await _at_rate(bench, steady, rate, "d", "serving", "worker", readers)
    without = latency["worker"]
    say(
        f"  worker: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms with the readers "
        f"(p50 {without['p50_ms']} ms, p99 {without['p99_ms']} ms without, in b)"
    )
    for line in reader_lines(r["readers"]):
        say(f"  {line}")
    return r


async def _stages(bench: Bench, seed: int, events: int, batch: float) -> dict[str, Any]:
    """(c) in batches of (a)'s mean size; a Redis failure is reported, not raised, since the
    real-path figures stand on their own."""
    say = bench.say
    say(f"c) in-process stage profile: {events:,} events in batches of {round(batch)}")
    await reset_redis_db(bench.settings, bench.redis_url, bench.run_id)
    try:
        r = await stage_profile(
            bench.settings, bench.world, seed, events, max(1, round(batch)), bench.redis_url
        )
    except redis.exceptions.RedisError as exc:
        say(f"  stage profile failed ({type(exc).__name__}); figures (a) and (b) kept")
        return {"error": f"{type(exc).__name__}: {exc}"}
    say(
        f"  store {r['store_call_s']}s (Lua in Redis {r['redis_lua_server_s']}s), "
        f"sources {r['sources_s']}s, ranking {r['ranking_s']}s, JSON {r['json_s']}s: "
        f"{r['events_per_s_without_kafka']} events/s"
    )
    return r
