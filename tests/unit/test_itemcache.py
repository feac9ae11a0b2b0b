"""The per-item cache of values read from Redis (streams/runtime/itemcache.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from streams.runtime.itemcache import ItemCache


async def test_a_value_read_while_its_item_was_dropped_is_not_kept() -> None:
    version, reads = {"a": 1}, []
    reading, dropped = asyncio.Event(), asyncio.Event()

    async def fetch(ids: Sequence[str]) -> list[int]:
        reads.append(list(ids))
        seen = [version[i] for i in ids]
        if len(reads) == 1:
            reading.set()
            await dropped.wait()  # the item changes and is dropped while this read is out
        return seen

    cache = ItemCache(fetch, size=10, ttl_s=60.0)
    read = asyncio.ensure_future(cache.get(["a"]))
    await reading.wait()
    version["a"] = 2
    cache.drop(["a"])
    dropped.set()
    assert await read == {"a": 1}  # the call gets what it read ...
    assert await cache.get(["a"]) == {"a": 2}  # ... but the cache did not keep it
    assert await cache.get(["a"]) == {"a": 2}
    assert reads == [["a"], ["a"]]  # kept since
