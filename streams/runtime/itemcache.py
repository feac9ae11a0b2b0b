"""Per-item values read from Redis, cached in the worker for a few seconds or minutes.

:class:`ItemCache` is the mechanism: hits are local, misses are read in one pipelined round
trip, an entry lives its time to live and the oldest entries go first beyond ``size``. Two
uses, each a function below: a field of the catalog records (:func:`item_meta_cache`) and the
item-CF neighbour lists the learner writes (:func:`neighbour_cache`).

>>> import asyncio
>>> async def fetch(ids):
...     calls.append(list(ids))
...     return [i.upper() for i in ids]
>>> calls, clock = [], [0.0]
>>> cache = ItemCache(fetch, size=10, ttl_s=1.0, clock=lambda: clock[0])
>>> asyncio.run(cache.get(["a", "b"]))
{'a': 'A', 'b': 'B'}
>>> _ = asyncio.run(cache.get(["a", "c"])); calls
[['a', 'b'], ['c']]
>>> clock[0] = 2.0; _ = asyncio.run(cache.get(["a"])); calls[-1]
['a']
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Generic, TypeVar

import redis.asyncio as aioredis

from streams.keys import Keys, best_pairs, decoded, queue_best

V = TypeVar("V")

#: Neighbour lists as the ranking reads them: (item, similarity), best first.
Neighbours = tuple[tuple[str, float], ...]


class ItemCache(Generic[V]):
    """Values per item id, read through ``fetch`` (one call per batch of misses)."""

    def __init__(
        self,
        fetch: Callable[[Sequence[str]], Awaitable[Sequence[V]]],
        *,
        size: int,
        ttl_s: float,
        ttl_of: Callable[[V], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``ttl_of``: a value's own time to live, where it differs (e.g. shorter for "not
        known yet", so a late record is picked up soon)."""
        self.fetch, self.size, self.ttl_s, self.clock = fetch, size, ttl_s, clock
        self.ttl_of = ttl_of or (lambda _value: ttl_s)
        self._entries: OrderedDict[str, tuple[V, float]] = OrderedDict()  # -> (value, expiry)
        self._drops = 0  # how many drop() calls so far: a fetch that saw one keeps nothing

    async def get(self, item_ids: Collection[str]) -> dict[str, V]:
        now = self.clock()
        found: dict[str, V] = {}
        missing = []
        for item_id in item_ids:
            cached = self._entries.get(item_id)
            if cached is not None and cached[1] > now:
                found[item_id] = cached[0]
            else:
                missing.append(item_id)
        if missing:
            drops = self._drops
            values = await self.fetch(missing)
            # A value read while an item was dropped may be from before its change: it answers
            # this call but is not kept.
            keep = drops == self._drops
            for item_id, value in zip(missing, values, strict=True):
                found[item_id] = value
                if keep:
                    self._entries[item_id] = (value, now + self.ttl_of(value))
                    self._entries.move_to_end(item_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return found

    def drop(self, item_ids: Collection[str]) -> None:
        """Forget these items (their records changed or were deleted)."""
        self._drops += 1
        for item_id in item_ids:
            self._entries.pop(item_id, None)


def item_meta_cache(
    client: aioredis.Redis,
    keys: Keys,
    fields: tuple[str, ...],
    *,
    size: int,
    ttl_s: float,
    unknown_ttl_s: float | None = None,
) -> ItemCache[tuple[str, ...]]:
    """Fields of the catalog records (``i:<item>:meta``; "" where the catalog has none; an
    item the catalog does not know is kept ``unknown_ttl_s``)."""

    async def fetch(item_ids: Sequence[str]) -> list[tuple[str, ...]]:
        pipe = client.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.hmget(keys.item(item_id, "meta"), fields)
        rows = await pipe.execute()
        return [tuple("" if raw is None else decoded(raw) for raw in row) for row in rows]

    unknown = ttl_s if unknown_ttl_s is None else unknown_ttl_s
    return ItemCache(
        fetch, size=size, ttl_s=ttl_s, ttl_of=lambda value: ttl_s if any(value) else unknown
    )


def neighbour_cache(
    client: aioredis.Redis, keys: Keys, count: int, *, size: int, ttl_s: float
) -> ItemCache[Neighbours]:
    """The ``count`` best of each item's neighbour list (``i:<item>:sim``). The learner
    rewrites lists all the time, and the lists a user's recent items give are mostly the
    popular items' ones, read again by many users within seconds: reading and decoding them
    in the state script for every list was a large part of Redis's and the worker's time."""

    async def fetch(item_ids: Sequence[str]) -> list[Neighbours]:
        pipe = client.pipeline(transaction=False)
        for item_id in item_ids:
            queue_best(pipe, keys.item(item_id, "sim"), count)
        return [tuple(best_pairs(row)) for row in await pipe.execute()]

    return ItemCache(fetch, size=size, ttl_s=ttl_s)
