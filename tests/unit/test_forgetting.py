"""Every worker and learner forgets an erased user's in-memory state, not only the worker that
honoured the request: the broadcast on ``privacy.forget`` (streams/runtime/forgetting.py), against
the in-memory store. The real topic and two real workers are in tests/e2e/test_forgetting.py."""

from __future__ import annotations

from typing import Any

import orjson

from models.state import StateParams
from streams.config import Settings
from streams.keys import erasure_digest
from streams.metrics import WorkerMetrics
from streams.pipeline import BatchProcessor, InboundRecord
from streams.runtime.forgetting import DIGESTS_PER_TURN, FORGET_TOPIC, ForgetFollower, marked
from streams.runtime.learner import Learner
from streams.runtime.privacy import ErasureProcessor
from streams.store import MemoryStore
from tests.unit.fakes import RecordingPublisher, SentRecord

NOW = 1_800_000_000.0


def _event(n: int, user: str, item: str) -> InboundRecord:
    body = {"event_id": f"e{n}", "type": "view", "user_id": user, "item_id": item, "ts": NOW}
    return InboundRecord(orjson.dumps(body), user.encode(), "events", 0, n, NOW)


def _erase(user: str) -> InboundRecord:
    body = {"request_id": f"r-{user}", "type": "erase", "user_id": user}
    return InboundRecord(orjson.dumps(body), user.encode(), "privacy.requests", 0, 0, NOW)


class _Record:
    def __init__(self, value: bytes | None) -> None:
        self.value = value


class _Consumer:
    """What the follower reads from: the records sent to the topic, once each."""

    def __init__(self, publisher: RecordingPublisher, topic: str) -> None:
        self.publisher, self.topic, self.read = publisher, topic, 0

    async def getmany(self, timeout_ms: int) -> dict[str, list[Any]]:
        sent = self.publisher.on(self.topic)
        fresh, self.read = sent[self.read :], len(sent)
        return {"p0": [_Record(r.value) for r in fresh]}


async def test_the_worker_that_did_not_honour_the_erasure_forgets_the_user_too() -> None:
    settings, store, publisher = Settings(), MemoryStore(StateParams()), RecordingPublisher()

    def worker() -> BatchProcessor:
        return BatchProcessor(settings, store, publisher, WorkerMetrics(), clock=lambda: NOW)

    honouring, other = worker(), worker()
    # Each worker published lists to ann and bob (a rebalance moved their partitions).
    for n, processor in enumerate((honouring, other)):
        await processor.process([_event(10 * n, "ann", "a"), _event(10 * n + 1, "bob", "a")])
        assert processor.knobs is not None
        assert sorted(processor.live.users()) == sorted(processor.knobs.remembered_users())
        assert sorted(processor.live.users()) == ["ann", "bob"]

    metrics = WorkerMetrics()
    erasures = ErasureProcessor(settings, store, publisher, metrics, forget=honouring.forget)
    assert await erasures.process([_erase("ann")]) == 1
    assert honouring.live.users() == ["bob"]  # its own memory, directly
    assert sorted(other.live.users()) == ["ann", "bob"]  # the other worker: not yet

    # The broadcast names the user by digest only, and goes out before the receipt.
    topics = [r.topic for r in publisher.sent]
    assert topics.index(FORGET_TOPIC) < topics.index("privacy.receipts")
    (broadcast,) = publisher.on(FORGET_TOPIC)
    assert broadcast.value is not None
    assert b"ann" not in broadcast.value
    assert orjson.loads(broadcast.value) == {"erased": [erasure_digest("ann")]}

    follower = ForgetFollower(settings, other.forget_erased, other.metrics, "test")
    follower.consumer = _Consumer(publisher, FORGET_TOPIC)
    assert await follower.poll() == 1
    assert other.live.users() == ["bob"]
    assert other.knobs is not None
    assert other.knobs.remembered_users() == ["bob"]
    gauge = other.metrics.registry.get_sample_value
    assert gauge("socialrec_live_users_remembered") == 1
    assert gauge("socialrec_blend_users_remembered") == 1
    assert gauge("socialrec_forgotten_users_total") == 1
    assert await follower.poll() == 0  # nothing new

    # A record that is not a broadcast names nobody and stops nothing.
    publisher.sent.append(SentRecord(FORGET_TOPIC, None, b"{oops", {}))
    assert await follower.poll() == 0
    assert other.live.users() == ["bob"]


async def test_the_learner_forgets_whom_it_refreshed_or_put_off() -> None:
    unused: Any = None  # only its refresh memory is used here: no store, sources or state
    learner = Learner(Settings(pool_refresh_s=1.0), unused, unused, unused, WorkerMetrics())
    refreshes = learner.refreshes
    assert refreshes.take(["ann", "bob"], now=10.0) == ["ann", "bob"]
    assert refreshes.take(["ann", "cid"], now=10.5) == ["cid"]  # ann put off to 11.0
    assert await learner.forget_erased({erasure_digest("ann"), erasure_digest("zed")}) == 1
    assert sorted(refreshes.users()) == ["bob", "cid"]
    assert refreshes.take([], now=11.0) == []  # ann's put-off refresh is gone with her


async def test_matching_goes_through_every_user_a_few_thousand_at_a_time() -> None:
    users = [f"u{n}" for n in range(2 * DIGESTS_PER_TURN + 1)]
    wanted = {erasure_digest(u) for u in (users[0], users[DIGESTS_PER_TURN], users[-1])}
    assert await marked(users + users[:5], wanted) == [users[0], users[DIGESTS_PER_TURN], users[-1]]
    assert await marked(users, set()) == []
