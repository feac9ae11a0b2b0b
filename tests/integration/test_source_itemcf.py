"""Item-CF in Redis (streams/sources/itemcf.py) against its pure model (models/cooccurrence.py):
the same batches give the same windows, counts, norms and neighbour lists, erasure included;
and the publish path's batch script reads the lists the learner wrote."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import cast

import pytest
import redis.asyncio as aioredis

from models.cooccurrence import Cooccurrence, item_events
from models.events import Event, EventType
from models.similarity import cosine
from models.state import MemoryState, Outcome, StateParams
from streams.keys import Keys, decoded
from streams.sources import itemcf_step
from streams.sources.itemcf import RedisItemCF, decode_window, steps
from streams.sources.writes import payload
from streams.store import RedisStore
from tests.integration.test_store_contract import T0, TIGHT, assert_close, random_stream


def _applied(events: list[Event]) -> list[Event]:
    state = MemoryState(StateParams())
    return [e for e in events if state.apply(e) is Outcome.APPLIED]


async def _zset(client: aioredis.Redis, key: str) -> dict[str, float]:
    rows = await client.zrange(key, 0, -1, withscores=True)
    return {decoded(m): float(s) for m, s in cast(list[tuple[bytes, float]], rows)}


@pytest.mark.parametrize("seed", range(6))
async def test_redis_item_cf_matches_the_model_exactly(
    seed: int, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await redis_client.flushdb()
    if seed == 5:  # a row's changes in several ops
        monkeypatch.setattr(itemcf_step, "OP_MEMBERS", 2)
    params = TIGHT if seed % 2 else replace(TIGHT, shrinkage_scale=4.0)
    model, real = Cooccurrence(params), RedisItemCF(redis_client, Keys(), params)
    events = _applied(random_stream(seed, 400))
    batch = random.Random(seed).randint(1, 60)
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        for step in steps(Keys(), chunk):  # the learner's atomic steps
            model.learn(step)
        await real.learn(chunk)
    assert_close(await real.snapshot(), model.snapshot())

    victims = sorted({e.user_id for e in events})[:2]
    for victim in victims:
        assert await real.erase([victim]) == {victim: model.erase(victim)}
    after = await real.snapshot()
    assert_close(after, model.snapshot())
    assert not set(victims) & set(after["windows"])


async def test_a_step_applied_already_is_not_counted_again(redis_client: aioredis.Redis) -> None:
    """A learn retried after its reply was lost (Redis had applied some of its steps) counts
    each event once: the same counts as the model fed each event once."""
    await redis_client.flushdb()
    params = TIGHT
    model = Cooccurrence(params)
    events = _applied(random_stream(3, 200))
    on_items = list(item_events(events))
    # Two calls reached Redis (their steps applied), then the retry of every event: its
    # steps without the events learnt already. Short calls, so no user has more events in
    # them than TIGHT's dedupe window remembers as learnt.
    applied = [on_items[:40], on_items[40:45]]
    for part in applied:
        for step in steps(Keys(), part):
            model.learn(step)
        await RedisItemCF(redis_client, Keys(), params).learn(part)
    done = {e.event_id for part in applied for e in part}
    for step in steps(Keys(), events):
        model.learn([e for e in step if e.event_id not in done])
    await RedisItemCF(redis_client, Keys(), params).learn(events)  # the retry: every event
    assert_close(await RedisItemCF(redis_client, Keys(), params).snapshot(), model.snapshot())


async def test_the_publish_path_reads_the_neighbours_the_learner_wrote(
    redis_client: aioredis.Redis,
) -> None:
    await redis_client.flushdb()
    params = StateParams()
    store, cf = RedisStore(redis_client, params), RedisItemCF(redis_client, Keys(), params)
    events = [
        Event("e1", EventType.PURCHASE, "ann", T0, item_id="phone"),
        Event("e2", EventType.PURCHASE, "ann", T0 + 1, item_id="case"),
        Event("e3", EventType.VIEW, "bob", T0 + 2, item_id="phone"),
    ]
    result = await store.process_batch(events)
    assert result.views["bob"].neighbours == {"phone": ()}  # not learnt yet
    await cf.learn(events)
    bob = (await store.read_users(["bob"])).views["bob"]
    # ann's step (her partition's) scored the pair: 8·8 on it, norms 64 and 64. bob's view,
    # a step of his partition, changed phone's norm but no pair: the list keeps that score.
    assert Keys().partition_of("ann") != Keys().partition_of("bob")
    expected = cosine(64.0, 64.0, 64.0, params.shrinkage)
    assert dict(bob.neighbours["phone"]) == {"case": pytest.approx(expected)}


async def test_cached_neighbour_lists_are_the_scripts_for_their_time_to_live(
    redis_client: aioredis.Redis,
) -> None:
    """With SOCIALREC_NEIGHBOURS_TTL_S the worker's views carry the same lists as the script
    reads, cold and warm; until its entry expires (streams.runtime.itemcache) the worker keeps the
    list it read, while a new reader sees what the learner changed."""
    await redis_client.flushdb()
    params = StateParams()
    cf = RedisItemCF(redis_client, Keys(), params)
    plain = RedisStore(redis_client, params)
    cached = RedisStore(redis_client, params, neighbours_ttl_s=3600.0)
    first = [
        Event("e1", EventType.PURCHASE, "ann", T0, item_id="phone"),
        Event("e2", EventType.PURCHASE, "ann", T0 + 1, item_id="case"),
        Event("e3", EventType.VIEW, "bob", T0 + 2, item_id="phone"),
        Event("e4", EventType.LIKE, "bob", T0 + 3, item_id="cable"),
    ]
    await plain.process_batch(first)
    await cf.learn(first)
    users = ["ann", "bob"]
    expected = (await plain.read_users(users)).views
    assert expected["bob"].neighbours["phone"]  # something to compare
    for _read in ("cold", "warm"):
        assert (await cached.read_users(users)).views == expected

    more = [Event("e5", EventType.PURCHASE, "cid", T0 + 4, item_id="phone")]
    more.append(Event("e6", EventType.PURCHASE, "cid", T0 + 5, item_id="charger"))
    await plain.process_batch(more)
    await cf.learn(more)
    fresh = (await plain.read_users(["bob"])).views["bob"].neighbours["phone"]
    assert fresh != expected["bob"].neighbours["phone"]
    stale = (await cached.read_users(["bob"])).views["bob"]
    assert stale.neighbours["phone"] == expected["bob"].neighbours["phone"]
    assert (
        await RedisStore(redis_client, params, neighbours_ttl_s=3600.0).read_users(["bob"])
    ).views["bob"].neighbours["phone"] == fresh


async def test_a_user_erased_meanwhile_is_not_learnt(redis_client: aioredis.Redis) -> None:
    """The erasure's mark is set before anything is erased: a learner batch that read the
    user's window before the erasure must not write it back afterwards."""
    await redis_client.flushdb()
    keys, params = Keys(), StateParams()
    store, cf = RedisStore(redis_client, params), RedisItemCF(redis_client, keys, params)
    await store.mark_erased({"ann": T0 + 10})
    await cf.learn(
        [
            Event("e1", EventType.VIEW, "ann", T0, item_id="a"),
            Event("e2", EventType.VIEW, "ann", T0 + 1, item_id="b"),
            Event("e3", EventType.VIEW, "bob", T0, item_id="a"),
        ]
    )
    assert await redis_client.get(keys.user("ann", "cf_window")) is None
    assert decode_window(await redis_client.get(keys.user("bob", "cf_window"))) == {"a": (1.0, T0)}
    assert await _zset(redis_client, keys.partition(keys.home("a"), "norm2")) == {"a": 1.0}


