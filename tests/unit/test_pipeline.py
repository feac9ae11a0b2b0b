"""The micro-batch pipeline against the in-memory store: DLQ, dedupe, publishing, retries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any, cast

import orjson
import pytest
import redis.exceptions
from hypothesis import given
from hypothesis import strategies as st

from models.cooccurrence import Cooccurrence
from models.events import Event
from models.recommend import Candidate, Reason, Source
from models.state import StateParams
from streams.config import Settings
from streams.keys import Keys
from streams.metrics import WorkerMetrics
from streams.pipeline import BatchProcessor, InboundRecord
from streams.sources import SourceSet
from streams.sources.progress import Marks
from streams.store import (
    BatchResult,
    MemoryStore,
    OffsetRange,
    Position,
    partition_number,
    step_rounds,
)
from tests.unit.fakes import RecordingPublisher
from tests.unit.reference import MemoryItemCF

NOW = 1_800_000_000.0


def _record(body: object, offset: int, *, raw: bytes | None = None) -> InboundRecord:
    value = raw if raw is not None else orjson.dumps(body)
    key = str(body["user_id"]).encode() if isinstance(body, dict) and "user_id" in body else b"k"
    return InboundRecord(value, key, "events", 0, offset, NOW - 0.01)


def _event(n: int, user: str, item: str, kind: str = "view") -> dict[str, object]:
    return {"event_id": f"e{n}", "type": kind, "user_id": user, "item_id": item, "ts": NOW - 5}


def _processor(store: Any = None) -> tuple[BatchProcessor, RecordingPublisher, WorkerMetrics]:
    """A worker learning inline (item-CF only), on the in-memory store unless given one."""
    publisher = RecordingPublisher()
    metrics = WorkerMetrics()
    cf = Cooccurrence(StateParams())
    processor = BatchProcessor(
        Settings(),
        store or MemoryStore(StateParams(), similar=cf.neighbours),
        publisher,
        metrics,
        clock=lambda: NOW,
        retry_backoff_s=(0.0,),
        sources=SourceSet([MemoryItemCF(cf)], metrics),
    )
    return processor, publisher, metrics


def _metric(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_bad_event_goes_to_dlq_and_the_next_good_one_is_processed() -> None:
    processor, publisher, metrics = _processor()
    records = [
        _record(None, 0, raw=b"{not json"),
        _record(_event(1, "ann", "phone"), 1),
        _record({"event_id": "x", "type": "teleport", "user_id": "ann", "ts": NOW}, 2),
    ]
    summary = await processor.process(records)
    assert (summary.consumed, summary.applied, summary.dead_lettered) == (3, 1, 2)

    dead = publisher.on("events.dlq")
    assert [d.value for d in dead] == [records[0].value, records[2].value]  # original bytes
    assert dead[0].headers["socialrec.dlq.reason"] == b"not_json"
    assert dead[0].headers["__connect.errors.offset"] == b"0"
    assert dead[1].headers["__connect.errors.exception.class.name"] == b"unknown_type"
    assert dead[1].headers["__connect.errors.topic"] == b"events"

    recs = publisher.on("recommendations")
    assert [r.key for r in recs] == [b"ann"]
    body = orjson.loads(recs[0].value or b"")
    assert body["trigger"] == {"event_id": "e1", "topic": "events", "partition": 0, "offset": 1}
    assert _metric(metrics, "socialrec_dead_letters_total", reason="not_json") == 1
    assert _metric(metrics, "socialrec_dead_letters_total", reason="unknown_type") == 1
    assert _metric(metrics, "socialrec_events_consumed_total", type="view") == 1


async def test_one_publish_per_user_per_batch_triggered_by_their_latest_event() -> None:
    processor, publisher, _ = _processor()
    await processor.process(
        [
            _record(_event(1, "ann", "a"), 10),
            _record(_event(2, "bob", "c"), 11),
            _record(_event(3, "ann", "b", "cart"), 12),
        ]
    )
    recs = {r.key: orjson.loads(r.value or b"") for r in publisher.on("recommendations")}
    assert set(recs) == {b"ann", b"bob"}
    assert recs[b"ann"]["trigger"]["event_id"] == "e3"
    # Item-CF learnt the batch beside it; bob's next list has what ann's a-then-b taught.
    await processor.process([_record(_event(4, "bob", "a"), 13)])
    bob = orjson.loads(publisher.on("recommendations")[-1].value or b"")
    assert bob["items"][0]["item_id"] == "b"
    assert bob["items"][0]["reasons"][0]["item_id"] == "a"


async def test_redelivered_batch_changes_nothing_and_publishes_the_same_lists_again() -> None:
    """A redelivery may follow a crash between the state update and the publish: the lists
    go out again (at least once), the state and the sources learn nothing."""
    store = MemoryStore(StateParams())
    learnt: list[str] = []
    processor, publisher, metrics = _processor(store)
    processor.sources = SourceSet([_RecordingSource(learnt)], metrics)
    batch = [_record(_event(n, f"u{n % 3}", f"i{n % 5}"), n) for n in range(12)]
    await processor.process(batch)
    before = await store.snapshot()
    first = publisher.on("recommendations")
    learnt_before = list(learnt)
    summary = await processor.process(batch)
    assert summary.duplicates == 12
    assert await store.snapshot() == before
    assert learnt == learnt_before
    again = publisher.on("recommendations")[len(first) :]

    def body(record: Any) -> dict[str, Any]:
        return {k: v for k, v in orjson.loads(record.value).items() if k != "generated_at"}

    assert [(r.key, body(r)) for r in again] == [(r.key, body(r)) for r in first]
    assert _metric(metrics, "socialrec_events_duplicate_total") == 12


class _RecordingSource:
    """A source that only remembers which events it learnt."""

    source = Source.MF

    def __init__(self, learnt: list[str]) -> None:
        self.learnt = learnt

    async def learn(self, events: Sequence[Event], learnt: Marks | None = None) -> None:
        self.learnt.extend(e.event_id for e in events)

    async def candidates(
        self, user_ids: Sequence[str], exclude: Mapping[str, frozenset[str]], k: int, now: float
    ) -> dict[str, list[Candidate]]:
        return {}

    async def erase(self, user_ids: Sequence[str]) -> dict[str, int]:
        return {}


class FlakyStore(MemoryStore):
    """Fails like Redis would: first a dropped connection, then a script error on one event."""

    def __init__(self, poison_event_id: str) -> None:
        super().__init__(StateParams())
        self.poison = poison_event_id
        self.connection_failures = 1

    async def process_batch(
        self,
        events: Sequence[Event],
        arrivals: Sequence[float] | None = None,
        offsets: Sequence[OffsetRange] = (),
        views: bool = True,
    ) -> BatchResult:
        if self.connection_failures:
            self.connection_failures -= 1
            raise redis.exceptions.ConnectionError("connection reset")
        if any(e.event_id == self.poison for e in events):
            raise redis.exceptions.ResponseError("script error")
        return await super().process_batch(events, arrivals, offsets, views)


async def test_store_failures_are_retried_and_a_poison_event_is_isolated() -> None:
    store = FlakyStore(poison_event_id="e3")
    processor, publisher, metrics = _processor(store)
    batch = [_record(_event(n, f"u{n}", "i1"), n) for n in range(6)]
    summary = await processor.process(batch)
    assert summary.applied == 5
    dead = publisher.on("events.dlq")
    assert len(dead) == 1
    assert dead[0].headers["socialrec.dlq.reason"] == b"processing_error"
    assert dead[0].headers["__connect.errors.offset"] == b"3"
    assert _metric(metrics, "socialrec_store_errors_total") == 1
    assert {r.key for r in publisher.on("recommendations")} == {
        f"u{n}".encode() for n in range(6) if n != 3
    }


class OutageStore(MemoryStore):
    """Every read and write fails, as Redis does while it restarts, loads its data, runs out
    of memory or is a read-only replica, until ``failures`` calls have failed."""

    ERRORS = (
        redis.exceptions.ConnectionError("Error 111 connecting. Connection refused."),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.exceptions.ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
    )

    def __init__(self, failures: int) -> None:
        super().__init__(StateParams())
        self.failures = failures
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise self.ERRORS[self.calls % len(self.ERRORS)]

    async def erased_at(self, user_ids: Sequence[str]) -> dict[str, float]:
        self._maybe_fail()
        return await super().erased_at(user_ids)

    async def process_batch(
        self,
        events: Sequence[Event],
        arrivals: Sequence[float] | None = None,
        offsets: Sequence[OffsetRange] = (),
        views: bool = True,
    ) -> BatchResult:
        self._maybe_fail()
        return await super().process_batch(events, arrivals, offsets, views)

    async def cache_recommendations(self, lists: Mapping[str, bytes]) -> None:
        self._maybe_fail()
        await super().cache_recommendations(lists)


async def test_a_store_outage_is_waited_out_and_never_dead_letters() -> None:
    store = OutageStore(failures=12)
    processor, publisher, metrics = _processor(store)
    seen_down: list[list[str]] = []
    original = store._maybe_fail

    def watch() -> None:
        seen_down.append(metrics.waiting_out())
        original()

    store._maybe_fail = watch  # type: ignore[method-assign]
    batch = [_record(_event(n, f"u{n}", "i1"), n) for n in range(6)]
    summary = await processor.process(batch)
    assert summary.applied == 6
    assert summary.dead_lettered == 0
    assert publisher.on("events.dlq") == []
    assert {r.key for r in publisher.on("recommendations")} == {f"u{n}".encode() for n in range(6)}
    assert ["redis"] in seen_down  # /health said not ready while it waited
    assert metrics.waiting_out() == []  # and ready again once Redis answered
    assert _metric(metrics, "socialrec_store_errors_total") == 12


class BrokenCacheStore(MemoryStore):
    """Keeping the lists fails for a reason that is no outage (a bug's error)."""

    async def cache_recommendations(self, lists: Mapping[str, bytes]) -> None:
        raise redis.exceptions.ResponseError("WRONGTYPE Operation against a key")


async def test_a_failed_list_cache_loses_the_copies_not_the_events() -> None:
    processor, publisher, _ = _processor(BrokenCacheStore(StateParams()))
    summary = await processor.process([_record(_event(n, f"u{n}", "i1"), n) for n in range(3)])
    assert (summary.applied, summary.dead_lettered) == (3, 0)
    assert publisher.on("events.dlq") == []
    assert {r.key for r in publisher.on("recommendations")} == {b"u0", b"u1", b"u2"}


async def test_a_failing_blend_lesson_does_not_dead_letter_published_events() -> None:
    processor, publisher, _ = _processor()

    def broken(lessons: object) -> None:
        raise ValueError("a bug in the blend learner")

    processor._learn_blend = broken  # type: ignore[method-assign]
    summary = await processor.process([_record(_event(n, f"u{n}", "i1"), n) for n in range(3)])
    assert (summary.applied, summary.dead_lettered) == (3, 0)
    assert publisher.on("events.dlq") == []
    assert len(publisher.on("recommendations")) == 3


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (redis.exceptions.ConnectionError("refused"), True),
        (redis.exceptions.TimeoutError("timed out"), True),
        (redis.exceptions.ResponseError("MISCONF Errors writing to the AOF file"), True),
        (redis.exceptions.ResponseError("NOPERM this user has no permissions"), True),
        (redis.exceptions.ResponseError("BUSY Redis is busy running a script"), True),
        # A pipeline's error names its command first; the server's code is quoted after it.
        (
            redis.exceptions.ResponseError(
                f"Command # 3 ({'SET k ' * 20}) of pipeline caused "
                "error: ('BUSY Redis is busy running a script',)"
            ),
            True,
        ),
        # What a cluster client meets while a replica takes a dead master's place.
        (redis.exceptions.RedisClusterException("startup_nodes could not agree on a valid"), True),
        (redis.exceptions.SlotNotCoveredError('Slot "5" is not covered by the cluster.'), True),
        (redis.exceptions.ClusterError("TTL exhausted."), True),
        (redis.exceptions.MasterDownError("MASTERDOWN Link with MASTER is down"), True),
        (redis.exceptions.CrossSlotTransactionError("keys in one slot only"), False),
        (
            redis.exceptions.RedisClusterException(
                "ERROR: Calling pipelined function evalsha is blocked when running redis in "
                "cluster mode..."
            ),
            False,
        ),
        (redis.exceptions.ResponseError("ERR Error running script: @user_script:3: bad"), False),
        (redis.exceptions.ResponseError("WRONGTYPE Operation against a key"), False),
        (ValueError("a bug"), False),
    ],
)
def test_outages_are_told_apart_from_bad_input(error: Exception, outage: bool) -> None:
    from streams.runtime.outage import is_outage

    assert is_outage(error) is outage


