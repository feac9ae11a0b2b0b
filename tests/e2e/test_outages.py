"""A Redis outage mid-stream is waited out: no valid event is dead-lettered, every user gets a
list after their last event, the worker says it is not ready while it waits, and the state
ends exactly as applying every event once (offsets roll back with whatever Redis lost).

The test freezes the real Redis (SIGSTOP, longer than the worker's Redis timeout) and then
kills it (SIGKILL) and starts it again with ``socialrec infra``, while a real worker consumes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from models.events import Event
from streams.config import Settings
from streams.keys import Keys
from streams.ops import infra
from streams.runtime.worker import state_params
from streams.security import redis_client_for
from streams.store import MemoryStore, RedisStore
from streams.tools.bench.readback import TopicReader
from streams.tools.chaos_state import state_checks
from streams.tools.replay import differences, order_independent, seen_events
from tests.conftest import unavailable
from tests.e2e.conftest import ARTIFACTS, ROOT, WorkerProcess, consume_until, wait_for
from tests.e2e.test_worker import _produce_events, _stream


def _redis_pid(settings: Settings) -> int:
    pid = infra.status(settings, "redis")[0].pid
    if pid is None:
        unavailable("Redis was not started by `socialrec infra up`, so this test cannot stop it")
    return pid


@pytest.fixture
def redis_back_up(settings: Settings) -> Iterator[None]:
    """Whatever happens in the test, Redis runs again afterwards (later tests need it)."""
    yield
    pid = infra.status(settings, "redis")[0].pid
    if pid is not None:
        os.kill(pid, signal.SIGCONT)
    infra.up(settings, "redis")


def _health(worker: WorkerProcess) -> dict[str, Any]:
    url = f"http://127.0.0.1:{worker.web_port}/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return dict(orjson.loads(response.read()))
    except urllib.error.HTTPError as error:  # 503 carries the same body
        return dict(orjson.loads(error.read()))
    except OSError:
        return {}


async def _waiting_out_redis(worker: WorkerProcess) -> bool:
    body = await asyncio.to_thread(_health, worker)
    return body.get("ready") is False and "redis" in body.get("waiting_out", [])


async def _records_in(settings: Settings, topic: str) -> int:
    async with TopicReader(settings, topic) as reader:
        return await reader.count()


class SteadyFeed:
    """Sends events in small batches until stopped: a worker with nothing to do makes no
    Redis call, so it could not notice an outage (at several thousand events/s a pre-loaded
    stream is done before the fault lands)."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings, events: list[Event]):
        self.producer, self.settings, self.events = producer, settings, events
        self.sent = 0
        self.stop = asyncio.Event()

    async def run(self, batch: int = 25, pause_s: float = 0.1) -> None:
        while self.sent < len(self.events) and not self.stop.is_set():
            chunk = self.events[self.sent : self.sent + batch]
            await _produce_events(self.producer, self.settings, chunk)
            self.sent += len(chunk)
            await asyncio.sleep(pause_s)


