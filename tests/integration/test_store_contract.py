"""One contract, two stores: the in-memory reference and real Redis behave identically.

Every behavioural check runs against both implementations; the equivalence test then feeds
both the same random streams (with tiny caps so evictions happen all the time) and requires
the same outcomes, the same reads and the same full snapshot.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from models.content import CatalogRecord
from models.events import Event, EventType
from models.state import Outcome, StateParams
from streams.keys import Keys
from streams.store import (
    EXCLUSIONS_ONLY,
    TRENDING_OPEN_BUCKETS,
    MemoryStore,
    OffsetRange,
    Position,
    ReadParams,
    RedisStore,
    Store,
    TrendingParams,
)
from tests.fuzz.ids import id_pool
from tests.integration.conftest import REAL_CLIENTS

TIGHT = StateParams(
    history_size=5,
    cooccurrence_window=5,
    neighbours=3,
    cooccurrence_cap=6,
    dedupe_window=20,
    popularity_cap=8,
    half_life_s=3600.0,
)
T0 = 1_700_000_000.0
KEYS = Keys()

StoreFactory = Callable[[StateParams], Store]


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    """The reference, the store on one Redis, and on a Redis Cluster (each step in one slot)."""
    if request.param == "memory":
        return MemoryStore
    client = request.getfixturevalue(REAL_CLIENTS[request.param])
    return lambda params: RedisStore(client, params)


def random_stream(
    seed: int, count: int, users: int = 8, items: int = 12, wide: bool = False
) -> list[Event]:
    """``wide``: ids from the whole alphabet the validators accept instead of u0 and i0."""
    rnd = random.Random(seed)
    names = id_pool(seed, users + items) if wide else []
    user_name = (lambda k: names[k]) if wide else (lambda k: f"u{k}")
    item_name = (lambda k: names[users + k]) if wide else (lambda k: f"i{k}")
    kinds = [EventType.VIEW] * 6 + [
        EventType.LIKE,
        EventType.CART,
        EventType.PURCHASE,
        EventType.HIDE,
        EventType.SHARE,
        EventType.FOLLOW,
        EventType.UNFOLLOW,
    ]
    events: list[Event] = []
    ts = T0
    for n in range(count):
        kind = rnd.choice(kinds)
        user = user_name(rnd.randrange(users))
        ts += rnd.random() * 5000  # long gaps: popularity landmarks get rebased
        if kind in (EventType.FOLLOW, EventType.UNFOLLOW):
            other = user_name(rnd.randrange(users))
            if other != user:
                events.append(Event(f"e{n}", kind, user, ts, target_user_id=other))
        else:
            target = user_name(rnd.randrange(users)) if kind is EventType.SHARE else None
            item = item_name(rnd.randrange(items))
            events.append(Event(f"e{n}", kind, user, ts, item_id=item, target_user_id=target))
        if rnd.random() < 0.1:
            events.append(rnd.choice(events))  # redelivery
    return events


def assert_close(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict)
        assert set(a) == set(b), f"{path}: keys differ: {sorted(set(a) ^ set(b))[:5]}"
        for key in a:
            assert_close(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


async def test_duplicates_are_detected(make_store: StoreFactory) -> None:
    store = make_store(StateParams())
    event = Event("e1", EventType.VIEW, "u1", T0, item_id="a")
    first = await store.process_batch([event, event])
    second = await store.process_batch([event])
    assert first.outcomes == [Outcome.APPLIED, Outcome.DUPLICATE]
    assert second.outcomes == [Outcome.DUPLICATE]
    assert list(first.views) == ["u1"]
    assert second.views == {}


async def test_offsets_ride_with_the_state_and_a_store_behind_them_is_reported(
    make_store: StoreFactory,
) -> None:
    store = make_store(TIGHT)
    events = _of_partition(random_stream(seed=3, count=60, users=30), 0)[:6]
    first = [OffsetRange("events:0", 0, 2, expected=-1, published=-1)]
    await store.process_batch(events[:3], offsets=first)
    assert await store.positions(["events:0", "events:1"]) == {"events:0": Position(2, -1)}
    second = [OffsetRange("events:0", 3, 5, expected=2, published=2)]
    result = await store.process_batch(events[3:], offsets=second)
    assert result.rewinds == {}
    assert await store.positions(["events:0"]) == {"events:0": Position(5, 2)}

    # A consumer that saw offset 9 applied meets a store that says 5: the store lost writes.
    before = await store.snapshot()
    behind = [OffsetRange("events:0", 10, 12, expected=9, published=9)]
    later = _of_partition(random_stream(seed=4, count=60, users=30), 0)[:3]
    result = await store.process_batch(later, offsets=behind)
    assert result.rewinds == {"events:0": Position(5, 2)}
    assert result.outcomes == []
    assert await store.snapshot() == before  # nothing applied
    assert await store.positions(["events:0"]) == {"events:0": Position(5, 2)}


def _of_partition(events: list[Event], partition: int) -> list[Event]:
    """The events of users of one partition, aimed at users of it (one atomic step)."""
    inside = {u for u in (e.user_id for e in events) if Keys().partition_of(u) == partition}
    return [e for e in events if e.user_id in inside and e.target_user_id in (None, *inside)]


async def test_published_offsets_handed_over_only_move_forward(make_store: StoreFactory) -> None:
    store = make_store(TIGHT)
    events = random_stream(seed=5, count=6)
    await store.process_batch(events, offsets=[OffsetRange("events:0", 0, 5, -1, -1)])
    await store.mark_published({"events:0": 3, "events:1": 7})  # events:1 was never applied
    assert await store.positions(["events:0", "events:1"]) == {"events:0": Position(5, 3)}
    await store.mark_published({"events:0": 2})  # an older hand-over changes nothing
    await store.mark_published({"events:0": 9})  # never past what was applied
    assert await store.positions(["events:0"]) == {"events:0": Position(5, 5)}


async def test_reads_reflect_the_batch(make_store: StoreFactory) -> None:
    store = make_store(StateParams())
    result = await store.process_batch(
        [
            Event("e1", EventType.PURCHASE, "ann", T0, item_id="phone"),
            Event("e2", EventType.PURCHASE, "ann", T0 + 1, item_id="case"),
            Event("e3", EventType.VIEW, "bob", T0 + 2, item_id="phone"),
            Event("e4", EventType.HIDE, "bob", T0 + 3, item_id="tv"),
            Event("e5", EventType.FOLLOW, "bob", T0 + 4, target_user_id="ann"),
        ]
    )
    assert list(result.views) == ["ann", "bob"]  # follow events trigger no read
    bob = result.views["bob"]
    assert bob.recent == (("phone", 1.0),)
    assert bob.hidden == frozenset({"tv"})
    assert bob.neighbours == {"phone": ()}  # item-CF is learnt apart (test_source_itemcf.py)
    assert result.views["ann"].bought == frozenset({"phone", "case"})
    assert result.popular.items[0][0] == "phone"
    again = await store.read_users(["bob", "nobody"])
    assert again.views["bob"] == bob
    assert again.views["nobody"].recent == ()


async def test_a_batch_applied_without_views_reads_nobody_and_writes_the_same(
    make_store: StoreFactory,
) -> None:
    """``views=False`` (a batch's earlier rounds) applies as a step with views does."""
    store = make_store(StateParams())
    results, read = [], []
    for views, ann, bob in ((False, "ann", "bob"), (True, "cy", "dan")):
        results.append(
            await store.process_batch(
                [
                    Event(f"{ann}1", EventType.PURCHASE, ann, T0, item_id="phone"),
                    Event(f"{bob}2", EventType.VIEW, bob, T0 + 2, item_id="phone"),
                    Event(f"{ann}1", EventType.PURCHASE, ann, T0, item_id="phone"),
                ],
                views=views,
            )
        )
        read.append(
            [replace(v, user_id="") for v in (await store.read_users([ann, bob])).views.values()]
        )
    assert results[0].views == {}
    assert list(results[1].views) == ["cy", "dan"]
    applied, duplicate = Outcome.APPLIED, Outcome.DUPLICATE
    assert results[0].outcomes == results[1].outcomes == [applied, applied, duplicate]
    assert read[0] == read[1] == [replace(v, user_id="") for v in results[1].views.values()]


async def test_replay_within_the_dedupe_window_changes_nothing(make_store: StoreFactory) -> None:
    store = make_store(StateParams())
    events = random_stream(seed=4, count=300)
    for start in range(0, len(events), 50):
        await store.process_batch(events[start : start + 50])
    before = await store.snapshot()
    result = await store.process_batch(events)
    assert set(result.outcomes) == {Outcome.DUPLICATE}
    assert_close(await store.snapshot(), before)


@pytest.mark.parametrize("wide", [False, True], ids=["u0-ids", "unicode-ids"])
@pytest.mark.parametrize("seed", range(8))
async def test_redis_matches_the_reference_exactly(
    seed: int, wide: bool, real_client: aioredis.Redis
) -> None:
    await real_client.flushdb()
    reference = MemoryStore(TIGHT)
    real = RedisStore(real_client, TIGHT)
    events = random_stream(seed, 300, wide=wide)
    batch = random.Random(seed).randint(1, 60)
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        expected = await reference.process_batch(chunk)
        actual = await real.process_batch(chunk)
        assert actual.outcomes == expected.outcomes
        assert list(actual.views) == list(expected.views)
        for user, view in expected.views.items():
            got = actual.views[user]
            assert (got.seen, got.bought, got.hidden) == (view.seen, view.bought, view.hidden)
            assert got.social == view.social
            assert [i for i, _ in got.recent] == [i for i, _ in view.recent]
            assert_close(dict(got.recent), dict(view.recent))
            assert_close(
                {k: dict(v) for k, v in got.neighbours.items()},
                {k: dict(v) for k, v in view.neighbours.items()},
            )
        assert [i for i, _ in actual.popular.items] == [i for i, _ in expected.popular.items]
    assert_close(await real.snapshot(), await reference.snapshot())

    victims = sorted({e.user_id for e in events})[:2]
    assert await real.erase_users(victims) == await reference.erase_users(victims)
    assert_close(await real.snapshot(), await reference.snapshot())


async def test_every_redis_key_belongs_to_the_documented_layout(
    real_client: aioredis.Redis,
) -> None:
    await real_client.flushdb()
    store = RedisStore(real_client, TIGHT)
    events = random_stream(seed=9, count=200)
    await store.process_batch(events)
    await store.cache_recommendations({"u1": b"{}"})
    keys = Keys()
    users = {e.user_id for e in events} | {e.target_user_id for e in events if e.target_user_id}
    for raw in await real_client.keys("*"):
        key = raw.decode() if isinstance(raw, bytes) else raw
        scope, entity, _ = keys.parse(key)  # raises for an undocumented key
        if scope == "user":
            assert entity in users
            assert key in keys.user_keys(entity)


@pytest.mark.parametrize("wide", [False, True], ids=["u0-ids", "unicode-ids"])
async def test_erasure_leaves_no_key_or_member_naming_the_user(
    wide: bool, real_client: aioredis.Redis
) -> None:
    await real_client.flushdb()
    store = RedisStore(real_client, TIGHT)
    events = random_stream(seed=5, count=300, wide=wide)
    victim = events[0].user_id
    await store.process_batch(events)
    await store.cache_recommendations({victim: b"{}"})
    reports = await store.erase_users([victim])
    assert reports[0].history_items > 0
    needle = victim.encode()
    for raw in await real_client.keys("*"):
        key = raw.decode() if isinstance(raw, bytes) else raw
        scope, entity, _ = Keys().parse(key)
        assert (scope, entity) != ("user", victim)
        kind = await real_client.type(key)
        if kind == b"zset":
            members = await real_client.zrange(key, 0, -1)
        elif kind == b"set":
            members = list(await real_client.smembers(key))
        elif kind == b"hash":
            members = await real_client.hkeys(key)
        else:
            members = []
        assert needle not in members, key
        prefixed = [m for m in members if isinstance(m, bytes) and m.startswith(needle + b"\t")]
        assert not prefixed, key


async def test_an_erasure_whose_sets_changed_after_they_were_read_reaches_everyone(
    real_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script needs the key stem of everyone the user's sets name; one it was not handed
    (a follower added since the sets were read) makes it write nothing and name them, and the
    store runs it again with their stems: the erasure ends as the reference's."""
    await real_client.flushdb()
    real, reference = RedisStore(real_client, TIGHT), MemoryStore(TIGHT)
    events = random_stream(seed=5, count=300)
    await real.process_batch(events)
    await reference.process_batch(events)
    victim = events[0].user_id
    assert await real.audience([victim]), "the victim has followers or recipients to clean"

    async def read_nobody(user_ids: object) -> set[str]:
        return set()

    step, calls = real._step, 0

    def counted(partition: int, args: Any) -> Any:
        nonlocal calls
        calls += str(args[0]).startswith("erase")
        return step(partition, args)

    monkeypatch.setattr(real, "_counterparts", read_nobody)
    monkeypatch.setattr(real, "_step", counted)
    assert await real.erase_users([victim]) == await reference.erase_users([victim])
    assert calls == 2, "the first run named whom it was not handed, the second erased"
    assert_close(await real.snapshot(), await reference.snapshot())


async def test_a_step_counts_from_the_landmark_another_writer_moved(
    real_client: aioredis.Redis,
) -> None:
    """Two stores on one Redis (a partition's old and new owner in a rebalance): a step
    handed the landmark its store last saw, which the other store's step moved since, writes
    nothing and is worked out again from the stored one."""
    await real_client.flushdb()
    params = StateParams(half_life_s=10.0)
    old, new = RedisStore(real_client, params), RedisStore(real_client, params)
    reference = MemoryStore(params)
    batches = [
        (old, [Event("e1", EventType.VIEW, "u1", T0, item_id="a")]),
        (new, [Event("e2", EventType.LIKE, "u1", T0 + 700, item_id="b")]),  # rebases
        (old, [Event("e3", EventType.VIEW, "u1", T0 + 701, item_id="a")]),  # knew T0
    ]
    for store, events in batches:
        outcomes = (await store.process_batch(events)).outcomes
        assert outcomes == (await reference.process_batch(events)).outcomes
    assert_close(await old.snapshot(), await reference.snapshot())
    assert (await old.snapshot())["landmark"] == {str(KEYS.partition_of("u1")): T0 + 700}


@pytest.mark.parametrize("between", ["step", "erasure"])
async def test_a_plan_read_before_another_writer_is_made_again(
    real_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, between: str
) -> None:
    """A step is planned in Python from what it read of its users (streams/store/plan.py).
    When another store's step or an erasure writes the partition between that read and the
    step, the step writes nothing and is planned again: the user's affinity counts both
    events, and the erased user's event is not brought back."""
    await real_client.flushdb()
    old, new = RedisStore(real_client, TIGHT), RedisStore(real_client, TIGHT)
    reference = MemoryStore(TIGHT)
    first = [Event("e1", EventType.VIEW, "u1", T0, item_id="a")]
    ours = [
        Event("e3", EventType.VIEW, "u1", T0 + 2, item_id="a"),
        Event("e4", EventType.CART, "u1", T0 + 3, item_id="a"),
    ]
    for store in (old, reference):
        await store.process_batch(first)
    plans, reads = old._plans, 0

    async def others_write_meanwhile(*args: Any) -> Any:
        nonlocal reads
        planned = await plans(*args)
        reads += 1
        if reads == 1:
            if between == "step":
                theirs = [Event("e2", EventType.LIKE, "u1", T0 + 1, item_id="a")]
                await new.process_batch(theirs)
                await reference.process_batch(theirs)
            else:
                await new.erase_users(["u1"])
                await reference.erase_users(["u1"])
        return planned

    monkeypatch.setattr(old, "_plans", others_write_meanwhile)
    result = await old.process_batch(ours)
    assert result.outcomes == (await reference.process_batch(ours)).outcomes
    assert reads == 2, "the step refused the first plan and was planned again"
    assert_close(await old.snapshot(), await reference.snapshot())
    theirs = [*first, Event("e2", EventType.LIKE, "u1", T0 + 1)] if between == "step" else []
    counted = ours + theirs
    expected = min(TIGHT.affinity_cap, sum(TIGHT.weight(e.type) for e in counted))
    assert (await old.snapshot())["users"]["u1"]["affinity"] == {"a": expected}


async def test_an_erasure_handed_stale_amounts_reads_them_again(
    real_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The amounts an erasure takes out of popularity are worked out from the user's logged
    events read before its step; a step handed amounts for fewer events than are logged by
    then writes nothing, and the store reads them again."""
    await real_client.flushdb()
    real, reference = RedisStore(real_client, TIGHT), MemoryStore(TIGHT)
    events = random_stream(seed=7, count=200)
    await real.process_batch(events)
    await reference.process_batch(events)
    victim = events[0].user_id
    withdrawals, calls = real._landmarks.withdrawals, 0

    async def first_stale(client: Any, user: str) -> tuple[str, bytes]:
        nonlocal calls
        calls += 1
        known, amounts = await withdrawals(client, user)
        return (known, b"{}") if calls == 1 else (known, amounts)

    monkeypatch.setattr(real._landmarks, "withdrawals", first_stale)
    assert await real.erase_users([victim]) == await reference.erase_users([victim])
    assert calls == 2, "the stale amounts were refused, the fresh ones used"
    assert_close(await real.snapshot(), await reference.snapshot())


def _trending_stream(seed: int, count: int, start: float) -> tuple[list[Event], list[float]]:
    """Events with live streams and arrival times spread over ~3 minutes (several windows)."""
    rnd = random.Random(seed)
    events, arrivals = [], []
    arrival = start
    for n in range(count):
        arrival += rnd.random() * 0.8
        kind = rnd.choice(
            [EventType.VIEW] * 5 + [EventType.CART, EventType.PURCHASE, EventType.HIDE]
        )
        stream = f"live-{rnd.randrange(3)}" if rnd.random() < 0.5 else None
        item = f"i{int(rnd.paretovariate(1.1)) % 15}"
        events.append(
            Event(f"t{n}", kind, f"u{rnd.randrange(10)}", arrival, item_id=item, stream_id=stream)
        )
        arrivals.append(arrival + rnd.random() * 0.01)
    return events, arrivals


CATALOG = [
    CatalogRecord(f"i{k}", category=f"cat{k % 3}", merchant_id=f"m{k % 4}") for k in range(15)
]


async def _trending_of(store: Store, now: float) -> dict[str, Any]:
    scopes = ["global", *(f"stream:live-{k}" for k in range(3))]
    scopes += [f"category:cat{k}" for k in range(3)] + [f"merchant:m{k}" for k in range(4)]
    return {t.scope: (t.items, t.newest_ts) for t in await store.trending(scopes, now, k=5)}


async def test_trending_windows_match_the_reference(real_client: aioredis.Redis) -> None:
    await real_client.flushdb()
    start = time.time() - 170
    events, arrivals = _trending_stream(seed=1, count=400, start=start)
    reference = MemoryStore(StateParams())
    real = RedisStore(real_client, StateParams())
    for store in (reference, real):
        await store.put_items(CATALOG)
        for k in range(0, len(events), 50):
            await store.process_batch(events[k : k + 50], arrivals[k : k + 50])
    changed_ref = await reference.take_changed_scopes(100)
    changed_real = await real.take_changed_scopes(100)
    assert changed_real == changed_ref
    assert "stream:live-1" in changed_real
    assert await real.take_changed_scopes(100) == []  # handed out once
    now = arrivals[-1] + 0.5
    expected = await _trending_of(reference, now)
    assert await _trending_of(real, now) == expected
    assert expected["global"][0]  # there is something trending

    victim = "u3"
    # A trending log lasts as long as its buckets can be read: two windows and a bucket more.
    ttl = await real_client.ttl(Keys().user(victim, "trend_log"))
    assert 0 < ttl <= (2 * TrendingParams().span + 2) * TrendingParams().bucket_s
    await reference.erase_users([victim])
    await real.erase_users([victim])
    never = MemoryStore(StateParams())
    await never.put_items(CATALOG)
    kept = [(e, a) for e, a in zip(events, arrivals, strict=True) if e.user_id != victim]
    await never.process_batch([e for e, _ in kept], [a for _, a in kept])
    after = await _trending_of(real, now)
    assert after == await _trending_of(reference, now)
    for scope, (items, _) in (await _trending_of(never, now)).items():
        got = after[scope][0]
        assert [(i.item_id, i.events) for i in got] == [(i.item_id, i.events) for i in items]
        for a, b in zip(got, items, strict=True):
            assert math.isclose(a.count, b.count)
            assert math.isclose(a.velocity, b.velocity, abs_tol=1e-9)


async def test_item_categories_come_from_the_catalog(make_store: StoreFactory) -> None:
    store = make_store(StateParams())
    await store.put_items(CATALOG[:3])
    assert await store.item_categories(["i0", "i1", "nope"]) == {
        "i0": "cat0",
        "i1": "cat1",
        "nope": "",
    }
    await store.delete_items(["i1"])
    assert (await store.item_categories(["i1"]))["i1"] == ""


async def test_a_cached_list_reads_back_as_published(make_store: StoreFactory) -> None:
    store = make_store(StateParams())
    items = [
        {"item_id": f"i{n}", "score": 0.5, "reasons": [{"action": "popular"}]} for n in range(10)
    ]
    body = orjson.dumps({"user_id": "u1", "items": items})
    await store.cache_recommendations({"u1": body})
    assert await store.cached_recommendations("u1") == body
    assert await store.cached_recommendations("u2") is None
    if isinstance(store, RedisStore):  # kept deflated
        stored = await store.client.get(Keys().user("u1", "recommendations"))
        assert isinstance(stored, bytes)
        assert len(stored) < len(body) / 2


async def test_erasure_marks_are_anonymous_and_readable(make_store: StoreFactory) -> None:
    store = make_store(TIGHT)
    assert await store.erased_at(["zoe", "yan"]) == {}
    await store.mark_erased({"zoe": T0 + 5.25})
    assert await store.erased_at(["zoe", "yan"]) == {"zoe": T0 + 5.25}
    snapshot = await store.snapshot()  # the mark is not per-user state: nothing names zoe
    assert "zoe" not in repr(snapshot)


def _pair(together: bool) -> tuple[str, str]:
    """Two users whose state sits in one partition's slot, or in two."""
    keys, first = Keys(), "u0"
    for n in range(1, 1000):
        if (keys.partition_of(f"u{n}") == keys.partition_of(first)) == together:
            return first, f"u{n}"
    raise AssertionError("no such pair")


@pytest.mark.parametrize("together", [True, False], ids=["one partition", "two partitions"])
async def test_events_in_flight_at_an_erasure_are_dropped_in_the_state_step(
    make_store: StoreFactory, together: bool
) -> None:
    """An event that reached Kafka at or before its user's erasure is dropped by the same step
    that would write it; one that arrived later is applied. One aimed at a user erased since
    is applied without its target: nothing of it names them, wherever they live."""
    store = make_store(TIGHT)
    bob, zoe = _pair(together)
    await store.mark_erased({zoe: T0 + 10})
    share = Event("s1", EventType.SHARE, bob, T0, item_id="b", target_user_id=zoe)
    events = [
        Event("e1", EventType.VIEW, zoe, T0, item_id="a"),  # in flight: dropped
        share,  # aimed at her while in flight: applied without her
        Event("f1", EventType.FOLLOW, bob, T0 + 1, target_user_id=zoe),  # the same
        Event("e2", EventType.VIEW, zoe, T0 + 20, item_id="c"),  # she came back: applied
        Event("e3", EventType.VIEW, bob, T0 + 1, item_id="d"),  # nothing to do with her
    ]
    result = await store.process_batch(events, [T0 + 5, T0 + 10, T0 + 10, T0 + 20, T0 + 1])
    assert result.outcomes == [Outcome.ERASED] + [Outcome.APPLIED] * 4
    assert set(result.views) == {zoe, bob}
    assert [item for item, _ in result.views[zoe].recent] == ["c"]
    users = (await store.snapshot())["users"]
    assert set(users[bob]["history"]) == {"b", "d"}
    assert not users[bob]["outbox"]
    assert not users[bob]["following"]
    assert set(users[zoe]["history"]) == {"c"}
    assert not users[zoe]["inbox"]
    assert not users[zoe]["followers"]
    # A share that reached Kafka after her erasure reaches her.
    again = Event("s2", EventType.SHARE, bob, T0 + 12, item_id="e", target_user_id=zoe)
    assert (await store.process_batch([again], [T0 + 12])).outcomes == [Outcome.APPLIED]
    users = (await store.snapshot())["users"]
    assert users[bob]["outbox"] == {zoe}
    assert users[zoe]["senders"] == {bob}


async def test_trending_keeps_settled_buckets_in_memory_and_stays_exact(
    real_client: aioredis.Redis,
) -> None:
    """Buckets older than the open ones are read once and kept; a look after more events
    (in open buckets) and looks later in time still equal the reference."""
    await real_client.flushdb()
    events, arrivals = _trending_stream(seed=2, count=400, start=time.time() - 160)
    reference, real = MemoryStore(StateParams()), RedisStore(real_client, StateParams())
    half = 200
    for store in (reference, real):
        await store.put_items(CATALOG)
        await store.process_batch(events[:half], arrivals[:half])
    first = arrivals[half - 1] + 0.5
    assert await _trending_of(real, first) == await _trending_of(reference, first)
    for store in (reference, real):
        await store.process_batch(events[half:], arrivals[half:])
    # (The reference's windows only move forward: no look back at ``first``.) The window at
    # the end still holds buckets of the first half, kept since the first look.
    for now in (arrivals[-1] + 0.5, arrivals[-1] + 30.0, arrivals[-1] + 200.0):
        assert await _trending_of(real, now) == await _trending_of(reference, now), now


async def _filled_but_the_last_seconds(
    real_client: aioredis.Redis, seed: int
) -> tuple[MemoryStore, RedisStore, float, Callable[[Store], Awaitable[object]]]:
    """A reference and a Redis store given a trending stream but for its last 3 s (buckets
    still filling at ``now``), and how to give a store the rest."""
    await real_client.flushdb()
    events, arrivals = _trending_stream(seed=seed, count=400, start=time.time() - 160)
    reference, real = MemoryStore(StateParams()), RedisStore(real_client, StateParams())
    now = arrivals[-1] + 0.5
    cut = next(n for n, arrival in enumerate(arrivals) if arrival > now - 3.0)
    for store in (reference, real):
        await store.put_items(CATALOG)
        await store.process_batch(events[:cut], arrivals[:cut])
    return reference, real, now, lambda store: store.process_batch(events[cut:], arrivals[cut:])


async def test_two_looks_at_one_time_with_events_between_stay_exact(
    real_client: aioredis.Redis,
) -> None:
    """The second look reuses the closed buckets' sums of the first and reads the open
    buckets again, which the events between the looks changed."""
    reference, real, now, rest = await _filled_but_the_last_seconds(real_client, seed=4)
    before = await _trending_of(real, now)
    assert before == await _trending_of(reference, now)
    for store in (reference, real):
        await rest(store)
    after = await _trending_of(real, now)
    assert after == await _trending_of(reference, now)
    assert after != before  # the events between the looks count


async def test_a_bucket_changed_after_a_look_is_read_again_once_it_settles(
    real_client: aioredis.Redis,
) -> None:
    """A bucket read while it filled, then changed (by any worker), then settled before the
    next look, is read again at that look: the one read while it filled is out of date."""
    reference, real, now, rest = await _filled_but_the_last_seconds(real_client, seed=5)
    assert await _trending_of(real, now) == await _trending_of(reference, now)
    other = RedisStore(real_client, StateParams())  # another worker writes the rest
    for store in (reference, other):
        await rest(store)
    later = now + TRENDING_OPEN_BUCKETS + 1.0  # those buckets no longer fill
    assert await _trending_of(real, later) == await _trending_of(reference, later)


async def test_another_workers_erasure_is_read_again_in_filling_buckets(
    real_client: aioredis.Redis,
) -> None:
    """An erasure by another worker moves the versions of the filling buckets it subtracts
    from, so a look at the same time reads them again."""
    reference, real, now, rest = await _filled_but_the_last_seconds(real_client, seed=7)
    victim = "zed"  # acts only in the buckets still filling
    late = [Event(f"z{n}", EventType.PURCHASE, victim, now, item_id="i1") for n in range(3)]
    for store in (reference, real):
        await rest(store)
        await store.process_batch(late, [now - 1.0] * len(late))
    before = await _trending_of(real, now)
    assert before == await _trending_of(reference, now)
    await reference.erase_users([victim])
    await RedisStore(real_client, StateParams()).erase_users([victim])
    after = await _trending_of(real, now)
    assert after == await _trending_of(reference, now)
    assert after != before


async def test_a_second_look_reads_no_bucket_that_did_not_change(
    real_client: aioredis.Redis,
) -> None:
    """Buckets still filling are read again only if their version moved (or an absent one
    appeared), and then only the partitions' shares that moved: a look with nothing written
    since the last reads no bucket."""
    await real_client.flushdb()
    events, arrivals = _trending_stream(seed=6, count=200, start=time.time() - 100)
    real = RedisStore(real_client, StateParams())
    await real.put_items(CATALOG)
    await real.process_batch(events, arrivals)
    now = arrivals[-1] + 0.5
    first = await _trending_of(real, now)

    async def calls(command: str) -> int:
        """The command's calls on every primary (a cluster's info goes to one node)."""
        if isinstance(real_client, RedisCluster):
            nodes = await real_client.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
            every = list(nodes.values())
        else:
            every = [await real_client.info("commandstats")]
        return sum(int(stats.get(f"cmdstat_{command}", {}).get("calls", 0)) for stats in every)

    async def bucket_reads() -> int:
        return await calls("hgetall")

    async def version_checks() -> int:
        return await calls("hmget")

    before, checks = await bucket_reads(), await version_checks()
    assert await _trending_of(real, now) == first
    assert await bucket_reads() == before
    # The filling buckets' versions: one command a bucket and partition, whatever the scopes.
    assert 0 < await version_checks() - checks <= (TRENDING_OPEN_BUCKETS + 1) * Keys().partitions
    await real.process_batch(
        [Event("late", EventType.VIEW, "u1", now, item_id="i1")], [arrivals[-1] + 0.1]
    )
    before = await bucket_reads()
    assert await _trending_of(real, now) != first  # the changed buckets were read again
    # Only the shares the event changed: its partition's, of its three scopes (global, its
    # item's category and merchant), two hashes each.
    assert await bucket_reads() - before == 3 * 2


async def test_an_exclusions_only_read_gives_what_excludes_and_nothing_else(
    real_client: aioredis.Redis,
) -> None:
    """The learner's read (EXCLUSIONS_ONLY): seen, bought and hidden as a full read gives
    them; no recent items, neighbours, social proof or popular items."""
    params, events = StateParams(), random_stream(seed=3, count=200)
    full = RedisStore(real_client, params)
    await full.process_batch(events)
    light = RedisStore(real_client, params, read=EXCLUSIONS_ONLY)
    await _assert_exclusions_only(full, light, sorted({e.user_id for e in events}))


async def test_the_references_exclusions_only_read_gives_what_excludes() -> None:
    params, events = StateParams(), random_stream(seed=3, count=200)
    full, light = MemoryStore(params), MemoryStore(params, read=EXCLUSIONS_ONLY)
    for store in (full, light):
        await store.process_batch(events)
    await _assert_exclusions_only(full, light, sorted({e.user_id for e in events}))


async def _assert_exclusions_only(full: Store, light: Store, users: list[str]) -> None:
    whole, part = await full.read_users(users), await light.read_users(users)
    assert whole.popular.items
    assert not part.popular.items
    for user in users:
        got, want = part.views[user], whole.views[user]
        assert (got.seen, got.bought, got.hidden) == (want.seen, want.bought, want.hidden)
        assert (got.recent, dict(got.neighbours), got.social) == ((), {}, ())
    assert any(view.recent for view in whole.views.values())


async def test_an_exclusions_only_read_does_not_read_popularity(
    real_client: aioredis.Redis,
) -> None:
    """The learner asks for no popular items, and Redis sends none: a read of the 0 best
    members of a sorted set would be a read of all of them (every item of every partition,
    tens of thousands of entries at each read)."""
    buys = [
        Event(f"b{n}", EventType.PURCHASE, f"u{n % 7}", T0 + n, item_id=f"item-{n:04}")
        for n in range(2_000)
    ]
    await RedisStore(real_client, StateParams()).process_batch(buys)
    light = RedisStore(real_client, StateParams(), read=EXCLUSIONS_ONLY)

    async def sent() -> int:
        return int((await real_client.info("stats"))["total_net_output_bytes"])

    before = await sent()
    view = (await light.read_users(["u0"])).views["u0"]
    assert len(view.bought) > 200
    # The user's own 286 items (a few kB); the popularity of 2,000 items is over 40 kB.
    assert await sent() - before < 20_000


async def test_kept_popular_items_serve_until_their_time_is_up(
    real_client: aioredis.Redis,
) -> None:
    """With ``popular_ttl_s`` the worker reads popularity once per interval, not per batch:
    a batch within it gets the kept items, the first one after it what Redis holds now. While
    fewer items than it asks for are popular at all (a young store), it reads every batch."""
    store = RedisStore(real_client, StateParams(), ReadParams(popular=1), popular_ttl_s=3600.0)
    young = await store.process_batch([])
    assert young.popular.items == ()
    first = await store.process_batch([Event("e1", EventType.PURCHASE, "ann", T0, item_id="tv")])
    assert [i for i, _ in first.popular.items] == ["tv"]  # read again: none were kept
    buys = [Event(f"b{n}", EventType.PURCHASE, f"u{n}", T0 + n, item_id="phone") for n in range(3)]
    kept = await store.process_batch(buys)
    assert kept.popular == first.popular
    assert (await store.read_users(["ann"])).popular == first.popular
    store._popular_until = 0.0  # the interval is up
    fresh = await store.process_batch([Event("e2", EventType.VIEW, "ann", T0 + 9, item_id="tv")])
    assert [i for i, _ in fresh.popular.items][:1] == ["phone"]
    assert kept.views["u0"].bought == frozenset({"phone"})  # the batch itself was applied