async def test_a_connection_closed_under_a_call_is_an_outage_of_redis() -> None:
    """redis-py lets a connection another task closed meanwhile out as a bare AttributeError
    (its writer is None): the connection's loss; the same error from our own code is a bug."""
    from redis.asyncio.connection import Connection

    from streams.runtime.outage import dependency_of, is_outage

    with pytest.raises(AttributeError) as closed:
        await Connection()._send_packed_command([b"PING"])
    assert is_outage(closed.value)
    assert dependency_of(closed.value) == "redis"
    with pytest.raises(AttributeError) as ours:
        None.writelines  # type: ignore[attr-defined]  # noqa: B018
    assert not is_outage(ours.value)


async def test_tombstone_record_is_dead_lettered() -> None:
    processor, publisher, _ = _processor()
    record = InboundRecord(None, b"k", "events", 0, 5, NOW)
    summary = await processor.process([record])
    assert summary.dead_lettered == 1
    assert publisher.on("events.dlq")[0].value is None


@pytest.mark.parametrize("count", [1, 50])
async def test_latency_and_batch_metrics_are_observed(count: int) -> None:
    processor, _, metrics = _processor()
    await processor.process([_record(_event(n, f"u{n}", "i"), n) for n in range(count)])
    assert _metric(metrics, "socialrec_event_to_publish_seconds_count") == count
    assert _metric(metrics, "socialrec_batch_size_events_sum") == count


