"""RedisMF (streams/sources/mf.py) against real Redis: the pure model, continued, erased.

The reference throughout is the pure :class:`models.mf.OnlineMF` (or a second RedisMF on its own
key prefix in the same database): with one worker the Redis-backed model must be bit-identical
to it, including across a restart. Erasure is measured against a run in which the erased user
never existed, and the numbers are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from models.events import DEFAULT_WEIGHTS, Event, EventType
from models.hybrid import TASTE_MATCH
from models.mf import WIRE_DTYPE, OnlineMF, Sampling, decode_ledger_row
from models.recommend import Source
from streams.keys import Keys
from streams.sources import SourceModel
from streams.sources.mf import RedisMF
from streams.sources.mf_batch import stored_sampler

T0 = 1_700_000_000.0
FACTORS = 16
ITEM_KINDS = [EventType.VIEW] * 5 + [
    EventType.LIKE,
    EventType.SHARE,
    EventType.CART,
    EventType.PURCHASE,
    EventType.HIDE,
    EventType.FOLLOW,  # weight 0: must teach nothing and cost nothing
]


def random_events(
    seed: int, count: int, users: Sequence[str], items: int = 40, start: int = 0
) -> list[Event]:
    rnd = random.Random(seed)
    events = []
    for n in range(count):
        kind = rnd.choice(ITEM_KINDS)
        user = rnd.choice(users)
        if kind is EventType.FOLLOW:
            other = rnd.choice([u for u in users if u != user] or ["someone"])
            events.append(Event(f"e{start + n}", kind, user, T0 + n, target_user_id=other))
        else:
            target = rnd.choice(users) if kind is EventType.SHARE else None
            item = f"i{rnd.randrange(items)}"
            events.append(
                Event(f"e{start + n}", kind, user, T0 + n, item_id=item, target_user_id=target)
            )
    return events


def raw(value: bytes | str | None) -> bytes:
    """A reply of the test client (decode_responses=False) as the bytes it is."""
    assert isinstance(value, bytes), type(value)
    return value


def batches(events: Sequence[Event], size: int) -> list[Sequence[Event]]:
    return [events[n : n + size] for n in range(0, len(events), size)]


def make_mf(client: aioredis.Redis, prefix: str = "sr:", **params: Any) -> RedisMF:
    params.setdefault("factors", FACTORS)
    return RedisMF(client, Keys(prefix), **params)


def pure_mf(events: Sequence[Event], **params: Any) -> OnlineMF:
    """The reference: the pure model fed the same events, one at a time."""
    params.setdefault("factors", FACTORS)
    mf = OnlineMF(**params)
    for e in events:
        if e.item_id is not None:
            mf.learn(e.user_id, e.item_id, DEFAULT_WEIGHTS[e.type])
    return mf


async def stored_rows(
    client: aioredis.Redis, prefix: str
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(user rows, item rows) as Redis holds them under ``prefix``."""
    keys = Keys(prefix)
    users: dict[str, bytes] = {}
    async for raw_key in client.scan_iter(match=keys.users_matching("mf")):
        _, user_id, _ = keys.parse(raw(raw_key).decode())
        users[user_id] = raw(await client.get(raw_key))
    items = await client.hgetall(keys.global_("mf_items"))
    return users, {raw(k).decode(): raw(v) for k, v in items.items()}


def as_matrix(rows: dict[str, bytes], ids: Sequence[str]) -> npt.NDArray[np.float64]:
    return np.stack([np.frombuffer(rows[i], dtype=WIRE_DTYPE) for i in ids]).astype(np.float64)


def test_redis_mf_is_a_source_model(redis_client: aioredis.Redis) -> None:
    model: SourceModel = make_mf(redis_client)
    assert model.source is Source.MF


