"""Live merchant figures: per-merchant event counts and recommendation exposure in Redis.

Why counters and not a query over history: the worker keeps no event log, and a merchant page
must answer in milliseconds. Each applied batch adds its item events to one hash per merchant
and time bucket (``Keys.merchant_counts``: type -> count, ``exposure`` -> list slots); a window
is the sum of its buckets (:mod:`models.funnel`). Keys expire after ``retention_s``.

The counts are anonymous (merchant, type, bucket: never a user id), so erasure has nothing to
remove here. Item -> merchant comes from the catalog record the store keeps
(``i:{item}:meta`` field ``merchant_id``), cached per worker like item categories.

Each count is added once. Only fresh events are counted (the pipeline passes the deduplicated
ones), so a redelivered batch counts nothing twice. The worker waits a Redis outage out and
adds the same counts again (streams/pipeline/: a bug's error is logged and those counts
lost, never the batch); an attempt whose answer was lost may have been applied, so each
attempt of one batch carries the batch's token: a script adds a bucket's counts only with the
token's marker field, set at once, and the marker is deleted once the answer arrived (by the
next call, in its own pipeline; readers skip markers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from models.events import Event
from models.funnel import COUNTED_TYPES, bucket_of, sum_counts, window_buckets
from streams.keys import Keys, decoded
from streams.runtime.itemcache import item_meta_cache
from streams.store.lua import Lua, command, run

#: Field of a merchant bucket counting its items' recommendation slots.
EXPOSURE = "exposure"
#: Item -> merchant cache (entries for unknown items live briefly: the record may be on its way).
MERCHANT_CACHE_SIZE = 200_000
MERCHANT_CACHE_TTL_S = 300.0
UNKNOWN_MERCHANT_TTL_S = 5.0
#: Fields of a merchant bucket that start with this mark one attempt's counts as added.
MARKER = "~"

#: Adds one bucket's counts unless this attempt's marker says they were added already.
#: KEYS[1]: the bucket; ARGV: the marker field, seconds to keep the bucket, then field, count.
_ADD_ONCE = Lua("""
if redis.call('HSETNX', KEYS[1], ARGV[1], 1) == 0 then return 0 end
for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
""")


@dataclass(frozen=True, slots=True)
class MerchantCounts:
    """A merchant's summed counts over a window, and every merchant's exposure in it."""

    counts: dict[str, int]  # event type -> count, plus "exposure" -> slots
    total_exposure: int  # published recommendation slots, every merchant
    buckets: int  # how many buckets were summed


class MerchantAnalytics:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys | None = None,
        *,
        bucket_s: float = 60.0,
        retention_s: float = 86_400.0,
    ) -> None:
        self.client = client
        self.keys = keys or Keys()
        self.bucket_s = bucket_s
        self.retention_s = retention_s
        #: (bucket, marker) of calls whose answer arrived: the next call deletes them.
        self._added: list[tuple[str, str]] = []
        self._merchants = item_meta_cache(
            client,
            self.keys,
            ("merchant_id",),
            size=MERCHANT_CACHE_SIZE,
            ttl_s=MERCHANT_CACHE_TTL_S,
            unknown_ttl_s=UNKNOWN_MERCHANT_TTL_S,
        )

    async def merchants(self, item_ids: Collection[str]) -> dict[str, str]:
        """Merchant of each item ("" when the catalog does not name one)."""
        return {i: m for i, (m,) in (await self._merchants.get(item_ids)).items()}

    async def record(
        self, events: Sequence[Event], exposed: Sequence[str], now: float, token: str
    ) -> None:
        """Count a batch's fresh item events and its published recommendation slots (per
        merchant and all of them), once per ``token``: one round trip, plus one for merchants
        not cached. The markers of the last call whose answer arrived are deleted in the same
        pipeline (the events' counts and the slots', each with its markers' deletion, were
        four round trips a batch)."""
        counted = [
            (e.item_id, e.type.value) for e in events if e.item_id and e.type.value in COUNTED_TYPES
        ]
        increments: Counter[tuple[str, str]] = Counter()
        if counted or exposed:
            merchants = await self.merchants({i for i, _ in counted} | set(exposed))
            slots = [(item_id, EXPOSURE) for item_id in exposed]
            increments.update((m, field) for i, field in counted + slots if (m := merchants[i]))
            if exposed:
                increments[("", EXPOSURE)] = len(exposed)
        await self._increment(increments, now, token)

    async def _increment(
        self, increments: Mapping[tuple[str, str], int], now: float, token: str
    ) -> None:
        stale, self._added = self._added, []
        if not increments and not stale:
            return
        bucket = bucket_of(now, self.bucket_s)
        ttl = int(self.retention_s + 2 * self.bucket_s)
        by_key: dict[str, list[str | int]] = {}
        for (merchant, field), count in increments.items():
            by_key.setdefault(self.keys.merchant_counts(bucket, merchant), []).extend(
                (field, count)
            )
        marker = MARKER + token
        calls = [_ADD_ONCE.call(k, [marker, ttl, *f]) for k, f in by_key.items()]
        calls += [command("HDEL", key, field) for key, field in stale]
        try:
            await run(self.client, calls)
        except BaseException:  # an outage: the next call deletes them (or they expire)
            self._added = stale + self._added
            raise
        # Added: no attempt of this token can come again, so the next call deletes them.
        self._added.extend((key, marker) for key in by_key)

    async def window(self, merchant_id: str, now: float, window_s: float) -> MerchantCounts:
        """The merchant's counts over the last ``window_s`` (one pipelined round trip)."""
        buckets = window_buckets(now, min(window_s, self.retention_s), self.bucket_s)
        pipe = self.client.pipeline(transaction=False)
        for bucket in buckets:
            pipe.hgetall(self.keys.merchant_counts(bucket, merchant_id))
            pipe.hget(self.keys.merchant_counts(bucket, ""), EXPOSURE)
        replies: list[Any] = await pipe.execute()
        own = [
            {field: int(v) for k, v in h.items() if not (field := decoded(k)).startswith(MARKER)}
            for h in replies[0::2]
        ]
        total = sum(int(v) for v in replies[1::2] if v is not None)
        return MerchantCounts(sum_counts(own), total, len(buckets))