async def test_a_share_is_rekeyed_to_its_recipient_who_gets_a_list_with_the_sharer() -> None:
    store = MemoryStore(StateParams())
    processor, publisher, _ = _processor(store)
    share = {**_event(1, "ann", "scarf", "share"), "target_user_id": "zoe"}
    await processor.process([_record(share, 7)])
    forwarded = publisher.on("shares")
    assert [r.key for r in forwarded] == [b"zoe"]
    assert orjson.loads(forwarded[0].value or b"")["sharer"] == "ann"

    internal = InboundRecord(forwarded[0].value, b"zoe", "shares", 2, 40, NOW)
    assert await processor.refresh_recipients([internal]) == 1
    zoe = orjson.loads(publisher.on("recommendations")[-1].value or b"")
    assert zoe["user_id"] == "zoe"
    assert zoe["trigger"] == {"event_id": "e1", "topic": "shares", "partition": 2, "offset": 40}
    top = zoe["items"][0]
    assert (top["item_id"], top["source"]) == ("scarf", "social")
    assert top["reasons"][0]["user_id"] == "ann"
    assert top["reasons"][0]["action"] == "share"
    assert top["sources"]["social"] > 0


async def test_a_share_read_again_after_its_recipient_was_erased_publishes_no_list() -> None:
    """`shares` read from its beginning (a new app id) must not bring an erased recipient back;
    a share that reached `events` after the erasure still refreshes its recipient."""
    store = MemoryStore(StateParams())
    processor, publisher, _ = _processor(store)
    share = {**_event(1, "ann", "scarf", "share"), "target_user_id": "zoe"}
    await processor.process([_record(share, 7)])
    forwarded = publisher.on("shares")[0].value or b""
    arrived = orjson.loads(forwarded)["arrived"]
    await store.mark_erased({"zoe": arrived + 1.0})
    before = len(publisher.on("recommendations"))

    again = InboundRecord(forwarded, b"zoe", "shares", 2, 40, arrived + 5.0)
    assert await processor.refresh_recipients([again]) == 0
    assert len(publisher.on("recommendations")) == before
    assert "zoe" not in store.recommendations

    later = orjson.dumps({**orjson.loads(forwarded), "arrived": arrived + 2.0})
    assert (
        await processor.refresh_recipients([InboundRecord(later, b"zoe", "shares", 2, 41, NOW)])
        == 1
    )


