"""The content source against real Redis: new items placed at once, workers kept in step
through the change stream, cold users served after one event, erasure that leaves nothing."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
import redis.asyncio as aioredis

from models.content import CatalogRecord
from models.events import Event, EventType
from streams.keys import Keys
from streams.sources import SourceModel
from streams.sources.content import RedisContent
from streams.sources.content_records import ContentParams

T0 = 1_700_000_000.0
PHONES = {"ph-huawei", "ph-xiaomi", "ph-galaxy", "ph-pixel", "ph-honor"}
ACCESSORIES = {"acc-case", "acc-charger", "acc-glass"}


def catalog() -> list[CatalogRecord]:
    """Phones and phone accessories (English and Chinese titles) among unrelated goods."""

    def phone(item: str, title: str, brand: str, price: float) -> CatalogRecord:
        return CatalogRecord(
            item, title, "electronics/phones/smartphones", brand, "m-phones", price, ("5g",)
        )

    def accessory(item: str, title: str, price: float) -> CatalogRecord:
        return CatalogRecord(
            item, title, "electronics/phones/accessories", "Baseus", "m-phones", price, ("5g",)
        )

    return [
        phone("ph-huawei", "华为 Mate 智能手机 5G 256GB", "Huawei", 699.0),
        phone("ph-xiaomi", "小米 14 智能手机 5G", "Xiaomi", 599.0),
        phone("ph-honor", "荣耀 手机 5G 128GB", "Honor", 399.0),
        phone("ph-galaxy", "Samsung Galaxy S24 smartphone 5G 256GB", "Samsung", 799.0),
        phone("ph-pixel", "Google Pixel 8 smartphone 5G", "Google", 699.0),
        accessory("acc-case", "手机壳 phone case for smartphone", 15.0),
        accessory("acc-charger", "手机 快充 charger 65W", 25.0),
        accessory("acc-glass", "smartphone screen protector glass", 9.0),
        CatalogRecord("mat-cork", "Cork Yoga Mat", "sports/yoga/mats", "Manduka", "m-sport", 57.0),
        CatalogRecord("mat-pvc", "瑜伽垫 加厚", "sports/yoga/mats", "Keep", "m-sport", 19.0),
        CatalogRecord("lamp-desk", "LED desk lamp", "home/lighting/lamps", "Ikea", "m-home", 29.0),
        CatalogRecord("lamp-floor", "落地灯 客厅", "home/lighting/lamps", "Muji", "m-home", 89.0),
        CatalogRecord("book-py", "Fluent Python", "books/computing", "O'Reilly", "m-books", 45.0),
        CatalogRecord("tea-green", "西湖 龙井 绿茶", "food/tea", "Lion", "m-food", 35.0),
        CatalogRecord(
            "shoe-run", "Trail running shoes", "sports/shoes", "Salomon", "m-sport", 130.0
        ),
    ]


def view(n: int, user: str, item: str, ts: float, kind: EventType = EventType.VIEW) -> Event:
    return Event(f"e{n}", kind, user, ts, item_id=item)


def source(client: aioredis.Redis, **params: Any) -> RedisContent:
    return RedisContent(client, Keys("sr:"), ContentParams(**params))


async def test_is_a_source_model(redis_client: aioredis.Redis) -> None:
    content: SourceModel = source(redis_client)
    assert content.source == "content"


async def test_new_item_has_neighbours_the_moment_put_items_returns(
    redis_client: aioredis.Redis,
) -> None:
    keys = Keys("sr:")
    content = source(redis_client, neighbours=4)
    await content.put_items(catalog())
    new = CatalogRecord(
        "ph-new", "OnePlus 12 智能手机 5G", "electronics/phones/smartphones", "OnePlus",
        "m-phones", 649.0, ("5g",),
    )  # fmt: skip
    await content.put_items([new])

    own: list[Any] = await redis_client.zrevrange(
        keys.item("ph-new", "content_sim"), 0, -1, withscores=True
    )
    nearest = [m.decode() for m, _ in own]
    assert len(nearest) == 4
    assert set(nearest) <= PHONES | ACCESSORIES
    assert set(nearest[:2]) <= PHONES
    assert all(0.0 < s <= 1.0 for _, s in own)
    # The new item is a neighbour of its nearest items already (no recomputation needed).
    for item in nearest[:2]:
        theirs = await redis_client.zrange(keys.item(item, "content_sim"), 0, -1)
        assert b"ph-new" in theirs
    # Lists stay bounded after back-links were added.
    for record in catalog():
        assert await redis_client.zcard(keys.item(record.item_id, "content_sim")) <= 4
    assert [i for i, _ in await content.similar("ph-new", 4)] == nearest
    # Nothing unrelated points at it.
    assert b"ph-new" not in await redis_client.zrange(keys.item("mat-cork", "content_sim"), 0, -1)


async def test_another_worker_sees_new_items_through_the_change_stream(
    redis_client: aioredis.Redis,
) -> None:
    writer, reader = source(redis_client), source(redis_client)
    await writer.put_items(catalog())
    assert await reader.sync() == len(catalog())  # first sync loads everything
    assert await reader.sync() == 0  # nothing changed since

    new = CatalogRecord("ph-new", "Nothing Phone smartphone 5G", "electronics/phones/smartphones")
    await writer.put_items([new])
    assert "ph-new" not in reader.model
    assert await reader.sync() == 1
    assert "ph-new" in reader.model

    await reader.learn([view(1, "ann", "ph-pixel", T0)])
    assert (await reader.score("ann", ["ph-new", "mat-cork"], T0)).tolist()[1] == 0.0
    assert (await reader.score("ann", ["ph-new"], T0))[0] > 0.0
    got = await reader.candidates(["ann"], {}, 10, T0)
    assert "ph-new" in [c.item_id for c in got["ann"]]

    await writer.delete_items(["ph-new"])
    await reader.sync()
    assert "ph-new" not in reader.model


async def test_a_trimmed_change_stream_makes_a_worker_reload(
    redis_client: aioredis.Redis,
) -> None:
    keys = Keys("sr:")
    writer, reader = source(redis_client), source(redis_client)
    await writer.put_items(catalog())
    await reader.sync()
    await writer.put_items([CatalogRecord("x1", "lamp", "home/lighting/lamps")])
    await writer.put_items([CatalogRecord("x2", "lamp", "home/lighting/lamps")])
    await writer.delete_items(["book-py"])
    # Another worker's trimming dropped the entries for x1 and x2; only the delete is left.
    await redis_client.xtrim(keys.global_("content_changes"), maxlen=1, approximate=False)
    await reader.sync()
    assert {"x1", "x2"} <= set(reader.model.item_ids())
    assert "book-py" not in reader.model
    assert set(reader.model.item_ids()) == set(writer.model.item_ids())


async def test_one_event_is_enough_for_similar_content(redis_client: aioredis.Redis) -> None:
    content = source(redis_client)
    await content.put_items(catalog())
    await content.learn([view(1, "cold", "ph-huawei", T0)])

    got = (await content.candidates(["cold", "nobody"], {}, 5, T0 + 60))["cold"]
    assert len(got) == 5
    assert {c.item_id for c in got} <= (PHONES | ACCESSORIES) - {"ph-huawei"}
    assert {c.item_id for c in got[:2]} <= {"ph-xiaomi", "ph-honor"}  # Chinese 智能手机/手机 titles
    assert [c.score for c in got] == sorted((c.score for c in got), reverse=True)
    for candidate in got:
        (reason,) = candidate.reasons
        assert reason.item_id == "ph-huawei"
        assert reason.contribution == candidate.score
    assert (await content.candidates(["nobody"], {}, 5, T0))["nobody"] == []


async def test_reasons_name_the_nearest_of_the_users_items(redis_client: aioredis.Redis) -> None:
    content = source(redis_client)
    await content.put_items(catalog())
    events = [
        view(1, "mix", "ph-galaxy", T0, EventType.PURCHASE),
        view(2, "mix", "mat-cork", T0 + 1, EventType.PURCHASE),
    ]
    await content.learn(events)
    got = {c.item_id: c for c in (await content.candidates(["mix"], {}, 20, T0 + 2))["mix"]}
    assert got["mat-pvc"].reasons[0].item_id == "mat-cork"
    assert got["ph-pixel"].reasons[0].item_id == "ph-galaxy"
    # The user's own items are never proposed back.
    assert not {"ph-galaxy", "mat-cork"} & got.keys()


async def test_profiles_continue_in_a_fresh_worker(redis_client: aioredis.Redis) -> None:
    first = source(redis_client)
    await first.put_items(catalog())
    rnd = random.Random(3)
    items = [r.item_id for r in catalog()]
    kinds = [EventType.VIEW, EventType.LIKE, EventType.CART, EventType.PURCHASE, EventType.HIDE]
    events = [
        view(n, f"u{rnd.randrange(6)}", rnd.choice(items), T0 + n, rnd.choice(kinds))
        for n in range(60)
    ]
    await first.learn(events[:30])
    await first.learn(events[30:])
    users = [f"u{n}" for n in range(6)]
    before = await first.candidates(users, {}, 6, T0 + 100)

    fresh = source(redis_client)
    after = await fresh.candidates(users, {}, 6, T0 + 100)
    assert after == before
    assert sum(len(v) for v in after.values()) > 0


async def test_erasure_leaves_nothing_about_the_user(redis_client: aioredis.Redis) -> None:
    content = source(redis_client)
    await content.put_items(catalog())
    gone, kept = "erase-me-7f3a", "stays-c9d1"
    await content.learn(
        [
            view(1, gone, "ph-galaxy", T0, EventType.LIKE),
            view(2, kept, "lamp-desk", T0),
            view(3, gone, "tea-green", T0 + 1, EventType.PURCHASE),
            view(4, kept, "ph-honor", T0 + 2),
        ]
    )
    before = await content.candidates([kept], {}, 8, T0 + 5)
    assert await content.erase([gone]) == {gone: 1}
    assert await content.erase([gone]) == {gone: 0}

    dump = await _dump(redis_client)
    assert gone.encode() not in dump
    assert kept.encode() in dump  # the scan does see user state
    assert await content.candidates([gone], {}, 8, T0 + 5) == {gone: []}
    assert await source(redis_client).candidates([kept], {}, 8, T0 + 5) == before


async def test_excluded_items_never_appear_and_scores_are_finite(
    redis_client: aioredis.Redis,
) -> None:
    content = source(redis_client)
    await content.put_items(catalog())
    items = [r.item_id for r in catalog()]
    rnd = random.Random(11)
    for round_ in range(5):
        users = [f"u{n}" for n in range(8)]
        events = [
            view(round_ * 100 + n, rnd.choice(users), rnd.choice(items), T0 + round_ * 100 + n)
            for n in range(20)
        ]
        await content.learn(events)
        exclude = {u: frozenset(rnd.sample(items, 5)) for u in users}
        got = await content.candidates(users, exclude, 6, T0 + 50)
        for user in users:
            # The newest few of the user's own items are kept with the profile and left out.
            own = {e.item_id for e in events if e.user_id == user}
            assert len(own) <= ContentParams().recent_items
            assert len(got[user]) <= 6
            for c in got[user]:
                assert c.item_id not in exclude[user]
                assert c.item_id not in own
                assert math.isfinite(c.score)
                assert 0.0 < c.score <= 1.0
            scores = await content.score(user, items, T0 + 50)
            assert scores.shape == (len(items),)
            assert all(math.isfinite(s) and -1.0 <= s <= 1.0 for s in scores.tolist())


async def test_deleted_items_leave_candidates_and_neighbours(redis_client: aioredis.Redis) -> None:
    keys = Keys("sr:")
    content, other = source(redis_client), source(redis_client)
    await content.put_items(catalog())
    await other.sync()
    await content.learn([view(1, "ann", "ph-huawei", T0)])
    assert "ph-xiaomi" in [c.item_id for c in (await content.candidates(["ann"], {}, 5, T0))["ann"]]
    assert "ph-xiaomi" in [i for i, _ in await content.similar("ph-honor", 10)]

    await content.delete_items(["ph-xiaomi"])
    await other.sync()
    for worker in (content, other):
        got = (await worker.candidates(["ann"], {}, 20, T0))["ann"]
        assert got
        assert "ph-xiaomi" not in [c.item_id for c in got]
        assert all(i != "ph-xiaomi" for i, _ in await worker.similar("ph-honor", 10))
    assert not await redis_client.exists(keys.item("ph-xiaomi", "content_sim"))
    assert not await redis_client.hexists(keys.global_("content_items"), "ph-xiaomi")
    lists = [key async for key in redis_client.scan_iter(match="sr:{*}i:*:content_sim")]
    assert lists
    for key in lists:
        assert b"ph-xiaomi" not in await redis_client.zrange(key, 0, -1)


async def _dump(client: Any) -> bytes:
    """Every key, field, member and value in the database, concatenated."""
    parts: list[bytes] = []
    async for key in client.scan_iter():
        parts.append(key)
        kind = (await client.type(key)).decode()
        if kind == "string":
            parts.append(await client.get(key) or b"")
        elif kind == "hash":
            for f, v in (await client.hgetall(key)).items():
                parts += [f, v]
        elif kind == "zset":
            parts += [m for m, _ in await client.zrange(key, 0, -1, withscores=True)]
        elif kind == "set":
            parts += list(await client.smembers(key))
        elif kind == "list":
            parts += await client.lrange(key, 0, -1)
        elif kind == "stream":
            for _, fields in await client.xrange(key):
                for f, v in fields.items():
                    parts += [f, v]
        else:
            pytest.fail(f"unexpected key type {kind}")
    return b"\n".join(parts)
