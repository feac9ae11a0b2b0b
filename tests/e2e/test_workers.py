"""Several workers, one answer: the same stream through one worker and through three workers in
one consumer group (each run on its own topics and Redis database) ends in the same state.

Per-user state has one writer (its partition's owner), and what spans users is built from
increments that merge in any order, so the two runs must agree: exactly for every count, set
and list, and to the last few bits for sums of floats that three learners add in another
order. Popularity is compared as decayed to one time (each run's landmark is the time of the
first event it happened to apply). What depends on when, where or in which order an event was
handled is left out, each with its reason in :data:`PER_RUN` and :func:`_comparable`.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, NamedTuple, cast

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from redis.asyncio.cluster import RedisCluster

from models.events import Event
from models.simulator import generate_events, generate_world
from streams.config import Settings, redis_url_with_db
from streams.keys import Keys, decoded
from streams.ops.topics import apply_topics, delete_topics_with_prefix
from streams.runtime.consumer import events_group
from streams.runtime.learner import learner_group
from streams.runtime.worker import state_params
from streams.security import kafka_client_kwargs, redis_client_for
from streams.tools.chaos_mf import (
    AUC_TOLERANCE,
    kafka_order,
    learnt_beyond_chance,
    mean_auc,
    replay_mf,
    stored_mf,
)
from streams.tools.replay import group_caught_up
from tests.conftest import TEST_REDIS_DB, kill_master_of, running_redis_cluster
from tests.e2e import conftest as e2e

EVENTS = 3000
#: Where the search for the free ports of the cluster whose master a test kills starts.
FAILOVER_PORTS_FROM = 21800
#: Popularity of both runs is compared as decayed to this time (any time does).
T_COMMON = 1_800_000_000.0
HALF_LIFE_S = Settings().popularity_half_life_s
#: Key families whose values depend on the run, not on the events: when an event arrived
#: (trending buckets and lists, merchants' minutes, the learner's progress), which batch or
#: refresh it fell in (pools, cached lists, offsets), and what is learnt in arrival order:
#: MF's factors and ledgers (SGD) and item-CF's cosines (each scored with the shrinkage learnt
#: by then). MF is compared apart, with the chaos run's tolerance (:func:`_assert_same_state`).
#: The learned popularity's rows are each learner's own partitions, last writer wins per item
#: (docs/quality.md: merging them is left for scale-out), and its withdrawals are consumed.
#: The hand-offs' numbers count the learners' steps (streams/sources/handoff.py).
PER_RUN = (
    "}t:", "}tn:", "}tv:", ":tp:", ":pools", ":recommendations", "}offsets", "}learner",
    "}trending_changed", "sr:m:", ":trend_log", ":mf", ":sim", "}landmark",
    "}popularity_learnt", "}popularity_withdrawn", "}ho_seq", "}ho_applied", "}mf_",
    "}version",  # counts the run's steps
)  # fmt: skip


@pytest.fixture
async def second(settings: Settings) -> AsyncIterator[Settings]:
    """Another topic prefix and Redis database for the three workers' run."""
    other = settings.model_copy(
        update={
            "topic_prefix": f"t{uuid.uuid4().hex[:12]}.",
            "redis_url": redis_url_with_db(settings.redis_url, TEST_REDIS_DB - 1),
        }
    )
    await apply_topics(other)
    client = redis_client_for(other)
    await client.flushdb()
    try:
        yield other
    finally:
        await client.flushdb()
        await client.aclose()
        await delete_topics_with_prefix(other)


@pytest.fixture
async def on_cluster(settings: Settings, redis_cluster: Settings) -> AsyncIterator[Settings]:
    """Another topic prefix, and the state on the shared Redis Cluster (every master flushed)."""
    other = settings.model_copy(
        update={
            "topic_prefix": f"t{uuid.uuid4().hex[:12]}.",
            "redis_cluster": True,
            "redis_cluster_port": redis_cluster.redis_cluster_port,
        }
    )
    await apply_topics(other)
    client = cast(RedisCluster, redis_client_for(other))
    await client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    try:
        yield other
    finally:
        await client.flushdb(target_nodes=RedisCluster.PRIMARIES)
        await client.aclose()
        await delete_topics_with_prefix(other)