async def test_the_latest_global_trending_list_is_the_first_fallback() -> None:
    processor, publisher, _ = _processor()
    processor.trending = [("flash-sale", 40.0)]
    await processor.process([_record(_event(1, "new", "x"), 0)])
    body = orjson.loads(publisher.on("recommendations")[0].value or b"")
    sources = [(i["item_id"], i["source"]) for i in body["items"]]
    assert sources[0] == ("flash-sale", "trending")


class _StubSource:
    """A source that proposes one fixed item per user and records what it learnt; the real
    sources run against Redis in tests/integration/test_source_*.py."""

    def __init__(self, source: Source, item: str, *, fail: bool = False) -> None:
        self._source, self.item, self.fail = source, item, fail
        self.learnt: list[str] = []

    @property
    def source(self) -> Source:
        return self._source

    async def learn(self, events: Sequence[Event], learnt: Marks | None = None) -> None:
        if self.fail:
            raise ConnectionError("source down")
        self.learnt += [e.event_id for e in events]

    async def candidates(
        self, user_ids: Sequence[str], exclude: Mapping[str, frozenset[str]], k: int, now: float
    ) -> dict[str, list[Candidate]]:
        if self.fail:
            raise ConnectionError("source down")
        reason = Reason(None, 0.9, action="taste_match")
        return {u: [Candidate(self.item, 0.9, (reason,))] for u in user_ids}

    async def erase(self, user_ids: Sequence[str]) -> dict[str, int]:
        return {}


