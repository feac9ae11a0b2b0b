"""The learner on real Redis: it teaches the sources once, keeps each touched user's pools
(equal to asking the sources directly), skips erased users, and forgets a user on erasure."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from types import SimpleNamespace
from typing import Any, cast

import aiokafka
import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka.errors import CommitFailedError

from models.events import Event, EventType
from models.recommend import excluded_items
from streams.config import SOURCE_NAMES, Settings
from streams.keys import Keys
from streams.metrics import WorkerMetrics
from streams.pipeline import InboundRecord, recommend_params
from streams.runtime.forgetting import ForgetFollower
from streams.runtime.learner import Learner
from streams.runtime.learner_state import LearnerState
from streams.runtime.pools import PoolStore, decode_pools, encode_pools, pools_json
from streams.runtime.privacy import ErasureProcessor
from streams.runtime.publisher import KafkaPublisher
from streams.runtime.worker import state_params
from streams.sources.factory import build_sources
from streams.sources.mf_batch import stored_sampler
from streams.sources.progress import learnt_member
from streams.sources.snapshots import fbt_state, followees_state, usercf_state
from streams.store import RedisStore
from streams.tools.processes import free_port
from tests.e2e.conftest import wait_for

T0 = 1_796_000_000.0


def _records(events: list[Event], first_offset: int = 0) -> list[InboundRecord]:
    return [
        InboundRecord(e.to_json(), e.user_id.encode(), "events", 0, first_offset + n, e.ts)
        for n, e in enumerate(events)
    ]


def _stream() -> list[Event]:
    baskets = [("ann", ["phone", "case", "cable"]), ("bob", ["phone", "case"]),
               ("cy", ["phone", "cable"]), ("dee", ["phone"])]  # fmt: skip
    events, n = [], 0
    for user, items in baskets:
        for item in items:
            events.append(Event(f"e{n}", EventType.PURCHASE, user, T0 + n, item_id=item))
            n += 1
    return events


def _learner(client: aioredis.Redis, settings: Settings) -> Learner:
    metrics = WorkerMetrics()
    store = RedisStore(client, state_params(settings))
    sources, _ = build_sources(client, settings, store.params, metrics)
    return Learner(settings, store, sources, LearnerState(client), metrics, clock=lambda: T0 + 60)


async def _mf_rows(client: aioredis.Redis) -> dict[Any, Any]:
    return dict(await client.hgetall(Keys().global_("mf_items")))


async def test_the_learner_teaches_once_and_keeps_the_pools_the_sources_give(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    events = _stream()
    store = RedisStore(redis_client, state_params(settings))
    await store.process_batch(events)  # the worker's part: exclusions come from this state
    learner = _learner(redis_client, settings)
    assert await learner.learn(_records(events)) == len(events)
    first = await learner.state.progress()
    assert first is not None
    assert first.refreshed == len({e.user_id for e in events})  # each touched user once

    # The pools are what the sources answer now (in the stored form: scores shortened), for
    # every user the batch touched.
    views = (await store.read_users(["ann", "bob", "cy", "dee"])).views
    exclude = {u: excluded_items(v, recommend_params(settings)) for u, v in views.items()}
    direct = await learner.sources.candidates(exclude, T0 + 60)
    kept = await PoolStore(redis_client).candidates(exclude, T0 + 60)
    assert kept == {u: decode_pools(encode_pools(p)) for u, p in direct.items() if p}
    assert "cable" in {item for pool in kept["bob"].values() for item in pool}

    # A redelivery (same ids, new offsets) teaches nothing twice.
    rows = await _mf_rows(redis_client)
    assert await learner.learn(_records(events, first_offset=100)) == 0
    assert await _mf_rows(redis_client) == rows
    progress = await learner.state.progress()
    assert progress is not None
    assert learner.half_life is not None
    assert progress[:2] == (events[-1].ts, settings.pool_refresh_s)
    assert progress.refreshed == first.refreshed  # nothing new, nobody refreshed

    # The stream's half-life, learnt from the events, is stored with the progress (the worker
    # decays social proof by it), the followees source decays by it, and a new learner
    # continues it.
    assert progress.half_life_s == learner.half_life.half_life_s
    decaying = [m for m in learner.sources.models if hasattr(m, "half_life_s")]
    assert decaying
    assert all(m.half_life_s == progress.half_life_s for m in decaying)
    again = _learner(redis_client, settings)
    assert await again.learn(_records(events, first_offset=200)) == 0
    assert again.half_life is not None
    assert again.half_life.state() == learner.half_life.state()


async def test_the_sources_learn_a_batch_one_partition_after_another(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """A batch interleaving partitions reaches the sources a partition's users at a time, each
    user's events in order: a source's step per partition, not per change of partition."""
    users = ["ann", "bob", "cy", "dee"]
    assert len({Keys().partition_of(u) for u in users}) > 1
    events = [
        Event(f"e{n}", EventType.VIEW, users[n % 4], T0 + n, item_id=f"i{n}") for n in range(16)
    ]
    learner = _learner(redis_client, settings)
    taught: list[Event] = []
    learn = learner.sources.learn

    async def recording(batch: Any, progress: Any = None) -> None:
        taught.extend(batch)
        await learn(batch, progress)

    learner.sources.learn = recording  # type: ignore[method-assign,assignment]
    assert await learner.learn(_records(events)) == len(events)
    parts = [Keys().partition_of(e.user_id) for e in taught]
    assert sorted(e.event_id for e in taught) == sorted(e.event_id for e in events)
    assert len([p for n, p in enumerate(parts) if n == 0 or parts[n - 1] != p]) == len(set(parts))
    for user in users:
        assert [e for e in taught if e.user_id == user] == [e for e in events if e.user_id == user]


def _popularity(learner: Learner, now: float) -> dict[str, float]:
    assert learner.half_life is not None
    return dict(learner.half_life.top(10, now))


async def test_the_learnt_popularity_outlives_a_restart_and_forgets_an_erased_user(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """The worker's popular items come from the learner's popularity under the half-life it
    learnt: a restarted learner goes on from the stored one, and an erasure takes the user's
    events out of it (through the state's withdrawals), as if they had never been learnt."""
    events, now = _stream(), T0 + 60
    store = RedisStore(redis_client, state_params(settings), withdraw=True)
    await store.process_batch(events)  # the worker's part: erasure reads its event log
    learner = _learner(redis_client, settings)
    await learner.learn(_records(events))
    progress = await learner.state.progress()
    assert progress is not None
    assert progress.popular is not None
    assert dict(progress.popular.items) == pytest.approx(
        _popularity(learner, progress.popular.landmark)
    )
    again = _learner(redis_client, settings)
    await again.learn(_records([], first_offset=len(events)))  # nothing new: loads the stored
    assert _popularity(again, now) == pytest.approx(_popularity(learner, now), rel=1e-12)

    await store.erase_users(["bob"])  # bob bought phone and case
    assert await _withdrawals_waiting(redis_client) == 2
    await again.withdraw_idle()
    assert again.half_life is not None
    h, weight = again.half_life.half_life_s, again.store.params.weight(EventType.PURCHASE)
    never: dict[str, float] = {}  # the popularity of a stream without bob
    for e in events:
        if e.user_id != "bob" and e.item_id is not None:
            never[e.item_id] = never.get(e.item_id, 0.0) + weight * 2.0 ** (-(now - e.ts) / h)
    assert _popularity(again, now) == pytest.approx(never, rel=1e-9)
    assert await _withdrawals_waiting(redis_client) == 0
    stored = await again.state.progress()
    assert stored is not None
    assert stored.popular is not None
    at = stored.popular.landmark
    assert dict(stored.popular.items)["case"] == pytest.approx(weight * 2.0 ** (-(at - T0 - 1) / h))


async def test_a_learner_killed_between_its_progress_steps_takes_no_withdrawal_twice(
    settings: Settings, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared step took bob's withdrawals out of the learned popularity; the partitions'
    steps, which drop them from the lists, never ran: the next learner skips them."""
    events, now = _stream(), T0 + 60
    store = RedisStore(redis_client, state_params(settings), withdraw=True)
    await store.process_batch(events)
    await _learner(redis_client, settings).learn(_records(events))
    await store.erase_users(["bob"])
    crashed = _learner(redis_client, settings)

    async def killed(*args: object) -> None:
        raise _Killed

    monkeypatch.setattr(crashed.state.steps, "partitions", killed)
    with pytest.raises(_Killed):
        await crashed.withdraw_idle()
    assert await _withdrawals_waiting(redis_client) == 2  # taken, not dropped
    restarted = _learner(redis_client, settings)
    await restarted.withdraw_idle()
    assert await _withdrawals_waiting(redis_client) == 0
    assert _popularity(restarted, now) == pytest.approx(_popularity(crashed, now), rel=1e-12)
    assert "phone" in _popularity(restarted, now)  # ann, cy and dee bought one too


async def test_erased_users_are_neither_learnt_nor_left_behind(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    events = _stream()
    learner = _learner(redis_client, settings)
    await learner.learn(_records(events[:5]))  # ann and bob
    keys = Keys()
    assert await redis_client.exists(keys.user("bob", "pools"), keys.user("bob", "learnt")) == 2

    await learner.store.mark_erased({"bob": T0 + 1_000})  # as ErasureProcessor does
    await learner.sources.erase(["bob"])
    assert await learner.state.erase(["bob"]) == 2
    late = Event("late", EventType.PURCHASE, "bob", T0 + 10, item_id="cable")
    assert await learner.learn(_records([late], first_offset=50)) == 0  # in flight: dropped
    async for raw in redis_client.scan_iter(match="*bob*"):
        raise AssertionError(f"{raw!r} still names the erased user")
    pools = await redis_client.get(keys.user("ann", "pools"))
    assert pools is not None
    body = pools_json(pools)
    assert b"bob" not in body
    assert "bob" not in orjson.loads(body)  # pools name items and reasons, never people


async def test_an_erasure_between_the_check_and_the_mark_leaves_no_learnt_ids(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    learner, keys = _learner(redis_client, settings), Keys()
    follow = Event("f1", EventType.FOLLOW, "bob", T0, target_user_id="ann")
    await learner.store.mark_erased({"bob": T0 + 1_000})  # the erasure, after the check
    await learner.state.mark([follow], T0, refresh_s=1.0, ends={"events:0": 4})
    assert not await redis_client.exists(keys.user("bob", "learnt"))
    assert await learner.state.progress() == (T0, 1.0, None, None, 0)


async def test_the_stored_offsets_only_move_forward(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    state = LearnerState(redis_client)
    await state.mark([], T0, 1.0, {"events:0": 9, "events:1": 3})
    await state.mark([], T0, 1.0, {"events:0": 5})  # an older slice, learnt again
    assert await state.resume_points(["events:0", "events:1", "events:2"]) == {
        "events:0": 10,
        "events:1": 4,
    }


def _offsets_key() -> str:
    """Where the learner stores its offsets of partition 0 (every record of these tests)."""
    return Keys().partition(0, "learner")


class _Consumer:
    """Records where the learner sends it (the part of aiokafka's consumer it uses)."""

    def __init__(self) -> None:
        self.seeks: list[tuple[int, int]] = []

    def assignment(self) -> list[Any]:
        return [SimpleNamespace(topic="events", partition=0)]

    def seek(self, partition: Any, offset: int) -> None:
        self.seeks.append((partition.partition, offset))


async def test_a_learner_goes_back_to_the_offsets_stored_with_what_it_learnt(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """Redis came back older than the learner left it (a crash lost its last writes), or the
    group committed past what Redis holds: the learner reads those events again."""
    records = _records(_stream())
    learner, consumer = _learner(redis_client, settings), _Consumer()
    await learner.learn(records[:4])  # stores offset 3
    older = await redis_client.dump(_offsets_key())
    assert isinstance(older, bytes)
    await learner.learn(records[4:6])  # stores 5, then Redis loses it
    await redis_client.restore(_offsets_key(), 0, older, replace=True)
    assert await learner.rewind(consumer, records[6:]) == []
    assert consumer.seeks == [(0, 4)]
    assert await learner.rewind(consumer, records[4:]) == records[4:]  # read again from 4
    assert consumer.seeks == [(0, 4)]

    restarted, consumer = _learner(redis_client, settings), _Consumer()
    assert await restarted.rewind(consumer, records[6:]) == []  # the group committed 6
    assert consumer.seeks == [(0, 4)]
    # Once: offsets 4 and 5 gone (retention), the same gap is not a reason to go back again.
    assert await restarted.rewind(consumer, records[6:]) == records[6:]

    # The partition goes to another learner, which stores 5 and then 7 before Redis loses the
    # 7, and comes back with the group committed at 8: what this learner stored before (3) is
    # no guide, the stored offset is.
    await redis_client.flushdb()
    first, other = _learner(redis_client, settings), _learner(redis_client, settings)
    await first.learn(records[:4])
    await other.learn(records[4:6])
    older = await redis_client.dump(_offsets_key())
    assert isinstance(older, bytes)
    await other.learn(records[6:])
    await redis_client.restore(_offsets_key(), 0, older, replace=True)
    consumer = _Consumer()
    assert await first.rewind(consumer, _records(_stream()[:1], first_offset=8)) == []
    assert consumer.seeks == [(0, 6)]


async def _everything(client: aioredis.Redis) -> dict[bytes, bytes]:
    """Every key's serialised value, to restore."""
    keys = sorted(cast(list[bytes], await client.keys("*")))
    return {k: cast(bytes, await client.dump(k)) for k in keys}


async def _restore(client: aioredis.Redis, everything: dict[bytes, bytes]) -> None:
    await client.flushdb()
    for key, value in everything.items():
        await client.restore(key, 0, value)


#: What two learners that learnt the same events once may hold differently: MF's rows (its
#: negative samples come from the process's random generator; its step count is compared),
#: the pools (refreshes are paced by the clock) and the learned half-life's rows.
_APART = (b":mf", b":mf_contrib", b"}mf_items", b":pools", b"}learner")


async def _learnt(client: aioredis.Redis) -> dict[bytes, Any]:
    """What the sources learnt, by key, as values (not their serialised form, which
    depends on the order fields were written in)."""
    found: dict[bytes, Any] = {}
    for key in sorted(cast(list[bytes], await client.keys("*"))):
        if key.endswith(_APART):
            continue
        kind = await client.type(key)
        if kind == b"hash":
            found[key] = await client.hgetall(key)
        elif kind == b"zset":
            found[key] = await client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            found[key] = await client.smembers(key)
        elif kind == b"list":
            found[key] = await client.lrange(key, 0, -1)
        else:
            found[key] = await client.get(key)
    return found


async def test_a_redis_that_came_back_older_mid_batch_is_learnt_from_where_it_stands(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """Redis comes back older after a batch's start (the learner checked the stored offsets,
    then waited out the restart inside a source): the sources find their marks below what
    they wrote, store nothing of the batch, and the learner goes back to where Redis stands,
    so every source ends as if it had learnt each event once, with no gap."""
    records = _records(_stream())
    reference = _learner(redis_client, settings)
    await reference.learn(records[:4])
    await reference.learn(records[4:])
    expected = await _learnt(redis_client)

    await redis_client.flushdb()
    learner, consumer = _learner(redis_client, settings), _Consumer()
    await learner.learn(records[:4])
    older = await _everything(redis_client)
    await learner.learn(records[4:6])
    await _restore(redis_client, older)  # the restart lost the last batch
    assert await learner.learn(records[6:]) == 0  # learnt nothing: it would leave a gap
    learner.go_back(consumer)  # at once: no later batch may come to find it
    # The lost batch wrote the first marks of cy's partition (these records all come on
    # partition 0, whoever the user), so it is read again from the start; each source skips
    # what its marks hold.
    assert consumer.seeks == [(0, 0)]
    restarted, consumer = _learner(redis_client, settings), _Consumer()  # stored: a restart too
    assert await restarted.rewind(consumer, _records(_stream()[:1], first_offset=8)) == []
    assert consumer.seeks == [(0, 0)]
    await learner.learn(records)
    assert await _learnt(redis_client) == expected


async def test_a_commit_the_group_refuses_after_a_rebalance_does_not_stop_the_learner(
    settings: Settings, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Learners joining or leaving rebalance their group during a batch, and the group then
    refuses the batch's commit: the learner carries on (where it resumes is the offset stored
    with what it learnt), and does not exit."""
    stop = asyncio.Event()
    records = [
        SimpleNamespace(value=r.value, key=r.key, topic=r.topic, partition=r.partition,
                        offset=r.offset, timestamp=r.timestamp * 1e3)
        for r in _records(_stream())
    ]  # fmt: skip

    class Consumer(_Consumer):
        """A group member whose first commit comes after a rebalance."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__()
            self.fetched, self.commits = False, 0

        async def start(self) -> None: ...
        async def stop(self) -> None: ...

        async def getmany(self, **_: Any) -> dict[str, list[Any]]:
            fetched, self.fetched = self.fetched, True
            return {} if fetched else {"events-0": records}

        async def commit(self) -> None:
            self.commits += 1
            if self.commits == 1:
                raise CommitFailedError("the group rebalanced")
            stop.set()

    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", Consumer)
    learner = _learner(redis_client, settings)
    await asyncio.wait_for(learner.run(stop), timeout=60)
    stored = await LearnerState(redis_client).resume_points(["events:0"])
    assert stored == {"events:0": len(records)}  # learnt, then went on to its next commit


async def test_events_without_an_item_are_marked_learnt_by_the_learner_itself(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    learner, keys = _learner(redis_client, settings), Keys()
    follow = Event("f1", EventType.FOLLOW, "bob", T0, target_user_id="ann")
    buy = Event("b1", EventType.PURCHASE, "bob", T0 + 1, item_id="phone")
    assert await learner.learn(_records([follow, buy])) == 2
    learnt = await redis_client.smembers(keys.user("bob", "learnt"))
    # The purchase by item-CF's step, the follow by the mark; digests.
    assert learnt == {learnt_member("f1").encode(), learnt_member("b1").encode()}
    assert await redis_client.object("encoding", keys.user("bob", "learnt")) == b"intset"
    assert await learner.learn(_records([follow, buy], first_offset=10)) == 0


async def test_learnt_ids_are_kept_for_half_the_window_to_all_of_it(
    redis_client: aioredis.Redis,
) -> None:
    """A window of 4: generations of 2 ids; the third batch finds the first two dropped."""
    state = LearnerState(redis_client, dedupe_window=4)
    events = [Event(f"e{n}", EventType.VIEW, "bob", T0 + n, item_id="phone") for n in range(5)]
    for n, event in enumerate(events):
        await state.mark([event], T0, refresh_s=1.0, ends={"events:0": n})
    assert [e.event_id for e in await state.unlearnt(events)] == ["e0", "e1"]
    assert await state.erase(["bob"]) == 2  # both generations


async def test_a_user_acting_again_within_the_interval_is_refreshed_when_it_is_up(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    ticks = iter([0.0, 0.0, 0.5, 1.0])
    learner = _learner(redis_client, settings.model_copy(update={"pool_refresh_s": 1.0}))
    learner.monotonic = lambda: next(ticks)
    pools = PoolStore(redis_client)

    async def ann_items() -> set[str]:
        found = await pools.candidates({"ann": frozenset()}, T0 + 60)
        return {item for pool in found.get("ann", {}).values() for item in pool}

    events = _stream()
    await learner.learn(_records(events[3:]))  # bob, cy and dee: phone with case, cable
    await learner.learn(_records(events[:1], first_offset=10))  # ann buys a phone: refreshed
    before = await ann_items()
    assert "case" in before
    tripod = [Event("t1", EventType.PURCHASE, "bob", T0 + 20, item_id="tripod"),
              Event("t2", EventType.PURCHASE, "ann", T0 + 21, item_id="case")]  # fmt: skip
    await learner.learn(_records(tripod, first_offset=20))  # at 0.5: learnt, refresh put off
    assert await ann_items() == before
    await learner.refresh(learner.refreshes.take([], learner.monotonic()), T0 + 60)  # at 1.0
    assert await ann_items() != before


async def test_pools_in_an_older_form_are_ignored_not_fatal(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    keys = Keys()
    await redis_client.set(keys.user("ann", "pools"), b'{"mf":[["phone",1.0,[]]]}')
    await redis_client.set(keys.user("bob", "pools"), b"\x00 not json")
    found = await PoolStore(redis_client).candidates({"ann": frozenset(), "bob": frozenset()}, 0)
    assert found == {}


async def test_a_learner_started_while_the_broker_is_away_waits_for_it(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """A learner (re)started during a broker restart waits it out instead of exiting: nothing
    would start it again, and the sources would stop learning while the worker runs on."""
    away = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    learner = _learner(redis_client, away)
    running = asyncio.ensure_future(learner.run(asyncio.Event()))

    async def settled() -> bool:
        down = learner.metrics.registry.get_sample_value(
            "socialrec_dependency_up", {"dependency": "kafka"}
        )
        return running.done() or down == 0

    try:
        await wait_for(settled, timeout_s=30, what="the learner to wait for Kafka or give up")
        assert not running.done(), running.exception()
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs, no handler sees it."""


async def test_a_learner_killed_before_item_cf_commits_a_batch_teaches_mf_that_batch_once(
    settings: Settings, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chaos run's full length found MF 5 % over its step count after three kills: every
    source but item-CF now writes how far it has learnt with its state
    (streams/sources/progress.py)."""
    records = _records(_stream())
    crashed = _learner(redis_client, settings)
    itemcf = next(m for m in crashed.sources.models if getattr(m, "commits_learnt", False))

    async def killed(*args: object) -> None:
        raise _Killed

    monkeypatch.setattr(itemcf, "learn", killed)
    with pytest.raises(_Killed):
        await crashed.learn(records)
    await _learner(redis_client, settings).learn(records)  # the restarted learner
    # One step per purchase.
    assert (await stored_sampler(redis_client, Keys())).steps == len(_stream())
    # User-CF and FBT as after a learner that was never killed (their counts would double).
    after_crash = (await usercf_state(redis_client, Keys()), await fbt_state(redis_client, Keys()))
    await redis_client.flushdb()
    await _learner(redis_client, settings).learn(records)
    assert after_crash == (
        await usercf_state(redis_client, Keys()),
        await fbt_state(redis_client, Keys()),
    )


async def test_a_restarted_learner_given_an_older_slice_keeps_its_marks(
    settings: Settings, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart the consumer reads again from its last commit, which may be behind the
    sources' marks, and in smaller slices: a slice that ends before a mark must not set it back
    (the short chaos run found MF 12 steps over: the events between were learnt again)."""
    records = _records(_stream())
    crashed = _learner(redis_client, settings)
    itemcf = next(m for m in crashed.sources.models if getattr(m, "commits_learnt", False))

    async def killed(*args: object) -> None:
        raise _Killed

    monkeypatch.setattr(itemcf, "learn", killed)
    with pytest.raises(_Killed):
        await crashed.learn(records)  # MF, user-CF and FBT learnt all eight (partition 0)
    other = [Event("f0", EventType.PURCHASE, "eve", T0 + 20, item_id="phone"),
             Event("f1", EventType.PURCHASE, "eve", T0 + 21, item_id="case")]  # fmt: skip
    on_1 = [dataclasses.replace(r, partition=1) for r in _records(other)]
    restarted = _learner(redis_client, settings)
    await restarted.learn(records[:3] + on_1[:1])  # partition 0 again, ending before its mark
    await restarted.learn(records[3:] + on_1[1:])
    assert (await stored_sampler(redis_client, Keys())).steps == len(_stream()) + len(other)
    after_restart = await _learnt_state(redis_client)
    await redis_client.flushdb()
    await _learner(redis_client, settings).learn(records + on_1)
    assert after_restart == await _learnt_state(redis_client)


async def test_two_learners_on_one_batch_teach_each_source_once(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """A learner stopping after its worker died may finish a batch that the new worker's
    learner is learning too: each source's write is a compare-and-set on its marks, and
    item-CF's step refuses events learnt already."""
    records = _records(_stream())
    await asyncio.gather(
        _learner(redis_client, settings).learn(records),
        _learner(redis_client, settings).learn(records),
    )
    assert (await stored_sampler(redis_client, Keys())).steps == len(_stream())
    both = await _learnt_state(redis_client)
    await redis_client.flushdb()
    await _learner(redis_client, settings).learn(records)
    assert both == await _learnt_state(redis_client)


async def _learnt_state(client: aioredis.Redis) -> tuple[Any, ...]:
    rows = await client.zrange(Keys().item("phone", "dot"), 0, -1, withscores=True)
    itemcf = dict(cast(list[tuple[bytes, float]], rows))
    return (
        await usercf_state(client, Keys()),
        await fbt_state(client, Keys()),
        await followees_state(client, Keys()),
        itemcf,
    )


async def test_a_batch_of_erasures_reports_what_one_at_a_time_would(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """Every source erases a batch of users at once; each receipt still says what went for
    its own user."""
    users = ["ann", "bob", "nobody", "cy"]
    await _learner(redis_client, settings).learn(_records(_stream()))
    batched = await _learner(redis_client, settings).sources.erase(users)
    await redis_client.flushdb()
    await _learner(redis_client, settings).learn(_records(_stream()))
    sources = _learner(redis_client, settings).sources
    one_by_one = [(await sources.erase([user]))[0] for user in users]
    assert batched == one_by_one
    assert batched[2] == 0
    assert all(n > 0 for n in batched[:2] + batched[3:])


async def test_a_step_whose_reply_was_lost_is_waited_out_and_teaches_once(
    settings: Settings, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis applied a source's steps but the connection dropped before their replies came
    (the chaos run's Redis kill): the source waits it out, finds its marks moved, learns
    nothing again, and what the steps handed off is still applied once."""
    from redis.asyncio.client import Pipeline
    from redis.exceptions import ConnectionError as Dropped

    execute = Pipeline.execute
    dropped: list[int] = []

    async def dropping(self: Pipeline, raise_on_error: bool = True) -> Any:
        steps = any("step" in args for args, _ in self.command_stack)
        replies = await execute(self, raise_on_error)
        if steps and len(dropped) < 3:
            dropped.append(1)
            raise Dropped("Connection closed by server.")
        return replies

    monkeypatch.setattr(Pipeline, "execute", dropping)
    records = _records(_stream())
    learner = _learner(redis_client, settings)
    await learner.learn(records)
    assert len(dropped) == 3
    errors = learner.metrics.registry.get_sample_value
    assert not any(  # no source gave the batch up
        errors("socialrec_source_errors_total", {"source": s, "call": "learn"})
        for s in SOURCE_NAMES
    )
    assert (await stored_sampler(redis_client, Keys())).steps == len(_stream())
    dropped_state = await _learnt_state(redis_client)
    await redis_client.flushdb()
    monkeypatch.setattr(Pipeline, "execute", execute)
    await _learner(redis_client, settings).learn(records)
    assert dropped_state == await _learnt_state(redis_client)


async def test_a_learner_forgets_a_user_erased_by_a_worker_even_one_it_put_off(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """The learner hears of the erasure on the real ``privacy.forget`` topic and drops the user
    from its refresh memory (the put-off refresh included); the pools stay gone."""
    now = [0.0]
    learner = _learner(redis_client, settings.model_copy(update={"pool_refresh_s": 1.0}))
    learner.monotonic = lambda: now[0]
    pools = PoolStore(redis_client)
    events = _stream()
    await learner.learn(_records(events[3:]))
    await learner.learn(_records(events[:1], first_offset=10))  # ann refreshed at 0.0
    now[0] = 0.5
    case = [Event("c1", EventType.PURCHASE, "ann", T0 + 21, item_id="case")]
    await learner.learn(_records(case, first_offset=20))  # learnt; ann's refresh put off
    assert "ann" in learner.refreshes.users()

    follower = ForgetFollower(settings, learner.forget_erased, learner.metrics, "test-forget")
    following = asyncio.ensure_future(follower.run())
    publisher = KafkaPublisher(settings, learner.metrics)
    try:
        await asyncio.wait_for(follower.started.wait(), 30)
        erasures = ErasureProcessor(
            settings, learner.store, publisher, learner.metrics, learner.sources,
            learnt=learner.state,
        )  # fmt: skip
        request = {"request_id": "r1", "type": "erase", "user_id": "ann"}
        record = InboundRecord(orjson.dumps(request), b"ann", "privacy.requests", 0, 0, T0 + 30)
        assert await erasures.process([record]) == 1
        assert await pools.read(["ann"]) == {"ann": None}

        async def forgotten() -> bool:
            return "ann" not in learner.refreshes.users()

        await wait_for(forgotten, timeout_s=10.0, what="the learner forgetting ann")
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await publisher.stop()
    now[0] = 1.0
    await learner.refresh(learner.refreshes.take([], now[0]), T0 + 60)
    assert await pools.read(["ann"]) == {"ann": None}


async def _withdrawals_waiting(client: aioredis.Redis) -> int:
    keys = Keys()
    return sum([await client.llen(keys.partition(p, "popularity_withdrawn")) for p in range(6)])
