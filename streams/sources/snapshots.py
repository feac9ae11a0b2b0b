"""FBT's, user-CF's and the followees source's state as stored in Redis, in the shape of their
pure models' state.

The sources' contract tests and the chaos run compare these with :class:`models.fbt.BasketTracker`,
:class:`models.usercf.UserCF` and :class:`models.followees.FolloweeItems` fed the same events.
"""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio as aioredis

from models.fbt import BasketTracker
from models.followees import FolloweeItems
from streams.keys import Keys, decoded
from streams.sources.fbt import decode_baskets
from streams.sources.followees import decode_items
from streams.sources.usercf import parse_row


async def _zset(client: aioredis.Redis, key: Any) -> list[tuple[str, float]]:
    """A sorted set's members and scores, lowest first."""
    members = await client.zrange(key, 0, -1, withscores=True)
    return [(decoded(m), float(s)) for m, s in cast(list[tuple[bytes, float]], members)]


async def fbt_state(client: aioredis.Redis, keys: Keys) -> dict[str, Any]:
    """FBT's shared counts and baskets as stored (a missing total reads as 0)."""
    pairs: dict[str, dict[str, float]] = {}
    users: dict[str, list[list[Any]]] = {}
    async for raw in client.scan_iter(match=f"{keys.prefix}*"):
        _, entity, field = keys.parse(decoded(raw))
        if field == "fbt_pairs":
            pairs[entity] = dict(await _zset(client, raw))
        elif field == "fbt_baskets":
            baskets = decode_baskets(await client.get(raw))
            users[entity] = [[b.items, b.first_ts, b.last_ts] for b in baskets]
    counts = await client.hgetall(keys.global_("fbt_items"))
    return {
        "baskets": int(await client.get(keys.global_("fbt_total")) or 0),
        "item_counts": {decoded(i): int(n) for i, n in counts.items()},
        "pair_counts": pairs,
        "users": users,
    }


def tracker_state(bt: BasketTracker) -> dict[str, Any]:
    """The pure model's state in the shape of :func:`fbt_state`."""
    snap = bt.snapshot()
    users = cast(dict[str, list[Any]], snap["users"])
    return {**snap, "users": {u: b for u, b in users.items() if b}}


async def usercf_state(client: aioredis.Redis, keys: Keys) -> dict[str, Any]:
    """User-CF's rows (user -> item -> affinity) and index (item -> user -> time). The time
    a row keeps with each entry must be its index score (unless the index evicted the entry):
    a row that disagrees raises."""
    items: dict[str, dict[str, float]] = {}
    times: dict[str, dict[str, float]] = {}
    index: dict[str, dict[str, float]] = {}
    async for raw in client.scan_iter(match=f"{keys.prefix}*"):
        _, entity, field = keys.parse(decoded(raw))
        if field == "ucf_row":
            row = parse_row(await client.get(raw))
            items[entity] = {i: a for i, (a, _ts) in row.items()}
            times[entity] = {i: ts for i, (_a, ts) in row.items()}
        elif field == "ucf_users":
            index[entity] = dict(await _zset(client, raw))
    for user, row_times in times.items():
        for item, ts in row_times.items():
            if index.get(item, {}).get(user, ts) != ts:
                raise AssertionError("a user-CF row's time differs from its index score")
    return {"items": items, "index": index}


async def followees_state(client: aioredis.Redis, keys: Keys) -> dict[str, Any]:
    """The followees source's edges and items (user -> …, empty ones left out), in the shape
    of :func:`followees_model_state`. An edge without its reverse index entry (or the
    reverse) raises."""
    found: dict[str, dict[str, Any]] = {"following": {}, "latest": {}}
    followers: dict[str, set[str]] = {}
    async for raw in client.scan_iter(match=f"{keys.prefix}*"):
        _, entity, field = keys.parse(decoded(raw))
        if field == "fol_following":
            found["following"][entity] = dict(await _zset(client, raw))
        elif field == "fol_items":
            found["latest"][entity] = decode_items(await client.get(raw))
        elif field == "fol_followers":
            followers[entity] = {decoded(m) for m in await client.smembers(raw)}
    edges = {(u, f) for u, row in found["following"].items() for f in row}
    if edges != {(u, f) for f, users in followers.items() for u in users}:
        raise AssertionError("the followees source's reverse index differs from its edges")
    return found


def followees_model_state(model: FolloweeItems) -> dict[str, Any]:
    """The pure model's state in the shape of :func:`followees_state`."""
    return {
        table: {u: dict(v) for u, v in getattr(model, table).items() if v}
        for table in ("following", "latest")
    }
