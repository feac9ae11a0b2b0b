"""Two workers in one group against the real Kafka and Redis: an erasure honoured by one of
them empties the other's in-memory state of the user too, within seconds (the
``privacy.forget`` broadcast, streams/runtime/forgetting.py)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.config import Settings
from tests.e2e.conftest import WorkerProcess, consume_until, produce_json, running, wait_for

#: Item-CF and social proof only, inline: the memory under test is the workers' own.
ENV = {"SOCIALREC_SOURCES": "", "SOCIALREC_LEARNER": "inline"}
USERS = 30  # over six partitions of `events`: both workers publish to some of them
#: Each worker's memory per user, as its metrics show it.
REMEMBERED = ("socialrec_live_users_remembered", "socialrec_blend_users_remembered")


async def _remembered(worker: WorkerProcess) -> dict[str, float]:
    return {name: await worker.metric(name) for name in REMEMBERED}


async def test_an_erasure_empties_every_workers_memory_of_the_user(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    first = WorkerProcess(settings, extra_env=ENV)
    second = WorkerProcess(settings, app_id=first.app_id, extra_env=ENV)
    workers = (first, second)
    async with running(first), running(second):

        async def both_consume() -> bool:  # the group has rebalanced over the two
            owned = [await w.metric("socialrec_partitions_owned") for w in workers]
            return all(owned) and sum(owned) == 6

        await wait_for(both_consume, what="both workers owning partitions of events")
        now = time.time()
        views: list[dict[str, Any]] = [
            {"event_id": f"v{n}", "type": "view", "user_id": f"u{n}", "item_id": "a", "ts": now}
            for n in range(USERS)
        ]
        await produce_json(producer, settings, views)

        async def all_listed() -> bool:  # every user got a list, from one worker or the other
            lists = [(await _remembered(w))["socialrec_live_users_remembered"] for w in workers]
            return sum(lists) >= USERS

        await wait_for(all_listed, what="a list published to every user")
        held = [await _remembered(w) for w in workers]
        for memory in held:  # each worker holds some of the users, in both memories
            assert memory["socialrec_live_users_remembered"] > 0
            assert memory["socialrec_blend_users_remembered"] > 0

        # Every request on one partition of privacy.requests: one worker honours them all.
        for n in range(USERS):
            request = {"request_id": f"forget-{n}", "type": "erase", "user_id": f"u{n}"}
            await producer.send(
                settings.topic("privacy.requests"), orjson.dumps(request), partition=0
            )
        await producer.flush()
        await consume_until(settings, "privacy.receipts", lambda rs: len(rs) >= USERS)
        honoured = [await w.metric("socialrec_erasure_seconds_count") for w in workers]
        assert sorted(honoured) == [0, USERS]
        other = workers[honoured.index(0)]
        receipted = time.monotonic()

        async def forgotten_everywhere() -> bool:
            memories = [await _remembered(w) for w in workers]
            return all(value == 0 for memory in memories for value in memory.values())

        await wait_for(forgotten_everywhere, timeout_s=10.0, what="every worker's memory empty")
        assert time.monotonic() - receipted < 10.0
        # The worker that did not honour the requests forgot its users by the broadcast alone.
        was = held[workers.index(other)]["socialrec_live_users_remembered"]
        assert await other.metric("socialrec_forgotten_users_total") == was