async def test_entries_handed_on_one_pair_an_op_are_still_applied(
    redis_client: aioredis.Redis,
) -> None:
    """An entry written before a row's or a home's norms were one op (``!pair``, ``!norm``),
    left in a hand-off list by a learner that stopped, is applied at the next start as the
    ops of now would: the counts, the norms and their sum move the same."""
    await redis_client.flushdb()
    keys = Keys()
    home = keys.partition_stem(keys.home("a"))
    source = next(
        keys.partition_stem(p) for p in range(keys.partitions) if keys.partition_stem(p) != home
    )
    old = payload([["!norm", "a", 4.0], ["!pair", "a", "b", 2.0], ["!pair", "a", "c", 1.0]])
    await redis_client.rpush(keys.handoffs(source, "item_cf")[0], f"1\t{home}\t".encode() + old)
    itemcf = RedisItemCF(redis_client, keys, TIGHT)
    await itemcf.handoffs.drain()
    assert await _zset(redis_client, keys.item("a", "dot")) == {"b": 2.0, "c": 1.0}
    assert await _zset(redis_client, keys.partition(keys.home("a"), "norm2")) == {"a": 4.0}
    norms = await redis_client.hgetall(keys.partition(keys.home("a"), "cf_norms"))
    assert {decoded(k): float(v) for k, v in norms.items()} == {"count": 1.0, "total": 4.0}
    assert await redis_client.llen(keys.handoffs(source, "item_cf")[0]) == 0
