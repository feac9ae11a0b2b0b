"""The per-item cache of values read from Redis (streams/runtime/itemcache.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from streams.runtime.itemcache import ItemCache


async def test_a_value_read_while_its_item_was_dropped_is_not_kept() -> None:
    version = {"a": 1}
    cache: ItemCache[int] = ItemCache(lambda ids: fetch(ids), size=10, ttl_s=60.0)
    reading, dropped = asyncio.Event(), asyncio.Event()

    async def fetch(ids: Sequence[str]) -> list[int]:
        seen = [version[i] for i in ids]
        reading.set()
        await dropped.wait()  # the item changes and is dropped while this read is out
        return seen

    read = asyncio.ensure_future(cache.get(["a"]))
    await reading.wait()
    version["a"] = 2
    cache.drop(["a"])
    dropped.set()
    assert await read == {"a": 1}  # the call gets what it read ...
    assert cache.current("a") is None  # ... but the cache does not keep it
    assert await cache.get(["a"]) == {"a": 2}
    assert cache.current("a") == 2


async def test_expired_values_are_read_again_and_none_kept_without_a_ttl() -> None:
    clock, reads = [0.0], []

    async def fetch(ids: Sequence[str]) -> list[str]:
        reads.append(list(ids))
        return [f"{i}{len(reads)}" for i in ids]

    cache = ItemCache(fetch, size=10, ttl_s=5.0, clock=lambda: clock[0])
    assert await cache.get(["a"]) == {"a": "a1"}
    clock[0] = 4.9
    assert cache.current("a") == "a1"
    clock[0] = 5.0
    assert cache.current("a") is None
    assert await cache.get(["a"]) == {"a": "a2"}
    none = ItemCache(fetch, size=10, ttl_s=0.0, clock=lambda: clock[0])
    await none.get(["b"])
    assert none.current("b") is None
    assert len(none) == 0