@pytest.mark.parametrize("sampling", ["uniform", "popularity"])
async def test_redis_backed_model_equals_the_pure_model(
    redis_client: aioredis.Redis, sampling: Sampling
) -> None:
    users = [f"u{k}" for k in range(12)]
    events = random_events(1, 600, users)
    mf = make_mf(redis_client, sampling=sampling, pool_size=50, seed=9)
    for batch in batches(events, 37):
        await mf.learn(batch)
    reference = pure_mf(events, sampling=sampling, pool_size=50, seed=9)

    user_rows, item_rows = await stored_rows(redis_client, "sr:")
    # Bit-identical: float32 in memory and on the wire, same seed, same negatives.
    assert user_rows == reference.export_rows("user")
    assert item_rows == reference.export_rows("item")
    assert await stored_sampler(redis_client, Keys()) == reference.sampler_state()
    # Scores come from the Redis rows and equal the pure model's.
    items = [f"i{k}" for k in range(40)] + ["never-seen"]
    got = await mf.score("u3", items)
    np.testing.assert_array_equal(got, reference.score("u3", items))
    assert got[-1] == 0.0


async def test_a_failed_write_is_retried_as_if_it_never_happened(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write-back pipeline fails after the batch was learnt locally; the retried batch must
    be learnt once, not on top of the lost attempt (new items included)."""
    users = [f"u{k}" for k in range(8)]
    events = random_events(3, 300, users, items=30)
    later = random_events(4, 100, users, items=45, start=300)  # brings 15 new items
    mf = make_mf(redis_client, seed=1)
    await mf.learn(events)

    original = Pipeline.execute
    calls = 0

    async def failing_write(self: Pipeline, raise_on_error: bool = True) -> list[Any]:
        nonlocal calls
        calls += 1
        if calls == 2:  # the read succeeds, the write does not
            raise ConnectionError("Redis went away")
        return await original(self, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", failing_write)
    with pytest.raises(ConnectionError):
        await mf.learn(later)
    monkeypatch.undo()
    await mf.learn(later)

    reference = pure_mf(events + later, sampling="popularity", pool_size=2000, seed=1)
    assert await stored_rows(redis_client, "sr:") == (
        reference.export_rows("user"),
        reference.export_rows("item"),
    )


async def test_a_restarted_worker_continues_bit_identically(
    redis_client: aioredis.Redis,
) -> None:
    """Half the stream through one instance, the rest through a fresh one (a restart), versus
    all of it through one instance on another prefix: same rows, same sampler, bit for bit.

    More than 512 items by the restart (the listpack limit on a hash's entries of the Redis
    socialrec starts) make ``mf_items`` a real hash table, so the restarted worker loads the
    items in another order than it wrote them: popularity sampling (the default) must not care.
    """
    users = [f"u{k}" for k in range(15)]
    events = random_events(2, 2000, users, items=2000)
    params: dict[str, Any] = {"factors": 32, "pool_size": 100, "seed": 4}
    half = len(events) // 2

    first = make_mf(redis_client, "w:", **params)
    for batch in batches(events[:half], 50):
        await first.learn(batch)
    restarted = make_mf(redis_client, "w:", **params)
    for batch in batches(events[half:], 50):
        await restarted.learn(batch)

    single = make_mf(redis_client, "one:", **params)
    for batch in batches(events, 50):
        await single.learn(batch)

    assert restarted.model.item_ids() != single.model.item_ids()  # the order did change
    continued, reference = (
        await stored_rows(redis_client, "w:"),
        await stored_rows(redis_client, "one:"),
    )
    assert len(continued[1]) > 512  # over the listpack limit too
    assert continued == reference
    sampler = await stored_sampler(redis_client, Keys("w:"))
    assert sampler.pool
    assert sampler == await stored_sampler(redis_client, Keys("one:"))
    # Both equal the pure model too, so the split did not change what was learnt.
    pure = pure_mf(events, **params, sampling="popularity")
    assert reference == (pure.export_rows("user"), pure.export_rows("item"))


async def test_two_writers_taking_turns_learn_what_one_would(
    redis_client: aioredis.Redis,
) -> None:
    """Two instances on one prefix, alternating batches: each finds the sampler moved by the
    other (its step count is not its own) and reads the pool again, so the rows and the
    sampler are the pure model's, bit for bit. ``refresh_s=0``: every call reloads the item
    rows, so what this tests is the sampler's."""
    users = [f"u{k}" for k in range(10)]
    events = random_events(5, 800, users, items=300)
    params: dict[str, Any] = {"pool_size": 40, "seed": 3, "refresh_s": 0.0}
    writers = [make_mf(redis_client, **params), make_mf(redis_client, **params)]
    for n, batch in enumerate(batches(events, 40)):
        await writers[n % 2].learn(batch)

    pure = pure_mf(events, sampling="popularity", pool_size=40, seed=3)
    assert await stored_sampler(redis_client, Keys()) == pure.sampler_state()
    assert await stored_rows(redis_client, "sr:") == (
        pure.export_rows("user"),
        pure.export_rows("item"),
    )


async def test_candidates_follow_a_planted_pattern(redis_client: aioredis.Redis) -> None:
    """Two groups of 20 users, each consuming only its own 20-item cluster (as in the pure
    model's test): each user's top 5 unseen items come from their own cluster (random: 37.5%)."""
    rng = random.Random(1)
    clusters = {g: [f"g{g}-i{k}" for k in range(20)] for g in range(2)}
    groups = {f"g{g}-u{k}": g for g in range(2) for k in range(20)}
    kinds = [EventType.VIEW, EventType.VIEW, EventType.LIKE, EventType.CART, EventType.PURCHASE]
    train: list[tuple[str, str, EventType]] = []
    seen: dict[str, frozenset[str]] = {}
    for user, g in groups.items():
        picked = rng.sample(clusters[g], 8)
        seen[user] = frozenset(picked)
        train.extend((user, item, rng.choice(kinds)) for item in picked)
    mf = make_mf(redis_client, learning_rate=0.1, seed=0)
    n = 0
    for epoch in range(5):
        order = train[:]
        random.Random(epoch).shuffle(order)
        events = []
        for user, item, kind in order:
            events.append(Event(f"e{n}", kind, user, T0 + n, item_id=item))
            n += 1
        for batch in batches(events, 64):
            await mf.learn(batch)

    lists = await mf.candidates([*groups, "cold-user"], seen, 5, now=T0 + n)
    assert lists["cold-user"] == []
    own = 0
    for user, g in groups.items():
        top = lists[user]
        assert len(top) == 5
        assert not seen[user] & {c.item_id for c in top}
        own += sum(c.item_id.startswith(f"g{g}-") for c in top)
    own_share = own / (5 * len(groups))
    print(f"\nRedisMF planted clusters: own-cluster share of top-5 {own_share:.2f} (random 0.375)")
    assert own_share >= 0.9


async def test_candidates_respect_exclusions_and_scores_are_finite(
    redis_client: aioredis.Redis,
) -> None:
    users = [f"u{k}" for k in range(10)]
    mf = make_mf(redis_client, seed=3)
    for batch in batches(random_events(5, 500, users, items=30), 50):
        await mf.learn(batch)
    rnd = random.Random(0)
    exclude = {u: frozenset(f"i{k}" for k in rnd.sample(range(30), 20)) for u in users}
    lists = await mf.candidates(users, exclude, 8, now=T0)
    for user in users:
        top = lists[user]
        assert 0 < len(top) <= 8  # 10 items are allowed
        assert not exclude[user] & {c.item_id for c in top}
        scores = [c.score for c in top]
        assert all(math.isfinite(s) for s in scores)
        assert scores == sorted(scores, reverse=True)
        assert all(c.reasons == TASTE_MATCH for c in top)
        # The scoring path agrees with the ranking path: the same float32 products, which a
        # matrix product (ranking) and a gather (scoring) may sum in another order.
        again = await mf.score(user, [c.item_id for c in top])
        np.testing.assert_allclose(again, scores, rtol=1e-6, atol=1e-8)
    everything = frozenset(f"i{k}" for k in range(30))
    assert (await mf.candidates(["u1"], {"u1": everything}, 5, now=T0))["u1"] == []
    assert not (await mf.score("nobody", ["i1", "i2"])).any()


async def all_redis_text(client: aioredis.Redis) -> list[bytes]:
    """Every key name, hash field and value, set/zset member and string value in the db."""
    blobs: list[Any] = []
    async for key in client.scan_iter():
        blobs.append(key)
        kind = raw(await client.type(key)).decode()
        if kind == "string":
            blobs.append(await client.get(key) or b"")
        elif kind == "hash":
            for field, value in (await client.hgetall(key)).items():
                blobs.extend((field, value))
        elif kind == "set":
            blobs.extend(await client.smembers(key))
        elif kind == "zset":
            blobs.extend(await client.zrange(key, 0, -1))
        elif kind == "list":
            blobs.extend(await client.lrange(key, 0, -1))
        else:
            raise AssertionError(f"unexpected key type {kind}")
    return [raw(b) for b in blobs]


async def _erasure_run(
    client: aioredis.Redis, prefix: str, events: Sequence[Event], victim: str | None
) -> tuple[RedisMF, dict[str, bytes], dict[str, bytes]]:
    """Learn ``events`` under ``prefix``; if ``victim``, erase them. (model, item rows before
    the erasure, item rows after)."""
    mf = make_mf(client, prefix, seed=6, pool_size=200)
    for batch in batches(events, 40):
        await mf.learn(batch)
    _, before = await stored_rows(client, prefix)
    if victim is not None:
        assert (await mf.erase([victim]))[victim] > 0
    _, after = await stored_rows(client, prefix)
    return mf, before, after


def _distance(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> tuple[float, float]:
    """(max abs difference, relative Frobenius difference) of two item matrices."""
    return float(np.abs(a - b).max()), float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("when", ["interleaved", "last"])
async def test_erasure_leaves_no_trace_and_item_rows_near_a_never_existed_run(
    redis_client: aioredis.Redis, when: str
) -> None:
    """The victim's events come last (nobody built on them: the undo is exact up to the rounding
    of the stored ledger) or are spread through the stream: the approximate case.

    There, others' later steps built on the victim's pushes, and every later negative sample
    moved (each of the victim's events advanced the step counter the negatives are drawn by),
    so the whole SGD trajectory differs. The yardstick for that is a noise floor: the
    never-existed run again with the step counter started at 1 instead of 0 (same data,
    other negatives). Erasure must bring the item rows at least down to that floor.
    """
    victim = "zz-victim-7f3a"
    users = [f"u{k}" for k in range(20)]
    others = random_events(7, 1200, users, items=60)
    mine = [
        Event(f"v{n}", e.type, victim, e.ts, item_id=e.item_id)
        for n, e in enumerate(random_events(8, 120, [victim], items=60))
        if e.item_id is not None
    ]
    if when == "last":
        with_victim = others + mine
    else:
        with_victim = others[:]
        for n, e in enumerate(mine):  # spread evenly over the whole stream
            with_victim.insert(n * (len(others) // len(mine)) + n, e)

    mf, present, erased = await _erasure_run(redis_client, "a:", with_victim, victim)
    _, never, _ = await _erasure_run(redis_client, "n:", others, None)

    # No key, field, member or value anywhere in the db mentions the victim.
    assert not [b for b in await all_redis_text(redis_client) if victim.encode() in b]
    assert (await mf.candidates([victim], {}, 5, now=T0))[victim] == []
    assert not (await mf.score(victim, ["i1"])).any()
    assert await mf.erase([victim]) == {victim: 0}

    ids = sorted(never)
    assert sorted(present) == ids  # the victim used no item nobody else did
    reference = as_matrix(never, ids)
    present_max, present_rel = _distance(as_matrix(present, ids), reference)
    erased_max, erased_rel = _distance(as_matrix(erased, ids), reference)
    print(
        f"\nerasure ({when}): item matrix vs never-existed run: with the victim "
        f"max|d|={present_max:.4g} rel_F={present_rel:.4g}; after erase "
        f"max|d|={erased_max:.4g} rel_F={erased_rel:.4g} "
        f"(erased/present rel_F {erased_rel / present_rel:.2f})"
    )
    assert present_rel > 0.01  # the victim did leave a visible footprint
    if when == "last":
        # A ledger row is rounded to 4-bit levels of its largest value / 7 when written
        # (models/mf/rows.py), once a batch: a batch's rounding is at most 1/14 of a row's
        # largest push (0.076 here), 5.4e-3; 6.4e-3 measured over the victim's three batches,
        # 9 % of the victim's footprint (int8 ledgers: 3.1e-4 and 0.5 %; float16: 3.4e-5).
        assert erased_max < 3 * 0.0054
        assert erased_rel < 0.15 * present_rel
        return
    await redis_client.set(Keys("s:").global_("mf_steps"), 1)
    _, shifted, _ = await _erasure_run(redis_client, "s:", others, None)
    floor_max, floor_rel = _distance(as_matrix(shifted, ids), reference)
    print(
        f"noise floor (same data, negatives shifted one step) max|d|={floor_max:.4g} "
        f"rel_F={floor_rel:.4g}"
    )
    assert present_rel > 1.05 * floor_rel  # the victim's data shows above the floor
    assert erased_rel < present_rel
    assert erased_rel <= 1.05 * floor_rel  # what is left is trajectory noise, not the victim


async def test_ledgers_are_capped_and_erase_counts_what_it_removed(
    redis_client: aioredis.Redis,
) -> None:
    mf = make_mf(redis_client, max_contributions=10, seed=2)
    events = [
        Event(f"e{n}", EventType.LIKE, "heavy", T0 + n, item_id=f"i{n % 50}") for n in range(200)
    ]
    for batch in batches(events, 25):
        await mf.learn(batch)
    ledger_key = Keys().user("heavy", "mf_contrib")
    assert await redis_client.hlen(ledger_key) == 10
    # The kept entries are the largest pushes: positives (conf 3) beat one-off negatives.
    kept = await redis_client.hgetall(ledger_key)
    assert all(np.isfinite(decode_ledger_row(raw(v), FACTORS)).all() for v in kept.values())
    assert await mf.erase(["heavy", "never-was"]) == {"heavy": 1 + 10, "never-was": 0}
    assert await redis_client.exists(ledger_key, Keys().user("heavy", "mf")) == 0


async def test_learn_is_a_fixed_number_of_round_trips_and_timing(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 500-event batch, as the learner gets them (a partition after another), costs four
    pipelines a partition once the table is loaded: the run's state read, its step, the
    application of what it handed off, and their trim. The time per event is printed, with
    the pure model on the same events as the in-process baseline."""
    users = [f"u{k}" for k in range(200)]
    warmup = random_events(10, 2000, users, items=2000)
    batch = random_events(11, 500, users, items=2000, start=len(warmup))
    batch.sort(key=lambda e: Keys().partition_of(e.user_id))  # stable: each one's in order
    mf = make_mf(redis_client, factors=32)
    await mf.learn(warmup)
    await mf.load()

    executes = 0
    original = Pipeline.execute

    async def counting(self: Pipeline, raise_on_error: bool = True) -> list[Any]:
        nonlocal executes
        executes += 1
        return await original(self, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", counting)
    started = time.perf_counter()
    await mf.learn(batch)
    elapsed = time.perf_counter() - started
    monkeypatch.undo()
    assert executes == 4 * len({Keys().partition_of(e.user_id) for e in batch})

    reference = pure_mf(warmup, factors=32, sampling="popularity", pool_size=2000)
    started = time.perf_counter()
    for e in batch:
        if e.item_id is not None:
            reference.learn(e.user_id, e.item_id, DEFAULT_WEIGHTS[e.type])
    pure = time.perf_counter() - started
    print(
        f"\nRedisMF.learn: 500-event batch in {elapsed * 1e3:.1f} ms "
        f"({elapsed / 500 * 1e6:.0f} us/event); pure OnlineMF on the same events "
        f"{pure / 500 * 1e6:.0f} us/event (ratio {elapsed / pure:.2f})"
    )