async def test_a_frozen_then_killed_redis_is_waited_out_without_dead_letters(
    settings: Settings,
    producer: AIOKafkaProducer,
    redis_client: aioredis.Redis,
    redis_back_up: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOCIALREC_REDIS_TIMEOUT_S", "1")
    feed = SteadyFeed(producer, settings, _stream(20_000, seed=5, start=time.time()))
    feeding = asyncio.ensure_future(feed.run())
    worker = WorkerProcess(settings)
    await worker.start()
    try:
        await wait_for(lambda: _count_is(redis_client, 300), what="progress before the freeze")
        pid = _redis_pid(settings)
        os.kill(pid, signal.SIGSTOP)  # a hung server: calls time out instead of failing
        try:
            await wait_for(lambda: _waiting_out_redis(worker), what="the worker to wait it out")
        finally:
            os.kill(pid, signal.SIGCONT)
        applied = await seen_events(redis_client)
        await wait_for(lambda: _count_is(redis_client, applied + 300), what="progress again")

        os.kill(_redis_pid(settings), signal.SIGKILL)  # a crash: connections refused
        await wait_for(lambda: _waiting_out_redis(worker), what="the worker to notice")
        await asyncio.to_thread(infra.up, settings, "redis")
        feed.stop.set()
        await feeding
        events = feed.events[: feed.sent]

        consumed = lambda: _metric_at_least(worker, "socialrec_events_consumed_total", len(events))  # noqa: E731
        await wait_for(consumed, timeout_s=120, what="every event consumed")
        last_event = {e.user_id: e.event_id for e in events if e.item_id is not None}

        def everyone_has_their_last_list(records: list[Any]) -> bool:
            triggers = {r.key.decode(): orjson.loads(r.value)["trigger"] for r in records}
            got = {u for u, t in triggers.items() if t["event_id"] == last_event.get(u)}
            return got >= set(last_event)

        records = await consume_until(
            settings, "recommendations", everyone_has_their_last_list, timeout_s=120
        )
        assert everyone_has_their_last_list(records)
        assert await worker.metric("socialrec_dead_letters_total") == 0
        assert await _records_in(settings, "events.dlq") == 0
        assert await worker.metric("socialrec_store_errors_total") > 0
        await wait_for(worker.assigned, what="the worker to be ready again")
    finally:
        feed.stop.set()
        await feeding
        worker.stop()
    events = feed.events[: feed.sent]
    # Whatever Redis lost when it was killed (AOF fsyncs once a second), its offsets rolled
    # back with it and the events were consumed again: the state is that of applying every
    # event exactly once.
    reference = MemoryStore(state_params(settings))
    await reference.process_batch(events)
    fresh = redis_client_for(settings)  # the fixture's connection died with Redis
    try:
        actual = await RedisStore(fresh, state_params(settings)).snapshot()
    finally:
        await fresh.aclose()
    assert not differences(order_independent(actual), order_independent(await reference.snapshot()))


async def _count_is(client: aioredis.Redis, expected: int) -> bool:
    return await seen_events(client) >= expected


async def _metric_at_least(worker: WorkerProcess, name: str, value: float) -> bool:
    return await worker.metric(name) >= value


#: Every key and its DUMP, read in one script: an atomic snapshot, as a Redis that lost its
#: last second comes back with a prefix of its writes. Read key by key while the worker went on
#: writing, a snapshot could hold one half of a step (a relayed follow's applied number without
#: the follow), which no crash leaves behind.
_SNAPSHOT = """
local out = {}
for _, key in ipairs(redis.call('KEYS', '*')) do
  out[#out + 1] = key
  out[#out + 1] = redis.call('DUMP', key)
end
return out
"""


async def _dump(client: aioredis.Redis) -> dict[bytes, Any]:
    flat = await client.eval(_SNAPSHOT, 0)
    return dict(zip(flat[0::2], flat[1::2], strict=True))


async def _restore(client: aioredis.Redis, dumped: dict[bytes, Any]) -> None:
    """Replace the database with the dump in one transaction (the worker keeps writing)."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.flushdb()
        for key, value in dumped.items():
            if value is not None:
                pipe.restore(key, 0, value, replace=True)
        await pipe.execute()


async def test_state_and_offsets_roll_back_together_when_redis_loses_writes(
    settings: Settings, worker: WorkerProcess, producer: AIOKafkaProducer,
    redis_client: aioredis.Redis,
) -> None:  # fmt: skip
    """Redis comes back older than the worker last saw it (as after a crash that lost its
    last second): the worker notices at its next batch, goes back to the offsets stored with
    that older state, consumes the lost events again, and ends exactly as applying each once."""
    events = _stream(2400, seed=7, start=time.time())
    first, lost, after = events[:800], events[800:1600], events[1600:]
    await _produce_events(producer, settings, first)
    await wait_for(lambda: _count_is(redis_client, len(first)), what="the first part applied")
    older = await _dump(redis_client)
    await _produce_events(producer, settings, lost)
    applied = len(first) + len(lost)
    await wait_for(lambda: _count_is(redis_client, applied), what="the second part applied")
    await _restore(redis_client, older)  # Redis forgets the second part, offsets included
    assert await seen_events(redis_client) == len(first)

    await _produce_events(producer, settings, after)
    await wait_for(lambda: _count_is(redis_client, len(events)), what="every event applied")
    reference = MemoryStore(state_params(settings))
    await reference.process_batch(events)
    actual = await RedisStore(redis_client, state_params(settings)).snapshot()
    assert not differences(order_independent(actual), order_independent(await reference.snapshot()))
    assert await worker.metric("socialrec_dead_letters_total") == 0


async def test_the_learner_learns_again_what_redis_lost(
    settings: Settings, worker: WorkerProcess, producer: AIOKafkaProducer,
    redis_client: aioredis.Redis,
) -> None:  # fmt: skip
    """Redis comes back older than the learner left it, after the learner's group committed
    further in Kafka: the learner goes back to the offsets stored with what it had learnt
    and learns the rest again, once. Every check of the chaos run passes: MF's step count,
    item-CF's and FBT's counts exact, the worker's state exact."""
    events = _stream(1500, seed=8, start=time.time())
    first, lost, after = events[:500], events[500:1000], events[1000:]
    await _produce_events(producer, settings, first)
    await wait_for(lambda: _count_is(redis_client, len(first)), what="the first part applied")
    await wait_for(worker.learner_caught_up, what="the first part learnt")
    older = await _dump(redis_client)
    await _produce_events(producer, settings, lost)
    await wait_for(worker.learner_caught_up, what="the second part learnt")
    await _restore(redis_client, older)  # learnt state, learnt ids and offsets forget it

    await _produce_events(producer, settings, after)
    await wait_for(lambda: _count_is(redis_client, len(events)), what="every event applied")
    await wait_for(lambda: _learnt_through(redis_client, len(events)), what="everything learnt")
    failed = [c for c in await state_checks(settings, events) if not c["passed"]]
    assert not failed, failed


async def _learnt_through(client: aioredis.Redis, total: int) -> bool:
    """The offsets stored with the learnt state cover ``total`` events (every partition)."""
    keys = Keys()
    async with client.pipeline(transaction=False) as pipe:
        for p in range(keys.partitions):
            pipe.hgetall(keys.partition(p, "learner"))
        stored = cast(list[dict[bytes, bytes]], await pipe.execute())
    offsets = [int(v) + 1 for part in stored for f, v in part.items() if f.startswith(b"offset:")]
    return sum(offsets) >= total


def _spawn_learner(learner: WorkerProcess, log: Path) -> subprocess.Popen[bytes]:
    """`socialrec learner` alone, with the settings ``learner`` would give a worker."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "learner"],
            cwd=ROOT, env=learner.env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def _logged(log: Path, text: str) -> bool:
    return text in await asyncio.to_thread(log.read_text, errors="replace")


async def _exited(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is not None


async def test_a_learner_stopped_while_waiting_out_redis_exits_and_learns_it_again(
    settings: Settings,
    producer: AIOKafkaProducer,
    redis_client: aioredis.Redis,
    redis_back_up: None,
) -> None:
    """SIGTERM reaches `socialrec learner` in a batch that waits out a hung Redis: it gives
    the batch up and exits (it used to wait for Redis for ever). Nothing of that batch was
    stored as learnt, so the next learner learns it, and every count ends exact."""
    events = _stream(600, seed=9, start=time.time())
    first, rest = events[:300], events[300:]
    settings_of = WorkerProcess(settings, extra_env={"SOCIALREC_REDIS_TIMEOUT_S": "1"})
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"learner-{settings_of.app_id}.log"
    process = await asyncio.to_thread(_spawn_learner, settings_of, log)
    try:
        await _produce_events(producer, settings, first)
        await wait_for(lambda: _learnt_through(redis_client, len(first)), what="the first learnt")
        pid = _redis_pid(settings)
        os.kill(pid, signal.SIGSTOP)  # a hung server: the learner's calls time out
        try:
            await _produce_events(producer, settings, rest)
            waiting = lambda: _logged(log, "unavailable during learner")  # noqa: E731
            await wait_for(waiting, what="the learner to wait Redis out")
            process.send_signal(signal.SIGTERM)
            await wait_for(lambda: _exited(process), what="the learner to exit")
        finally:
            os.kill(pid, signal.SIGCONT)
        assert await _logged(log, "stopped in a batch waiting out an outage")
    finally:
        if process.poll() is None:
            process.kill()
    again = await asyncio.to_thread(_spawn_learner, settings_of, log)
    try:
        await wait_for(lambda: _learnt_through(redis_client, len(events)), what="all learnt")
    finally:
        again.send_signal(signal.SIGTERM)
        await wait_for(lambda: _exited(again), what="the second learner to exit")
    # No worker ran: its state is not checked, everything the learner keeps is.
    checks = [c for c in await state_checks(settings, events) if c["check"] != "worker state"]
    assert all(c["passed"] for c in checks), checks
