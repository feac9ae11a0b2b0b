"""The followees source on real Redis: its state and candidates are the pure model's fed the
same events (however the stream is cut into batches), the learner puts a followee's item in
the follower's pool with the ``followees_recent`` reason (trust read off both users' items), a
batch learnt twice counts once, and an erasure leaves no trace of the user, even one racing a
batch."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis

from models.events import Event, EventType
from models.followees import FolloweeItems
from models.hybrid import FOLLOWED
from models.recommend import Candidate, Source, excluded_items
from streams.config import Settings
from streams.keys import Keys
from streams.metrics import WorkerMetrics
from streams.pipeline import recommend_params
from streams.runtime.pools import PoolStore
from streams.sources import SourceSet
from streams.sources.followees import RedisFollowees
from streams.sources.progress import Progress
from streams.sources.snapshots import followees_model_state, followees_state
from tests.integration.test_learner import _learner, _records
from tests.integration.test_sources_fbt_usercf import assert_nowhere

T0 = 1_796_000_000.0
USERS = ["ann", "bob", "cy", "dee", "eve"]
HALF_LIFE_S = 3600.0


def random_stream(seed: int, count: int, users: Sequence[str] = USERS) -> list[Event]:
    """Follows, a few unfollows, and item events of every kind over a small catalogue (so
    followees' items are taken, and trust grows)."""
    rnd = random.Random(seed)
    kinds = [EventType.VIEW] * 4 + [EventType.LIKE, EventType.PURCHASE, EventType.HIDE]
    events = []
    for n in range(count):
        user, ts, roll = rnd.choice(users), T0 + 60.0 * n, rnd.random()
        if roll < 0.2:
            events.append(
                Event(f"e{n}", EventType.FOLLOW, user, ts, target_user_id=rnd.choice(users))
            )
        elif roll < 0.25:
            other = rnd.choice(users)
            events.append(Event(f"e{n}", EventType.UNFOLLOW, user, ts, target_user_id=other))
        else:
            item = f"sku{rnd.randrange(15)}"
            events.append(Event(f"e{n}", rnd.choice(kinds), user, ts, item_id=item))
    return events


def cut(events: Sequence[Event], seed: int) -> list[list[Event]]:
    rnd, out, start = random.Random(seed), [], 0
    while start < len(events):
        size = rnd.randint(1, 30)
        out.append(list(events[start : start + size]))
        start += size
    return out


def pure(events: Sequence[Event], followees: int) -> FolloweeItems:
    model = FolloweeItems(followees_read=followees, followees_kept=followees)
    for event in events:
        model.learn(event)
    return model


@pytest.mark.parametrize(("seed", "followees"), [(1, 200), (2, 2), (3, 3)])
async def test_the_source_is_the_pure_model(
    redis_client: aioredis.Redis, seed: int, followees: int
) -> None:
    events = random_stream(seed, 400)
    source = RedisFollowees(redis_client, half_life_s=HALF_LIFE_S, followees=followees)
    for batch in cut(events, seed):
        await source.learn(batch)
    model = pure(events, followees)
    state = await followees_state(redis_client, Keys())
    assert state == followees_model_state(model)
    now = events[-1].ts + 600
    exclude = {"ann": frozenset({"sku1", "sku2"})}
    found = await source.candidates(USERS, exclude, 10, now)
    for user in USERS:
        top = model.top_k(
            user, 10, exclude.get(user, frozenset()), now=now, half_life_s=HALF_LIFE_S
        )
        assert found[user] == [Candidate(item, score, FOLLOWED) for item, score in top]
    assert any(found.values())
    assert any(  # some followee's items count more than once: trust is not all ones
        model.trust(u, f) > 1.0 for u, following in model.following.items() for f in following
    )
    # A second instance on the same Redis continues where the first stopped.
    more = [Event(f"m{n}", EventType.VIEW, "ann", now + n, item_id=f"sku{n}") for n in range(5)]
    await RedisFollowees(redis_client, half_life_s=HALF_LIFE_S, followees=followees).learn(more)
    assert await followees_state(redis_client, Keys()) == followees_model_state(
        pure(events + more, followees)
    )


async def test_a_followees_item_reaches_the_followers_pool_scored_with_trust(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    follow = Event("f1", EventType.FOLLOW, "ann", T0, target_user_id="bob")
    bob = [Event(f"b{n}", EventType.VIEW, "bob", T0 + 10 + n, item_id=i)
           for n, i in enumerate(["lamp", "rug", "vase"])]  # fmt: skip
    took = Event("a1", EventType.VIEW, "ann", T0 + 20, item_id="lamp")  # bob had it first
    learner = _learner(redis_client, settings)
    events = [follow, *bob, took]
    await learner.store.process_batch(events)
    await learner.learn(_records(events))

    views = (await learner.store.read_users(["ann"])).views
    exclude = {"ann": excluded_items(views["ann"], recommend_params(settings))}
    now = T0 + 60
    pool = (await PoolStore(redis_client).candidates(exclude, now))["ann"][Source.FOLLOWEES]
    assert set(pool) == {"rug", "vase"}  # lamp is hers already
    assert all(reasons == FOLLOWED for _, reasons in pool.values())  # "followees_recent"
    source = RedisFollowees(redis_client, half_life_s=HALF_LIFE_S)
    found = await source.candidates(["ann"], {"ann": frozenset({"lamp"})}, 10, now)
    decay = 2.0 ** (-(now - (T0 + 12)) / HALF_LIFE_S)
    assert found["ann"][0] == Candidate("vase", 2.0 * decay, FOLLOWED)  # trust 1 + lamp


async def test_a_batch_learnt_again_after_a_crash_counts_once(redis_client: aioredis.Redis) -> None:
    """The marks written with the state (streams/sources/progress.py): a learner that reads
    a batch again after a crash teaches the source nothing twice. Learnt again after the next
    batch, ann's lamp would be her latest item again, and her next item would push out the
    sofa, not the lamp."""
    first = [
        Event("f1", EventType.FOLLOW, "ann", T0, target_user_id="bob"),
        Event("a1", EventType.VIEW, "ann", T0 + 1, item_id="lamp"),
    ]
    then = [Event("a2", EventType.VIEW, "ann", T0 + 2, item_id="sofa")]
    assert list(pure(first + then + first, 200).latest["ann"]) == ["sofa", "lamp"]  # no marks
    source = RedisFollowees(redis_client, half_life_s=HALF_LIFE_S)
    sources = SourceSet([source], WorkerMetrics())
    offsets = {e.event_id: n for n, e in enumerate(first + then)}
    for batch in (first, then, first):
        positions = {e.event_id: (e.user_id, "events:0", offsets[e.event_id]) for e in batch}
        await sources.learn(batch, Progress(redis_client, Keys(), positions))
    state = await followees_state(redis_client, Keys())
    assert state == followees_model_state(pure(first + then, 200))
    assert list(state["latest"]["ann"]) == ["lamp", "sofa"]


async def test_erasure_leaves_no_trace_and_the_others_as_if_she_never_was(
    redis_client: aioredis.Redis,
) -> None:
    events = random_stream(7, 500)
    source = RedisFollowees(redis_client, Keys("x:"), half_life_s=HALF_LIFE_S)
    for batch in cut(events, 7):
        await source.learn(batch)
    before = await followees_state(redis_client, Keys("x:"))
    assert "bob" in before["latest"]
    assert any("bob" in row for row in before["following"].values())
    removed = await source.erase(["bob"])
    assert removed["bob"] > 0
    without = RedisFollowees(redis_client, Keys("y:"), half_life_s=HALF_LIFE_S)
    for batch in cut([e for e in events if "bob" not in (e.user_id, e.target_user_id)], 7):
        await without.learn(batch)
    assert await followees_state(redis_client, Keys("x:")) == await followees_state(
        redis_client, Keys("y:")
    )
    await assert_nowhere(redis_client, "bob")
    assert await source.erase(["bob"]) == {"bob": 0}


async def test_a_batch_read_before_an_erasure_writes_nothing_naming_her(
    redis_client: aioredis.Redis,
) -> None:
    """The erasure's mark is set before anything is erased: the write step skips her state,
    and every edge that names her."""
    keys = Keys()
    source = RedisFollowees(redis_client, keys, half_life_s=HALF_LIFE_S)
    await source.learn([Event("b1", EventType.VIEW, "bob", T0, item_id="lamp")])
    await source.erase(["bob"])
    await redis_client.set(keys.erased("bob"), T0)
    await source.learn(
        [
            Event("f1", EventType.FOLLOW, "ann", T0 + 1, target_user_id="bob"),
            Event("b2", EventType.VIEW, "bob", T0 + 2, item_id="rug"),
            Event("a1", EventType.VIEW, "ann", T0 + 3, item_id="rug"),
        ]
    )
    await assert_nowhere(redis_client, "bob")
    assert await followees_state(redis_client, keys) == {
        "following": {},
        "latest": {"ann": {"rug": T0 + 3}},
    }
