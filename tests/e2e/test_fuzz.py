"""A real worker under 2,000 hostile records on each input topic (tests/fuzz/): the slice of
tests/unit/test_fuzz_topics.py's 10,000 per topic that goes through the real broker and Redis.

Nothing crashes and no partition wedges: every rejected record reaches the dead-letter topic
with the reason the generator expected, every valid event's user gets a list, every valid
erasure request a receipt, the learner consumes everything, and a fresh event afterwards
still gets its list.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from models.events import Event, EventType
from streams.config import Settings
from streams.pipeline import InboundRecord, validate_record
from streams.runtime.privacy import ErasureRequest, parse_request
from tests.e2e.conftest import WorkerProcess, consume_until, wait_for
from tests.fuzz.records import Case
from tests.fuzz.topics import Fuzzer

#: Per topic. The in-process fuzz runs 10,000 per topic through the same consumers; here the
#: privacy agent, which erases one user per source at a time (tens of requests a second on a
#: loaded machine), had not dead-lettered 10,000 requests' rejects within the wait.
CASES = 2_000
TOPICS = ("events", "catalog", "privacy.requests")


def _generate(now: float, settings: Settings) -> dict[str, list[Case]]:
    """The cases Kafka can carry: a record needs a key or a value, and the broker refuses a
    record without a key on a compacted topic (catalog)."""
    fuzzer = Fuzzer(2024, now)
    makers = {
        "events": lambda: fuzzer.event(settings.max_event_bytes),
        "catalog": fuzzer.catalog,
        "privacy.requests": fuzzer.privacy,
    }
    cases: dict[str, list[Case]] = {}
    for topic, make in makers.items():
        made = (make() for _ in range(2 * CASES))
        keyed = topic == "catalog"
        carried = (c for c in made if c.key is not None or (c.value is not None and not keyed))
        cases[topic] = list(carried)[:CASES]
    return cases


async def _produce(
    producer: AIOKafkaProducer, settings: Settings, topic: str, cases: list[Case]
) -> None:
    futures = [
        await producer.send(settings.topic(topic), case.value, key=case.key) for case in cases
    ]
    await asyncio.gather(*futures)


def _listed_users(
    settings: Settings, events: list[Case], now: float, erased: set[str]
) -> set[bytes]:
    """The users a list must be published for: those of valid events that are about items,
    not of a user in ``erased`` (one aimed at such a user is applied without its target)."""
    users = set()
    for case in events:
        record = InboundRecord(case.value, case.key, "events", 0, 0, now)
        event = validate_record(settings, record, now)
        if (
            isinstance(event, Event)
            and event.type not in (EventType.FOLLOW, EventType.UNFOLLOW)
            and event.user_id not in erased
        ):
            users.add(event.user_id.encode())
    return users


async def test_hostile_records_on_every_topic_are_dead_lettered_or_applied(
    worker: WorkerProcess, producer: AIOKafkaProducer, settings: Settings
) -> None:
    started = time.monotonic()
    now = time.time()
    cases = _generate(now, settings)
    rejected = Counter(
        (topic.encode(), case.value) for topic in TOPICS for case in cases[topic] if case.reasons
    )
    expected_reasons = {
        (topic.encode(), case.value): case.reasons
        for topic in TOPICS
        for case in cases[topic]
        if case.reasons
    }
    # A user erased by one of the valid requests may have their events dropped (the erasure
    # can be applied before them): no list is owed to them.
    erased = {
        request.user_id
        for case in cases["privacy.requests"]
        if isinstance(request := parse_request(case.value), ErasureRequest)
    }
    listed = _listed_users(settings, cases["events"], now, erased)
    erasures = sum(1 for case in cases["privacy.requests"] if not case.reasons)
    await asyncio.gather(*(_produce(producer, settings, t, cases[t]) for t in TOPICS))

    def origin(record: Any) -> tuple[bytes, bytes | None]:
        headers = dict(record.headers)
        return headers["__connect.errors.topic"].removeprefix(
            settings.topic_prefix.encode()
        ), record.value

    dead = await consume_until(
        settings, "events.dlq", lambda rs: len(rs) >= rejected.total(), timeout_s=90
    )
    phases = {"dead letters": time.monotonic() - started}
    assert Counter(origin(r) for r in dead) == rejected
    for record in dead:
        reason = dict(record.headers)["socialrec.dlq.reason"].decode()
        assert reason in expected_reasons[origin(record)]
    lists = await consume_until(
        settings, "recommendations", lambda rs: listed <= {r.key for r in rs}, timeout_s=180
    )
    missing = listed - {r.key for r in lists}
    assert not missing, f"{len(missing)} of {len(listed)} users got no list"
    receipts = await consume_until(
        settings, "privacy.receipts", lambda rs: len(rs) >= erasures, timeout_s=60
    )
    assert len(receipts) == erasures
    phases["lists and receipts"] = time.monotonic() - started
    await wait_for(worker.learner_caught_up, timeout_s=60, what="the learner to catch up")

    # Still alive and consuming: a fresh event gets its list.
    assert worker.process is not None
    assert worker.process.poll() is None
    user = "\u200fafter🛍"
    fresh = {"event_id": "after", "type": "view", "user_id": user, "item_id": "i", "ts": now}
    key = user.encode()
    await producer.send_and_wait(settings.topic("events"), orjson.dumps(fresh), key=key)
    after = await consume_until(settings, "recommendations", lambda rs: key in {r.key for r in rs})
    assert key in {r.key for r in after}
    phases["a fresh event's list"] = time.monotonic() - started
    print(f"fuzz e2e, {3 * CASES} records, seconds since the start:", phases)