async def test_sources_learn_fresh_events_only_and_their_candidates_are_published() -> None:
    processor, publisher, metrics = _processor()
    mf = _StubSource(Source.MF, "tripod")
    processor.sources = SourceSet([mf], metrics)
    batch = [_record(_event(1, "ann", "phone"), 0), _record(_event(2, "ann", "case"), 1)]
    await processor.process(batch)
    await processor.process(batch)  # redelivered: the source must not learn it twice
    assert mf.learnt == ["e1", "e2"]
    body = orjson.loads(publisher.on("recommendations")[0].value or b"")
    tripod = next(i for i in body["items"] if i["item_id"] == "tripod")
    assert tripod["sources"]["mf"] > 0
    assert tripod["reasons"][0]["action"] == "taste_match"


async def test_a_failing_source_is_counted_and_the_list_is_still_published() -> None:
    processor, publisher, metrics = _processor()
    processor.sources = SourceSet(
        [_StubSource(Source.MF, "tripod", fail=True), _StubSource(Source.FBT, "cable")], metrics
    )
    await processor.process([_record(_event(1, "ann", "phone"), 0)])
    items = [
        i["item_id"] for i in orjson.loads(publisher.on("recommendations")[0].value or b"")["items"]
    ]
    assert "cable" in items
    assert "tripod" not in items
    assert _metric(metrics, "socialrec_source_errors_total", source="mf", call="learn") == 1
    assert _metric(metrics, "socialrec_source_errors_total", source="mf", call="candidates") == 1


async def test_a_store_behind_the_consumer_applies_and_publishes_nothing() -> None:
    store = MemoryStore(StateParams())
    processor, publisher, _ = _processor(store)
    # Users of partition 0, whose records a keyed producer puts on partition 0.
    users = [u for u in (f"u{n}" for n in range(100)) if Keys().partition_of(u) == 0]
    batch = [_record(_event(n, users[n], "i1"), n) for n in range(3)]
    await processor.process(batch, [OffsetRange("events:0", 0, 2, expected=-1, published=-1)])
    before = await store.snapshot()
    sent = len(publisher.sent)
    later = [_record(_event(n, users[n], "i2"), n) for n in range(7, 9)]
    summary = await processor.process(
        later, [OffsetRange("events:0", 7, 8, expected=6, published=6)]
    )
    assert summary.rewinds == {"events:0": Position(2, -1)}
    assert await store.snapshot() == before
    assert len(publisher.sent) == sent


async def test_a_record_keyed_by_another_user_is_dead_lettered_as_key_mismatch() -> None:
    processor, publisher, metrics = _processor()
    body = _event(1, "ann", "phone")
    wrong = InboundRecord(orjson.dumps(body), b"bob", "events", 0, 0, NOW - 0.01)
    unkeyed = InboundRecord(orjson.dumps(_event(2, "ann", "case")), None, "events", 0, 1, NOW)
    summary = await processor.process([wrong, unkeyed, _record(_event(3, "ann", "cable"), 2)])
    assert (summary.dead_lettered, summary.applied) == (2, 1)
    reasons = [r.headers["socialrec.dlq.reason"] for r in publisher.on("events.dlq")]
    assert reasons == [b"key_mismatch", b"key_mismatch"]
    assert _metric(metrics, "socialrec_dead_letters_total", reason="key_mismatch") == 2


class _BrokenCandidates:
    async def learn(self, events: Sequence[Event], learnt: Marks | None = None) -> None:
        pass

    async def candidates(
        self, exclude: Mapping[str, frozenset[str]], now: float
    ) -> dict[str, dict[Source, list[Candidate]]]:
        raise ValueError("unreadable pools")


