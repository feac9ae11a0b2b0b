"""The worker's learnt blend against the real Kafka and Redis: the weights move towards the
source that predicts what users act on next, survive a restart, and erasure takes the
per-user memory they are learnt from."""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from streams.config import Settings
from streams.keys import Keys
from streams.runtime.learner_state import LearnerState
from streams.tools.replay import seen_events
from tests.e2e.conftest import WorkerProcess, consume_until, produce_json, running, wait_for

#: Item-CF and social proof only, inline: the two sources the test makes unequal.
ENV = {
    "SOCIALREC_SOURCES": "",
    "SOCIALREC_LEARNER": "inline",
    "SOCIALREC_LEARN_BLEND_PERSIST_S": "0.2",
    "SOCIALREC_NEIGHBOURS_TTL_S": "0",  # item-CF reads the neighbours the seeds made
}
USERS = 60  # above models.blendlearn.MIN_REQUESTS, so the weights are learnt


def _event(n: str, user: str, kind: str, ts: float, **fields: str) -> dict[str, Any]:
    return {"event_id": n, "type": kind, "user_id": user, "ts": ts, **fields}


async def _gauge(worker: WorkerProcess, sample: str) -> float | None:
    for line in (await worker.metrics_text() or "").splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_the_worker_learns_its_blend_keeps_it_and_erases_what_it_learns_from(
    settings: Settings, producer: AIOKafkaProducer, redis_client: aioredis.Redis
) -> None:
    now = time.time()
    # Seeds make b item-CF's pick after a; every user follows one who likes other items
    # (social proof's picks), views a, then b: item-CF predicted it, social proof did not.
    setup = [_event(f"s{n}{i}", f"seed{n}", "view", now, item_id=i) for n in range(5) for i in "ab"]
    setup += [_event(f"l{n}", "loud", "like", now, item_id=f"n{n}") for n in range(5)]
    setup += [_event(f"f{n}", f"u{n}", "follow", now, target_user_id="loud") for n in range(USERS)]
    views_a = [_event(f"a{n}", f"u{n}", "view", now, item_id="a") for n in range(USERS)]
    views_b = [_event(f"b{n}", f"u{n}", "view", now, item_id="b") for n in range(USERS)]
    key, social = Keys().global_("knobs"), 'socialrec_blend_weight{source="social"}'
    sent = 0

    async def applied() -> bool:
        return await seen_events(redis_client) >= sent

    async def learnt() -> bool:  # a later batch saves the blend: one event per poll
        nonlocal sent
        stored = await redis_client.get(key)
        if stored is not None and orjson.loads(stored)["observations"] >= USERS - 5:
            return True
        await produce_json(
            producer, settings, [_event(f"t{sent}", "ticker", "view", now, item_id="z")]
        )
        sent += 1
        return False

    first = WorkerProcess(settings, extra_env=ENV)
    async with running(first):
        for phase in (setup, views_a, views_b):  # each user's next item after their list
            await produce_json(producer, settings, phase)
            sent += len(phase)
            await wait_for(applied, what="the phase applied")
        await wait_for(learnt, what="the learnt blend saved")
        await wait_for(applied, what="the ticks applied")
        stored = await redis_client.get(key)
        assert isinstance(stored, bytes)
        assert b"u1" not in stored  # per-source figures only
        weights = orjson.loads(stored)["weights"]
        assert weights["item_cf"] == 1.0
        assert weights["social"] < 0.1  # configured: 1.0
        assert (await _gauge(first, social) or 1.0) < 0.1

        remembered = await _gauge(first, "socialrec_blend_users_remembered")
        assert remembered is not None
        assert remembered >= USERS
        request = {"request_id": "knobs-1", "type": "erase", "user_id": "u0"}
        await producer.send_and_wait(
            settings.topic("privacy.requests"), orjson.dumps(request), key=b"u0"
        )
        await consume_until(settings, "privacy.receipts", lambda rs: len(rs) >= 1)
        assert await _gauge(first, "socialrec_blend_users_remembered") == remembered - 1

    # A restarted worker continues from the stored blend (restored before its first list).
    second = WorkerProcess(settings, app_id=first.app_id, extra_env=ENV)
    async with running(second):
        assert await _gauge(second, social) == 1.0  # nothing consumed yet: configured
        await produce_json(
            producer, settings, [_event("after", "newcomer", "view", now, item_id="a")]
        )

        async def restored() -> bool:
            return (await _gauge(second, social) or 1.0) < 0.1

        await wait_for(restored, what="the restarted worker's blend restored")
        assert (await _gauge(second, "socialrec_blend_observations") or 0) >= USERS - 5


async def test_the_worker_decays_social_proof_by_the_half_life_its_learner_learnt(
    settings: Settings, producer: AIOKafkaProducer, redis_client: aioredis.Redis
) -> None:
    """The learner stores the half-life it learns with its progress; the worker reads it
    with the learner's lag and its lists' social proof decays by it from then on."""
    now = time.time()
    events = [_event(f"e{n}", f"u{n % 7}", "view", now + n, item_id=f"i{n % 5}") for n in range(40)]
    gauge = "socialrec_social_half_life_seconds"
    worker = WorkerProcess(settings)
    async with running(worker):
        configured = await _gauge(worker, gauge)
        await produce_json(producer, settings, events)
        state = LearnerState(redis_client)

        async def stored() -> bool:
            progress = await state.progress()
            return progress is not None and progress.half_life_s is not None

        await wait_for(stored, what="the learner to store its half-life")
        progress = await state.progress()
        assert progress is not None
        learnt = progress.half_life_s
        assert learnt != configured  # 6 h's nearest on the grid against social proof's 3 days

        async def followed() -> bool:
            return await _gauge(worker, gauge) == learnt

        await wait_for(followed, what="the worker to use it")