async def _dump(client: aioredis.Redis) -> dict[str, Any]:
    found: dict[str, Any] = {}
    async for raw in client.scan_iter(count=1000):
        key = raw.decode()
        kind = decoded(await client.type(key))
        if kind == "string":
            found[key] = await client.get(key)
        elif kind == "hash":
            found[key] = await client.hgetall(key)
        elif kind == "set":
            found[key] = await client.smembers(key)
        elif kind == "zset":
            rows = await client.zrange(key, 0, -1, withscores=True)
            found[key] = dict(cast(list[tuple[bytes, float]], rows))
        else:
            found[key] = kind
    return found


def _comparable(dump: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The dump without :data:`PER_RUN`, in a form two runs share: the learners' marks without
    the run's topic prefix, and each partition's popularity decayed to one time."""
    kept: dict[str, Any] = {}
    for key, value in dump.items():
        # A relay list keeps its delivered entries until its partition's next step.
        if any(part in key for part in PER_RUN) or key.endswith("}relay"):
            continue
        if "}lm:" in key:
            value = {f.decode().removeprefix(prefix): v for f, v in value.items()}
        elif key.endswith("}popularity"):
            landmark = float(dump[key.removesuffix("popularity") + "landmark"])
            value = {i: s * 2.0 ** ((landmark - T_COMMON) / HALF_LIFE_S) for i, s in value.items()}
        kept[key] = value
    return kept


def _close(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 relative (sums of the same terms in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


#: A fault during the stream: given the workers, it breaks something once they consume and
#: returns a figure (seconds until the group recovered, or when it struck).
Fault = Callable[[list[e2e.WorkerProcess]], Awaitable[float]]


#: What a worker's log says when a run may go wrong: its lines go in the failure's report.
WHY = ("dead-letter", "failed to", "Traceback")


class Ran(NamedTuple):
    """A run's store dump, what MF learnt, the workers' dead letters (and their logs' lines
    that say why), its fault's figure, and when (monotonic seconds) every event was consumed
    and learnt."""

    dump: dict[str, Any]
    mf: MF
    dead_letters: float
    why: list[str]
    figure: float | None
    settled_at: float


async def _run(
    settings: Settings, workers: int, events: list[Event], fault: Fault | None = None
) -> Ran:
    """The stream through ``workers`` workers; a ``fault`` strikes once a third of the events
    was sent, the rest is sent meanwhile."""
    app_id = f"test-{uuid.uuid4().hex[:8]}"
    # Item-CF's rows keep their strongest pairs up to a cap; which pair a full row dropped
    # depends on the order it saw them in, so here no row fills and every count must match.
    uncapped = {"SOCIALREC_COOCCURRENCE_CAP": "100000"}
    processes = [
        e2e.WorkerProcess(settings, app_id=app_id, extra_env=uncapped) for _ in range(workers)
    ]
    group = settings.model_copy(update={"app_id": app_id})
    figure: float | None = None
    records = [orjson.loads(e.to_json()) for e in events]
    split = len(records) if fault is None else len(records) // 3
    try:
        for process in processes:
            await process.start()  # ready: owns partitions after the group's rebalance
        producer = AIOKafkaProducer(**kafka_client_kwargs(settings), linger_ms=2)
        await producer.start()
        try:
            await e2e.produce_json(producer, settings, records[:split])
            if fault is not None:
                rest = asyncio.ensure_future(e2e.produce_json(producer, settings, records[split:]))
                figure = await fault(processes)
                await rest
        finally:
            await producer.stop()

        async def settled() -> bool:
            events_done = await group_caught_up(group, events_group(group))
            return events_done and await group_caught_up(group, learner_group(group))

        await e2e.wait_for(settled, timeout_s=240, what="every event consumed and learnt")
        settled_at = time.monotonic()
        dead_letters = sum([await p.metric("socialrec_dead_letters_total") for p in processes])
        # Why, in the failure's report (the workers' logs stay with the run that wrote them).
        # (a source that failed to learn a batch: what a diverging store would show)
        why = [line for p in processes for line in p.log_lines(*WHY)]
    finally:
        for process in processes:
            process.stop()
    client = redis_client_for(settings)
    try:
        dump = await _dump(client)
        params = state_params(settings)
        mf = await stored_mf(client, params)
        replays = tuple(
            mean_auc(replay_mf(client, params, kafka_order(events, 6, seed)), params, events)
            for seed in range(1, 5)
        )
        learnt = MF(set(mf.user_ids()), set(mf.item_ids()), mean_auc(mf, params, events), replays)
        return Ran(dump, learnt, dead_letters, why[:40], figure, settled_at)
    finally:
        await client.aclose()


async def _consuming(processes: list[e2e.WorkerProcess]) -> None:
    async def consuming() -> bool:
        return await processes[0].metric("socialrec_events_consumed_total") > 0

    await e2e.wait_for(consuming, timeout_s=60, what="the first worker consuming")


async def _kill_one(processes: list[e2e.WorkerProcess]) -> float:
    """SIGKILL the first worker (and its learner) once it is consuming; returns the seconds
    until the others own every partition it had."""
    victim, others = processes[0], processes[1:]
    await _consuming(processes)
    owned = [await p.metric("socialrec_partitions_owned") for p in processes]
    assert owned[0] > 0, "the worker to kill owns no partition"
    killed = time.monotonic()
    victim.kill()

    async def moved() -> bool:
        return sum([await p.metric("socialrec_partitions_owned") for p in others]) == sum(owned)

    # The group notices a silent member after the session timeout, then rebalances.
    timeout = others[0].settings.session_timeout_s + 30
    await e2e.wait_for(moved, timeout_s=timeout, what="the killed worker's partitions moved")
    return time.monotonic() - killed


async def test_three_workers_end_in_the_state_one_worker_ends_in(
    settings: Settings, second: Settings
) -> None:
    world = generate_world(5, users=200, items=400)
    events = list(generate_events(world, 5, count=EVENTS, start_ts=time.time() - EVENTS))
    one, three = await _run(settings, 1, events), await _run(second, 3, events)
    _assert_same_state(one, three, settings, second)


async def test_three_workers_on_a_redis_cluster_end_in_the_state_one_worker_ends_in(
    settings: Settings, on_cluster: Settings
) -> None:
    """The state on a Redis Cluster of three masters, written by three workers and their
    learners, equals one worker's on one Redis: every step is in one slot, and what spans
    users merges."""
    world = generate_world(7, users=200, items=400)
    events = list(generate_events(world, 7, count=EVENTS, start_ts=time.time() - EVENTS))
    one, three = await _run(settings, 1, events), await _run(on_cluster, 3, events)
    _assert_same_state(one, three, settings, on_cluster)


@pytest.fixture(scope="module")
def failover_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A Redis Cluster of this module's own: a test kills one of its masters."""
    with running_redis_cluster(tmp_path_factory.mktemp("failover"), FAILOVER_PORTS_FROM) as s:
        yield s


async def test_a_redis_masters_death_under_three_workers_loses_nothing(
    settings: Settings, on_cluster: Settings, failover_cluster: Settings
) -> None:
    """A master of the Redis Cluster dies (kill -9) while three workers and their learners
    consume: its replica is promoted, the workers wait the outage out (no valid event
    dead-lettered) and carry on by themselves, and the store ends as after one worker on one
    Redis that saw no fault. The seconds from the kill until every event was consumed and
    learnt are kept in test-artifacts/recovery.json."""
    target = on_cluster.model_copy(
        update={"redis_cluster_port": failover_cluster.redis_cluster_port}
    )
    world = generate_world(8, users=200, items=400)
    events = list(generate_events(world, 8, count=EVENTS, start_ts=time.time() - EVENTS))

    async def kill_a_master(processes: list[e2e.WorkerProcess]) -> float:
        await _consuming(processes)
        client = cast(RedisCluster, redis_client_for(target))
        try:
            await client.initialize()
            kill_master_of(failover_cluster, client, Keys().partition_stem(0))
        finally:
            await client.aclose()
        return time.monotonic()

    one, three = await _run(settings, 1, events), await _run(target, 3, events, kill_a_master)
    assert three.figure is not None
    done_s = round(three.settled_at - three.figure, 1)
    e2e.keep_figures("redis master killed under three workers", {"all_done_after_s": done_s})
    print(f"every event consumed and learnt {done_s} s after the kill")
    _assert_same_state(one, three, settings, target)


async def test_a_worker_killed_mid_stream_loses_nothing_and_applies_nothing_twice(
    settings: Settings, second: Settings
) -> None:
    """One of three workers dies (SIGKILL, its learner too) while the stream is sent: the
    other two take its partitions after the session timeout and carry on from the offsets
    stored with its state, so the store ends as after one worker that never died."""
    world = generate_world(6, users=200, items=400)
    events = list(generate_events(world, 6, count=EVENTS, start_ts=time.time() - EVENTS))
    one, three = await _run(settings, 1, events), await _run(second, 3, events, _kill_one)
    moved = three.figure
    assert moved is not None
    figures = {"partitions_moved_s": round(moved, 1), "session_timeout_s": second.session_timeout_s}
    e2e.keep_figures("worker_kill", figures)
    print(f"the killed worker's partitions moved in {moved:.1f} s")
    _assert_same_state(one, three, settings, second)


class MF(NamedTuple):
    """What MF learnt, as the chaos run compares it (streams/tools/chaos_mf.py): a row for the same
    users and items, and a mean AUC of the users' own items that a learner could have reached.
    SGD follows the order it meets the events in, and on this short stream clean replays in
    orders Kafka could deliver spread by up to 0.05 already (near chance: MF has little to
    learn from 3,000 events), so the three workers' AUC must fall within the range of such
    replays and of the one worker's, widened by the chaos run's tolerance, and is only
    reported when those are at chance (as the chaos run does)."""

    users: set[str]
    items: set[str]
    auc: float
    replays: tuple[float, ...]

    def reachable(self, auc: float) -> bool:
        found = (self.auc, *self.replays)
        within = min(found) - AUC_TOLERANCE <= auc <= max(found) + AUC_TOLERANCE
        return within or not learnt_beyond_chance(*found)


def _families(keys: list[str]) -> dict[str, int]:
    """How many of ``keys`` each key family ("affinity", "fol_items", ...) has."""
    return dict(Counter(k.rsplit(":", 1)[-1] for k in keys))


def _assert_same_state(one: Ran, three: Ran, settings: Settings, second: Settings) -> None:
    for run in (one, three):
        assert run.dead_letters == 0, run.why
    mf_one, mf_three = one.mf, three.mf
    assert (mf_one.users, mf_one.items) == (mf_three.users, mf_three.items)
    assert mf_one.reachable(mf_three.auc), (mf_three.auc, mf_one.auc, mf_one.replays)
    a = _comparable(one.dump, settings.topic_prefix)
    b = _comparable(three.dump, second.topic_prefix)
    # Which keys only one run has, by family: a failure names what was lost, not two dumps.
    only_one, only_three = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    assert a.keys() == b.keys(), (
        _families(only_one),
        only_one[:10],
        _families(only_three),
        three.why,
    )
    differ = sorted(k for k in a if not _close(a[k], b[k]))
    families = _families(differ)
    example = differ[0] if differ else None
    detail = (
        {m: (a[example].get(m), b[example].get(m)) for m in set(a[example]) | set(b[example])
         if a[example].get(m) != b[example].get(m)}
        if example and isinstance(a[example], dict) else None
    )  # fmt: skip
    assert differ == [], (
        f"{len(differ)} keys differ ({families}), e.g. {example}: {detail}; {three.why}"
    )
    assert len(a) > 1000  # the comparison covers the stream's users and items