async def test_lists_go_out_without_candidates_the_provider_cannot_give() -> None:
    processor, publisher, _ = _processor()
    processor.sources = cast(SourceSet, _BrokenCandidates())
    summary = await processor.process([_record(_event(1, "ann", "phone"), 0)])
    assert (summary.applied, summary.dead_lettered, summary.published) == (1, 0, 1)
    assert publisher.on("events.dlq") == []


async def test_a_follow_sent_with_an_item_is_applied_without_a_list() -> None:
    processor, publisher, _ = _processor()
    follow = {**_event(1, "ann", "phone", "follow"), "target_user_id": "bob"}
    summary = await processor.process([_record(follow, 0), _record(_event(2, "cy", "case"), 1)])
    assert (summary.applied, summary.dead_lettered) == (2, 0)
    assert [r.key for r in publisher.on("recommendations")] == [b"cy"]


@given(
    st.lists(st.integers(0, 2), max_size=40),
    st.integers(1, 5),
    st.sets(st.integers(0, 3)),
)
def test_rounds_hold_each_event_once_and_continue_each_partitions_range(
    partitions: list[int], most: int, ranged: set[int]
) -> None:
    offsets: dict[int, list[int]] = {}
    positions = []
    for p in partitions:
        offsets.setdefault(p, []).append(10 * len(offsets.get(p, [])) + 5)
        positions.append((p, offsets[p][-1]))
    ranges = [
        OffsetRange(f"events:{p}", 0, max(offsets.get(p, [0])) + 3, expected=-1, published=7)
        for p in sorted(ranged | set(offsets))
    ]
    rounds = step_rounds(positions, ranges, most)
    assert sorted(n for events, _ in rounds for n in events) == list(range(len(positions)))
    for events, _ in rounds:
        assert events == sorted(events)
        assert all([positions[n][0] for n in events].count(p) <= most for p in offsets)
    for r in ranges:
        mine = [x for _, rs in rounds for x in rs if x.partition == r.partition]
        assert (mine[0].first, mine[0].expected, mine[-1].last) == (r.first, -1, r.last)
        assert all(b.first == a.last + 1 and b.expected == a.last for a, b in pairwise(mine))
        assert all(x.published == r.published for x in mine)
        for n, (events, rs) in enumerate(rounds):  # a round's range holds its events
            x = [x for x in rs if x.partition == r.partition]
            p = partition_number(r.partition)
            held = [positions[i][1] for i in events if positions[i][0] == p]
            assert all(x[0].first <= o <= x[0].last for o in held) if x else not held, n


async def test_a_batch_larger_than_a_step_is_applied_in_rounds_with_one_list_per_user() -> None:
    """A batch applied in rounds of ``step_max`` events a partition leaves the state, the
    offsets and what the sources learn as the batch in one step does, and each user still
    gets one list, for their latest event."""
    by_partition = {
        p: [u for u in (f"u{n}" for n in range(100)) if Keys().partition_of(u) == p][:2]
        for p in (0, 1)
    }
    plan = [(0, 0), (0, 1), (1, 0), (0, 0), (1, 1), (0, 1), (0, 0), (1, 0)]
    batch = []
    for n, (p, u) in enumerate(plan):
        body = _event(n, by_partition[p][u], f"i{n % 3}")
        if n == 6:
            body["event_id"] = "e0"  # a duplicate, in a later round than its first
        record = _record(body, 10 + n)
        batch.append(InboundRecord(record.value, record.key, "events", p, 10 + n, record.timestamp))
    ranges = [
        OffsetRange("events:0", 10, 16, expected=-1, published=-1),
        OffsetRange("events:1", 12, 17, expected=-1, published=-1),
    ]
    seen = []
    for most in (2, 500):
        store, learnt = MemoryStore(StateParams()), cast(list[str], [])
        processor, publisher, metrics = _processor(store)
        processor.settings = Settings(step_max=most)
        processor.sources = SourceSet([_RecordingSource(learnt)], metrics)
        summary = await processor.process(batch, ranges)
        lists = {r.key: orjson.loads(r.value or b"")["trigger"]["event_id"]
                 for r in publisher.on("recommendations")}  # fmt: skip
        seen.append((await store.snapshot(), learnt, lists, summary.duplicates))
        steps = _metric(metrics, "socialrec_redis_roundtrip_seconds_count")
        assert steps == (3 if most == 2 else 1)
    assert seen[0] == seen[1]
    assert seen[0][1] == ["e0", "e1", "e2", "e3", "e4", "e5", "e7"]
    assert len(seen[0][2]) == 4
