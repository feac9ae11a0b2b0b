"""Every socialrec key in Redis parsed into the shape of ``MemoryState.snapshot()``.

The store contract suite compares it with the in-memory reference's snapshot. A key that does
not parse raises, which is how tests prove no state hides outside the documented key layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import redis.asyncio as aioredis

from streams.keys import SOURCE_FIELDS, Keys, decoded

#: Keys outside MemoryState's snapshot: catalog metadata, trending windows and their erasure log,
#: and the recommendation sources' state.
NOT_IN_SNAPSHOT = frozenset(
    {
        "meta",
        "trend_log",
        "trending_changed",
        "recommendations",
        "offsets",
        "relay",
        "relayed",
        "version",
        *SOURCE_FIELDS,
    }
)

_USER_DEFAULTS: Mapping[str, type] = {
    "history": dict,
    "affinity": dict,
    "seen_events": dict,
    "bought": set,
    "hidden": set,
    "following": set,
    "followers": set,
    "inbox": dict,
    "outbox": set,
    "senders": set,
    "actions": dict,
    "seen_items": dict,
}


async def redis_snapshot(client: aioredis.Redis, keys: Keys) -> dict[str, Any]:
    """The snapshot of every key under ``keys.prefix`` (trending and NOT_IN_SNAPSHOT aside)."""
    users: dict[str, dict[str, Any]] = {}
    # Popularity and its landmark per partition (its number as text), as MemoryState's.
    result: dict[str, Any] = {"users": users, "popularity": {}, "landmark": {}}
    async for raw_key in client.scan_iter(match=f"{keys.prefix}*", count=1000):
        key = decoded(raw_key)
        scope, entity, field = keys.parse(key)
        if scope == "trending" or field in NOT_IN_SNAPSHOT:
            continue  # compared by their own contract tests, not part of MemoryState
        value = await _read_key(client, key, text_values=field == "seen_events")
        if scope == "user":
            users.setdefault(entity, {}).update({field: value})
        elif field == "landmark":
            result["landmark"][entity] = float(value)
        elif scope == "partition":
            result[field][entity] = value
        else:
            result[field] = value
    for user in users.values():
        for field, empty in _USER_DEFAULTS.items():
            user.setdefault(field, empty())
    return result


async def _read_key(client: aioredis.Redis, key: str, *, text_values: bool = False) -> Any:
    kind = decoded(await client.type(key))
    if kind == "hash" and text_values:
        return {decoded(k): decoded(v) for k, v in (await client.hgetall(key)).items()}
    if kind == "zset":
        members = await client.zrange(key, 0, -1, withscores=True)
        return {decoded(m): float(s) for m, s in cast(list[tuple[bytes, float]], members)}
    if kind == "hash":
        return {decoded(k): float(v) for k, v in (await client.hgetall(key)).items()}
    if kind == "set":
        return {decoded(m) for m in await client.smembers(key)}
    value = await client.get(key)
    return "" if value is None else decoded(value)
