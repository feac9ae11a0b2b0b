"""Erasure that lasts, against the real Kafka and Redis: after a user is erased, a worker under
a new app id (new consumer groups for `events`, the learner, `shares` and `privacy.requests`,
with nothing committed) and without the offsets stored in Redis reads every topic from the
beginning; it consumes everyone else's events again and none of the erased user's, learns
nothing of hers, and publishes no list for her."""

from __future__ import annotations

import functools
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.config import Settings
from streams.keys import Keys
from streams.ops.topics import TOPICS_WITH_USER_EVENTS, kept_for_ms, load_topics
from streams.runtime.consumer import events_group
from streams.runtime.worker import state_params
from streams.security import kafka_client_kwargs
from streams.store import RedisStore
from streams.tools.bench.readback import partitions_of
from streams.tools.replay import group_caught_up, seen_events
from tests.e2e import conftest as e2e

ERASED, KEPT, OTHER = "ann", "bob", "cyd"


def _events(now: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The erased user's events and those aimed at her; then everyone else's."""

    def event(n: str, kind: str, user: str, **more: Any) -> dict[str, Any]:
        return {"event_id": n, "type": kind, "user_id": user, "ts": now, **more}

    hers = [
        event("a1", "purchase", ERASED, item_id="lamp"),
        event("a2", "purchase", ERASED, item_id="desk"),  # lamp-desk: a pair only she made
        event("a3", "view", ERASED, item_id="chair"),
        event("a4", "follow", ERASED, target_user_id=KEPT),
        event("a5", "share", ERASED, item_id="chair", target_user_id=KEPT),
        # Aimed at her: a follow, and a share re-keyed to her on `shares`.
        event("b1", "follow", KEPT, target_user_id=ERASED),
        event("b2", "share", KEPT, item_id="sofa", target_user_id=ERASED),
    ]
    others = [
        event("b3", "purchase", KEPT, item_id="chair"),
        event("b4", "view", KEPT, item_id="lamp"),
        event("b5", "purchase", KEPT, item_id="sofa"),
        event("c1", "purchase", OTHER, item_id="chair"),
        event("c2", "purchase", OTHER, item_id="sofa"),
    ]
    return hers, others


async def _recommendations(settings: Settings) -> list[Any]:
    """Every record on `recommendations` now."""
    ends = await _end_offsets(settings)
    return await e2e.consume_until(
        settings, "recommendations", lambda rs: len(rs) >= sum(ends.values())
    )


async def _end_offsets(settings: Settings) -> dict[int, int]:
    """Partition -> end offset of `recommendations`."""
    topic = settings.topic("recommendations")
    consumer = AIOKafkaConsumer(**kafka_client_kwargs(settings))
    await consumer.start()
    try:
        partitions = range(partitions_of(settings, "recommendations"))
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        await consumer.stop()
    return {tp.partition: end for tp, end in ends.items()}


def _after(records: list[Any], ends: dict[int, int]) -> list[Any]:
    return [r for r in records if r.offset >= ends[r.partition]]


async def test_an_erased_user_stays_gone_when_events_are_replayed_under_a_new_app_id(
    settings: Settings, producer: AIOKafkaProducer, redis_client: aioredis.Redis
) -> None:
    hers, others = _events(time.time())
    first = e2e.WorkerProcess(settings)
    async with e2e.running(first):
        await e2e.produce_json(producer, settings, hers[:5] + others)
        await e2e.produce_json(
            producer, settings, hers[5:]
        )  # after hers, so aimed at someone known
        everyone = len(hers) + len(others)
        await e2e.wait_for(
            lambda: _at_least(seen_events(redis_client), everyone), what="every event applied"
        )
        await e2e.wait_for(first.learner_caught_up, what="the learner to learn them")
        assert await redis_client.exists(Keys().user(ERASED, "mf")), "the learner learnt from her"
        assert await e2e.traces_in_redis(redis_client, ERASED)

        request = {"request_id": "req-1", "type": "erase", "user_id": ERASED}
        await producer.send_and_wait(
            settings.topic("privacy.requests"), orjson.dumps(request), key=ERASED.encode()
        )
        await e2e.consume_until(settings, "privacy.receipts", lambda rs: len(rs) >= 1)
        receipted = await _end_offsets(settings)
    assert await e2e.traces_in_redis(redis_client, ERASED) == []
    store = RedisStore(redis_client, state_params(settings))
    erased_state = _without_lists(await store.snapshot())
    erased_sources = await e2e.source_state(redis_client)
    # Her mark outlives every record of hers any topic can still hold (retention + a segment).
    specs = load_topics(settings.topics_file)
    kept_s = max(kept_for_ms(s) // 1000 for s in specs if s.name in TOPICS_WITH_USER_EVENTS)
    assert await redis_client.ttl(Keys().erased(ERASED)) > kept_s

    # The same Redis, a new app id: Kafka has no offsets for its groups, so the learner, the
    # `shares` and the `privacy.requests` consumers read from the beginning. The events
    # consumer resumes after the positions stored in Redis with the state: lost too here (as a
    # Redis that lost that hash, or an operator rebuilding), it reads `events` from the start.
    await redis_client.delete(*(Keys().offsets(p) for p in range(Keys().partitions)))
    second = e2e.WorkerProcess(settings)
    replayed = second.settings.model_copy(update={"app_id": second.app_id})
    async with e2e.running(second):
        for group, topic in (
            (events_group(replayed), "events"),
            (second.app_id, "shares"),
            (second.app_id, "privacy.requests"),
        ):
            await e2e.wait_for(
                functools.partial(group_caught_up, settings, group, topic),
                what=f"the new app id to read all of {topic}",
            )
        await e2e.wait_for(second.learner_caught_up, what="the new learner to read every event")
        dropped = await second.metric("socialrec_events_dropped_after_erasure_total")
        duplicates = await second.metric("socialrec_events_duplicate_total")

    # Nothing of hers came back, and nothing learnt from her: the state and every source are
    # as the erasure left them.
    assert await e2e.traces_in_redis(redis_client, ERASED) == []
    assert _without_lists(await store.snapshot()) == erased_state
    assert await e2e.source_state(redis_client) == erased_sources
    # Everyone else's events were consumed again (applied before: duplicates, nothing counted
    # twice), those aimed at her too (they are their users' own); hers were dropped by her
    # mark.
    aimed_at_her = [e for e in hers if e["user_id"] != ERASED]
    assert duplicates == len(others) + len(aimed_at_her)
    assert dropped == len(hers) - len(aimed_at_her)
    # Nothing after the receipt names her: no list for her (a tombstone at most, when the
    # replayed request is honoured again), and nobody's list names her as a reason.
    after = _after(await _recommendations(settings), receipted)
    assert [r.value for r in after if r.key == ERASED.encode()] in ([], [None])
    assert not [r for r in after if r.value is not None and ERASED.encode() in r.value]
    # The other users got their lists again from the replay.
    relisted = {r.key for r in after if r.value is not None}
    assert {KEPT.encode(), OTHER.encode()} <= relisted


async def _at_least(count: Any, expected: int) -> bool:
    return int(await count) >= expected


def _without_lists(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The state without each user's cached list (a replay publishes fresh ones)."""
    for user in snapshot["users"].values():
        user.pop("recommendations", None)
    return snapshot
