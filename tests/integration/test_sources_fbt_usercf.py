"""The Redis-backed FBT and user-CF sources against their pure models, on real Redis.

Each check can fail: the sources' state and candidates are compared with the pure model fed the
same events (exactly, integers and floats alike), erasure is checked by reading every key in
the database, and a second instance on the same Redis must continue where the first stopped.
Several runs share one database under different key prefixes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis

from models.events import Event, EventType
from models.fbt import BasketTracker, basket_candidates
from models.hybrid import SIMILAR_SHOPPERS
from models.recommend import Candidate, Reason, Source
from models.usercf import UserCF
from streams.keys import Keys
from streams.sources import SourceModel
from streams.sources.fbt import RedisFBT
from streams.sources.snapshots import fbt_state, tracker_state, usercf_state
from streams.sources.usercf import RedisUserCF, parse_row

T0 = 1_700_000_000.0
USERS = ["ann", "bob", "cy", "dee", "eve", "fay"]
KINDS = [EventType.CART] * 4 + [EventType.PURCHASE] * 3 + [EventType.VIEW] * 3
KINDS += [EventType.LIKE, EventType.HIDE, EventType.FOLLOW]
FBT_PARAMS: dict[str, Any] = {
    "session_gap_s": 1800.0,
    "max_basket_items": 4,
    "baskets_per_user": 4,
    "min_count": 2,
    "context_s": 86400.0,
    "max_antecedents": 10,
}
UCF_PARAMS: dict[str, Any] = {"items_per_user": 5, "users_per_item": 1000, "neighbours": 3}


def random_stream(seed: int, count: int, users: Sequence[str] = USERS) -> list[Event]:
    """Short sessions of one user over one bundle of items (so pairs repeat), separated by
    gaps that sometimes keep the session open and usually close it."""
    rnd = random.Random(seed)
    bundles = [["sku0", "sku1", "sku2"], ["sku3", "sku4"], ["sku5", "sku6", "sku7", "sku8"]]
    events: list[Event] = []
    ts = T0
    while len(events) < count:
        ts += rnd.choice([60.0, 4000.0, 90_000.0])
        user, bundle = rnd.choice(list(users)), rnd.choice(bundles)
        for _ in range(rnd.randint(1, 5)):
            n = len(events)
            ts += rnd.choice([5.0, 60.0, 300.0])
            kind = rnd.choice(KINDS)
            if kind is EventType.FOLLOW:
                events.append(Event(f"e{n}", kind, user, ts, target_user_id=rnd.choice(USERS)))
                continue
            item = rnd.choice(bundle) if rnd.random() < 0.85 else f"sku{rnd.randrange(12)}"
            events.append(Event(f"e{n}", kind, user, ts, item_id=item))
    return events


def batches(events: Sequence[Event], seed: int) -> list[list[Event]]:
    rnd = random.Random(seed)
    out, start = [], 0
    while start < len(events):
        size = rnd.randint(1, 25)
        out.append(list(events[start : start + size]))
        start += size
    return out


async def learn_all(source: SourceModel, events: Sequence[Event], seed: int = 0) -> None:
    for batch in batches(events, seed):
        await source.learn(batch)


def pure_tracker(events: Sequence[Event]) -> BasketTracker:
    bt = BasketTracker(
        FBT_PARAMS["session_gap_s"],
        max_basket_items=FBT_PARAMS["max_basket_items"],
        baskets_per_user=FBT_PARAMS["baskets_per_user"],
    )
    for e in events:
        if e.item_id is not None:
            bt.add(e.user_id, e.item_id, e.ts, e.type)
    return bt


def pure_fbt_candidates(
    bt: BasketTracker, user: str, exclude: frozenset[str], k: int, now: float
) -> list[tuple[str, float, tuple[str, ...]]]:
    baskets = bt.users.get(user, [])
    if not baskets or now - baskets[-1].last_ts > FBT_PARAMS["context_s"]:
        return []
    basket = baskets[-1].items
    rules = {a: bt.rules_for(a, k=1000, min_count=FBT_PARAMS["min_count"]) for a in basket}
    return [
        (c.item_id, c.score, tuple(a for a, _ in c.because[:3]))
        for c in basket_candidates(basket, rules, k, exclude)
    ]


def pure_usercf(events: Sequence[Event], **params: Any) -> UserCF:
    cf = UserCF(**{**UCF_PARAMS, **params})
    for e in events:
        if e.item_id is not None:
            cf.add(e.user_id, e.item_id, e.type, e.ts)
    return cf


def _s(value: Any) -> str:
    assert isinstance(value, bytes | str), value
    return value.decode() if isinstance(value, bytes) else value


def as_tuples(found: list[Candidate]) -> list[tuple[str, float, tuple[str, ...]]]:
    return [(c.item_id, c.score, tuple(r.item_id or "" for r in c.reasons)) for c in found]


# ---- FBT -------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 7])
async def test_fbt_matches_the_pure_model(redis_client: aioredis.Redis, seed: int) -> None:
    events = random_stream(seed, 400)
    fbt = RedisFBT(redis_client, Keys("f:"), **FBT_PARAMS)
    await learn_all(fbt, events, seed)
    bt = pure_tracker(events)
    state = await fbt_state(redis_client, Keys("f:"))
    assert state == tracker_state(bt)
    assert state["baskets"] > 10  # the stream is not trivial
    assert len(state["pair_counts"]) > 3
    now = events[-1].ts + 10.0
    got = await fbt.candidates(USERS, {}, 5, now)
    expected = {u: pure_fbt_candidates(bt, u, frozenset(), 5, now) for u in USERS}
    assert {u: as_tuples(c) for u, c in got.items()} == expected
    # Each user right after their latest basket, so that most have a context.
    proposed = 0
    for user, baskets in bt.users.items():
        at = baskets[-1].last_ts
        found = as_tuples((await fbt.candidates([user], {}, 5, at))[user])
        assert found == pure_fbt_candidates(bt, user, frozenset(), 5, at)
        proposed += len(found)
    assert proposed > 0  # else the comparison proves little


async def test_fbt_candidates_explain_with_basket_items(redis_client: aioredis.Redis) -> None:
    fbt = RedisFBT(redis_client, min_count=2)
    events = []
    for n, user in enumerate(["u1", "u2", "u3"]):
        t = T0 + n * 100_000
        events += [Event(f"{user}a", EventType.PURCHASE, user, t, item_id="phone")]
        events += [Event(f"{user}b", EventType.CART, user, t + 60, item_id="case")]
    events += [Event("x1", EventType.CART, "u4", T0, item_id="case")]  # case without phone
    events += [Event("x2", EventType.CART, "u5", T0, item_id="tv")]
    events += [Event("q", EventType.CART, "me", T0 + 1e6, item_id="phone")]
    await fbt.learn(events)
    found = (await fbt.candidates(["me"], {}, 3, T0 + 1e6 + 10))["me"]
    # n(phone)=4, n(case)=4, n(phone,case)=3, N=6: confidence 0.75, P(case)=4/6.
    assert [c.item_id for c in found] == ["case"]
    assert found[0].score == pytest.approx(0.75 - 4 / 6)
    assert found[0].reasons == (Reason("phone", found[0].score),)
    assert fbt.source is Source.FBT


async def test_fbt_second_instance_continues(redis_client: aioredis.Redis) -> None:
    events = random_stream(7, 400)
    half = len(events) // 2
    first = RedisFBT(redis_client, Keys("a:"), **FBT_PARAMS)
    await learn_all(first, events[:half])
    restarted = RedisFBT(redis_client, Keys("a:"), **FBT_PARAMS)
    await learn_all(restarted, events[half:])
    single = RedisFBT(redis_client, Keys("b:"), **FBT_PARAMS)
    await learn_all(single, events, seed=99)
    assert await fbt_state(redis_client, Keys("a:")) == await fbt_state(redis_client, Keys("b:"))
    now = events[-1].ts
    assert await restarted.candidates(USERS, {}, 5, now) == await single.candidates(
        USERS, {}, 5, now
    )


async def test_fbt_erasure_is_exact(redis_client: aioredis.Redis) -> None:
    events = random_stream(11, 500, users=["ann", "bob", "cy"])
    with_bob = RedisFBT(redis_client, Keys("x:"), **FBT_PARAMS)
    await learn_all(with_bob, events)
    assert "bob" in (await fbt_state(redis_client, Keys("x:")))["users"]
    removed = await with_bob.erase(["bob"])
    assert removed == {"bob": len(pure_tracker(events).users["bob"])}
    assert removed["bob"] > 0
    without = RedisFBT(redis_client, Keys("y:"), **FBT_PARAMS)
    await learn_all(without, [e for e in events if e.user_id != "bob"])
    assert await fbt_state(redis_client, Keys("x:")) == await fbt_state(redis_client, Keys("y:"))
    await assert_nowhere(redis_client, "bob")
    assert await with_bob.erase(["bob"]) == {"bob": 0}


async def test_fbt_never_proposes_excluded_items(redis_client: aioredis.Redis) -> None:
    events = random_stream(1, 400)
    fbt = RedisFBT(redis_client, **FBT_PARAMS)
    await learn_all(fbt, events)
    bt = pure_tracker(events)
    checked = 0
    for user, baskets in bt.users.items():
        now = baskets[-1].last_ts
        free = (await fbt.candidates([user], {}, 10, now))[user]
        if not free:
            continue
        banned = frozenset(c.item_id for c in free[:2])
        found = (await fbt.candidates([user], {user: banned}, 10, now))[user]
        assert not banned & {c.item_id for c in found}
        assert not set(baskets[-1].items) & {c.item_id for c in found}
        checked += 1
    assert checked > 0


# ---- user-CF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_usercf_matches_the_pure_model(redis_client: aioredis.Redis, seed: int) -> None:
    events = random_stream(seed, 400)
    ucf = RedisUserCF(redis_client, Keys("c:"), **UCF_PARAMS)
    await learn_all(ucf, events, seed)
    cf = pure_usercf(events)
    state = await usercf_state(redis_client, Keys("c:"))
    assert state == {"items": cf.items, "index": cf.index}
    exclude = {"ann": frozenset({"sku1"})}
    got = await ucf.candidates(USERS, exclude, 4, events[-1].ts)
    expected = {u: cf.candidates(u, 4, exclude.get(u, frozenset())) for u in USERS}
    assert {u: [(c.item_id, c.score) for c in found] for u, found in got.items()} == {
        u: [(c.item_id, c.score) for c in found] for u, found in expected.items()
    }
    assert any(got.values())
    for found in got.values():
        for c in found:
            assert c.reasons == SIMILAR_SHOPPERS


async def test_usercf_second_instance_continues(redis_client: aioredis.Redis) -> None:
    events = random_stream(5, 400)
    half = len(events) // 2
    await learn_all(RedisUserCF(redis_client, Keys("a:"), **UCF_PARAMS), events[:half])
    restarted = RedisUserCF(redis_client, Keys("a:"), **UCF_PARAMS)
    await learn_all(restarted, events[half:])
    single = RedisUserCF(redis_client, Keys("b:"), **UCF_PARAMS)
    await learn_all(single, events, seed=42)
    assert await usercf_state(redis_client, Keys("a:")) == await usercf_state(
        redis_client, Keys("b:")
    )
    assert await restarted.candidates(USERS, {}, 5, 0.0) == await single.candidates(
        USERS, {}, 5, 0.0
    )


async def test_usercf_erasure_is_exact(redis_client: aioredis.Redis) -> None:
    events = random_stream(13, 500, users=["ann", "bob", "cy"])
    with_bob = RedisUserCF(redis_client, Keys("x:"), **UCF_PARAMS)
    await learn_all(with_bob, events)
    before = await with_bob.candidates(["ann", "cy"], {}, 5, 0.0)
    removed = await with_bob.erase(["bob"])
    assert removed == {"bob": len(pure_usercf(events).items["bob"])}
    assert removed["bob"] > 0
    without = RedisUserCF(redis_client, Keys("y:"), **UCF_PARAMS)
    await learn_all(without, [e for e in events if e.user_id != "bob"])
    assert await usercf_state(redis_client, Keys("x:")) == await usercf_state(
        redis_client, Keys("y:")
    )
    after = await with_bob.candidates(["ann", "cy"], {}, 5, 0.0)
    assert after == await without.candidates(["ann", "cy"], {}, 5, 0.0)
    assert after != before  # bob mattered, so the comparison means something
    await assert_nowhere(redis_client, "bob")


async def test_usercf_never_proposes_excluded_or_own_items(redis_client: aioredis.Redis) -> None:
    events = random_stream(3, 400)
    ucf = RedisUserCF(redis_client, **UCF_PARAMS)
    await learn_all(ucf, events)
    free = await ucf.candidates(USERS, {}, 10, 0.0)
    banned = {u: frozenset(c.item_id for c in found[:2]) for u, found in free.items()}
    assert any(banned.values())
    found = await ucf.candidates(USERS, banned, 10, 0.0)
    rows = (await usercf_state(redis_client, Keys()))["items"]
    for user, cands in found.items():
        items = {c.item_id for c in cands}
        assert not items & banned[user]
        assert not items & rows.get(user, {}).keys()


async def test_usercf_index_eviction_keeps_rows(redis_client: aioredis.Redis) -> None:
    """With a full index the oldest user leaves the index only; their row still counts when
    they are found through another item (rows are authoritative)."""
    ucf = RedisUserCF(redis_client, users_per_item=2, items_per_user=10)
    keys = Keys()

    def buy(n: int, user: str, item: str) -> Event:
        return Event(f"e{n}", EventType.PURCHASE, user, T0 + n, item_id=item)

    await ucf.learn([buy(1, "ann", "phone"), buy(2, "ann", "case")])
    await ucf.learn([buy(3, "bob", "phone"), buy(4, "cy", "phone")])
    await ucf.learn([buy(5, "dee", "case")])
    phone_index = await redis_client.zrange(keys.item("phone", "ucf_users"), 0, -1)
    assert [_s(u) for u in phone_index] == ["bob", "cy"]  # ann, the oldest, was evicted
    assert set(parse_row(await redis_client.get(keys.user("ann", "ucf_row")))) == {"phone", "case"}
    found = (await ucf.candidates(["dee"], {}, 5, 0.0))["dee"]
    # dee finds ann through case; ann's row (phone and case, 8 each) gives phone
    # sim = 64 / (8·√128), score = sim·8.
    assert [c.item_id for c in found] == ["phone"]
    assert found[0].score == pytest.approx(64 / (8 * math.sqrt(128)) * 8)
    # The evicted entry is the first to leave ann's row when it is full, not her newest one.
    small = RedisUserCF(redis_client, users_per_item=2, items_per_user=2)
    await small.learn([buy(6, "ann", "tripod")])
    assert set(parse_row(await redis_client.get(keys.user("ann", "ucf_row")))) == {"case", "tripod"}
    assert await redis_client.zscore(keys.item("phone", "ucf_users"), "ann") is None


async def test_usercf_tiny_caps_stay_bounded_and_erasable(redis_client: aioredis.Redis) -> None:
    events = random_stream(17, 600)
    ucf = RedisUserCF(redis_client, users_per_item=2, items_per_user=3, neighbours=2)
    await learn_all(ucf, events)
    state = await usercf_state(redis_client, Keys())
    assert all(len(users) <= 2 for users in state["index"].values())
    assert all(0 < len(row) <= 3 for row in state["items"].values())
    for item, users in state["index"].items():  # no index entry without its row entry
        assert all(item in state["items"][u] for u in users)
    assert any(len(users) == 2 for users in state["index"].values())
    for user, found in (await ucf.candidates(USERS, {}, 5, 0.0)).items():
        assert not {c.item_id for c in found} & state["items"].get(user, {}).keys()
    await ucf.erase(["bob", "cy"])
    await assert_nowhere(redis_client, "bob")
    await assert_nowhere(redis_client, "cy")


# ---- helpers ---------------------------------------------------------------------------------
async def assert_nowhere(client: aioredis.Redis, user_id: str) -> None:
    """No key name, hash field or value, zset/set/list member or string mentions ``user_id``."""
    seen = 0
    async for raw in client.scan_iter(count=500):
        seen += 1
        key = _s(raw)
        assert user_id not in key
        kind = _s(await client.type(raw))
        texts: list[str] = []
        if kind == "string":
            texts.append(_s(await client.get(raw)))
        elif kind == "hash":
            for f, v in (await client.hgetall(raw)).items():
                texts += [_s(f), _s(v)]
        elif kind == "zset":
            texts += [_s(m) for m in await client.zrange(raw, 0, -1)]
        elif kind == "set":
            texts += [_s(m) for m in await client.smembers(raw)]
        elif kind == "list":
            texts += [_s(m) for m in await client.lrange(raw, 0, -1)]
        else:
            raise AssertionError(f"unexpected key type {kind}")
        assert not [t for t in texts if user_id in t], key
    assert seen > 0


async def test_erasing_everyone_leaves_an_empty_database(redis_client: aioredis.Redis) -> None:
    """No zero count, empty index or counter at 0 is left behind: only the hand-offs'
    numbering (streams/sources/handoff.py), which names no one."""
    events = random_stream(21, 300)
    fbt = RedisFBT(redis_client, **FBT_PARAMS)
    ucf = RedisUserCF(redis_client, **UCF_PARAMS)
    await learn_all(fbt, events)
    await learn_all(ucf, events)
    assert await redis_client.dbsize() > 0
    assert sum((await fbt.erase(USERS)).values()) > 0
    assert sum((await ucf.erase(USERS)).values()) > 0
    left = [_s(k) async for k in redis_client.scan_iter()]
    assert [k for k in left if not k.endswith(("}ho_seq", "}ho_applied"))] == []
