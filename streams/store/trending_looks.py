"""The worker's cache of trending buckets, so that a trending look reads only what changed.

A look covers two windows' worth of buckets per scope (24 buckets a scope at the defaults);
reading them all twice a second was most of the trending publisher's time. Each bucket is kept
by every partition in its own slot (its users' events, streams/keys.py) and read as the sum of
the partitions' shares. Buckets that no longer fill are kept as last read; those still filling
are kept with their version (each share's counts hash's "" field, bumped by every state step
that changes it) and read again only when one moved. A partition keeps its shares' versions of
a bucket in one hash by scope (``Keys.trending_versions``), so checking them costs a command
per filling bucket and partition, not per scope too; the shares to read are read in one call a
partition (streams/lua/trending.lua). Closed buckets' sums are kept per scope
(:func:`models.trending.settled_sums`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import redis.asyncio as aioredis

from models.trending import SettledSums, Tally, TrendingList, settled_sums, summarise_buckets
from streams.keys import Keys, decoded
from streams.store.interface import TrendingParams
from streams.store.lua import Lua, lua_text, run

#: Trending buckets this recent may still fill: a look reads them again if their version moved;
#: older ones are kept in memory as last read. A bucket is keyed by broker arrival time, so it
#: fills only while the worker is less than this many buckets behind the broker.
TRENDING_OPEN_BUCKETS = 5

#: Reads a partition's shares in one call (streams/lua/trending.lua).
SHARES = Lua(lua_text("trending.lua"))

_Bucket = tuple[str, int]  # (scope, bucket)
#: A bucket's version: each partition's share's version, None where it has no share.
_Version = tuple[bytes | None, ...]


class TrendingLooks:
    """The buckets read so far, their versions and the scopes' settled sums (one worker's)."""

    def __init__(self, client: aioredis.Redis, keys: Keys, params: TrendingParams) -> None:
        self.client = client
        self.keys = keys
        self.params = params
        # (scope, bucket) -> (tallies, newest arrival) of the trending buckets read: those that
        # no longer fill (see TRENDING_OPEN_BUCKETS) and those still filling whose version is
        # known; dropped when they leave the window or on erasure.
        self.held: dict[_Bucket, tuple[dict[str, Tally], float | None]] = {}
        # (scope, bucket) -> version of a bucket read while it was filling: checked before it
        # is reused.
        self.versions: dict[_Bucket, _Version] = {}
        # scope -> the sums of its closed buckets at the current clock (models.trending).
        self.settled: dict[str, SettledSums] = {}

    def clear(self) -> None:
        """Forget everything read (an erasure subtracts from buckets of the past too)."""
        self.held.clear()
        self.versions.clear()
        self.settled.clear()

    async def look(self, scopes: Sequence[str], now: float, k: int) -> list[TrendingList]:
        """Each scope's top ``k`` at ``now``: one pipelined round trip for the versions of the
        filling buckets held, one for the buckets not held (or changed)."""
        t = self.params
        clock = math.floor(now / t.bucket_s)
        buckets = range(clock - 2 * t.span + 1, clock + 1)
        settled = clock - TRENDING_OPEN_BUCKETS  # buckets up to here no longer fill
        for key in [key for key in self.held if key[1] < buckets.start]:
            del self.held[key]  # out of every window now
            self.versions.pop(key, None)
        await self._recheck(scopes, buckets, settled)
        await self._read(scopes, buckets, settled)
        results = [self._summarise(scope, buckets, now, k, settled) for scope in scopes]
        for scope in [scope for scope, sums in self.settled.items() if sums.clock != clock]:
            del self.settled[scope]  # a scope not looked at this bucket: summed again if asked
        return results

    async def _recheck(self, scopes: Sequence[str], buckets: range, settled: int) -> None:
        """Drop the buckets read while they were filling whose version moved (or that appeared
        since they were read absent); stop checking those settled as read."""
        held, versions, partitions = self.held, self.versions, range(self.keys.partitions)
        check: dict[int, list[str]] = {}  # bucket -> its scopes to check
        for scope in scopes:
            for bucket in buckets:
                if (scope, bucket) in versions:
                    check.setdefault(bucket, []).append(scope)
        if not check:
            return
        pipe = self.client.pipeline(transaction=False)
        for bucket, bucket_scopes in check.items():
            for p in partitions:  # one command a share for all its scopes (streams/lua/state.lua)
                pipe.hmget(self.keys.trending_versions(bucket, p), bucket_scopes)
        replies = iter(await pipe.execute())
        for bucket, bucket_scopes in check.items():
            found = [next(replies) for _ in partitions]
            for n, scope in enumerate(bucket_scopes):
                key = (scope, bucket)
                changed = tuple(share[n] for share in found) != versions[key]
                if changed:
                    del held[key]  # read again
                if changed or bucket <= settled:
                    del versions[key]  # settled as read: never checked again

    async def _read(self, scopes: Sequence[str], buckets: range, settled: int) -> None:
        """Read every bucket not held, keeping the version of those still filling."""
        held, partitions, keys = self.held, range(self.keys.partitions), self.keys
        wanted = [
            (scope, bucket) for scope in scopes for bucket in buckets if (scope, bucket) not in held
        ]
        if not wanted:
            return
        calls = []
        for p in partitions:  # one call a partition: each share's weights, then its counts
            names = [
                name
                for scope, bucket in wanted
                for name in (
                    keys.trending(bucket, scope, p),
                    keys.trending(bucket, scope, p, counts=True),
                )
            ]
            calls.append(SHARES.call(names[0], names))
        shares = [[_fields(flat) for flat in reply] for reply in await run(self.client, calls)]
        for at, (scope, bucket) in enumerate(wanted):
            items: dict[str, Tally] = {}
            newest: float | None = None
            version: list[bytes | None] = []
            for share in shares:  # the partitions' shares, summed in partition order
                weights, counts = share[2 * at], share[2 * at + 1]
                version.append(counts.pop(b"", None))  # bumped by every step changing it
                for raw, n in counts.items():
                    was = items.get(item := decoded(raw), Tally())
                    items[item] = Tally(
                        was.weight + float(weights.get(raw, 0.0)), was.events + int(n)
                    )
                if b"" in weights:
                    newest = max(newest or float("-inf"), float(weights[b""]))
            held[scope, bucket] = (items, newest)
            if bucket > settled:
                self.versions[scope, bucket] = tuple(version)

    def _summarise(
        self, scope: str, buckets: range, now: float, k: int, settled: int
    ) -> TrendingList:
        """One scope's list from the buckets held; its filling buckets of no known version
        are let go (read again next time)."""
        t, held, clock = self.params, self.held, buckets.stop - 1
        tallies: dict[int, dict[str, Tally]] = {}
        newest_of: dict[int, float] = {}
        for bucket in buckets:
            # (Missing only if a later look pruned it meanwhile: it just left the window.)
            items, newest = held.get((scope, bucket), ({}, None))
            if items:
                tallies[bucket] = items
            if newest is not None:
                newest_of[bucket] = newest
        for bucket in range(settled + 1, clock + 1):
            if (scope, bucket) not in self.versions:  # filling, of no known version
                held.pop((scope, bucket), None)  # read again next time
        sums = self.settled.get(scope)
        if sums is None or (sums.clock, sums.settled) != (clock, settled):
            sums = settled_sums(tallies, clock=clock, span=t.span, settled=settled)
            self.settled[scope] = sums
        return summarise_buckets(
            scope,
            tallies,
            newest_of,
            now=now,
            window_s=t.window_s,
            bucket_s=t.bucket_s,
            k=k,
            settled=sums,
        )


def _fields(flat: list[bytes]) -> dict[bytes, bytes]:
    """A hash from the script's flat reply (field, value, field, value, ...)."""
    pairs = iter(flat)
    return dict(zip(pairs, pairs, strict=False))
