"""The worker's cache of trending buckets, so that a trending look reads only what changed.

A look covers two windows' worth of buckets per scope (24 buckets a scope at the defaults);
reading them all twice a second was most of the trending publisher's time. Each bucket is kept
by every partition in its own slot (its users' events, streams/keys.py) and read as the sum of
the partitions' shares. Buckets that no longer fill are kept as last read; those still filling
are kept share by share with their versions (each share's counts hash's "" field, bumped by
every state step that changes it), and a share is read again only when its version moved. A
partition keeps its shares' versions of a bucket in one hash by scope
(``Keys.trending_versions``), so checking them costs a command per filling bucket and
partition, not per scope too; the shares to read are read in one call a partition
(streams/lua/trending.lua). Closed buckets' sums are kept per scope
(:func:`models.trending.settled_sums`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import redis.asyncio as aioredis

from models.trending import SettledSums, Tally, TrendingList, settled_sums, summarise_buckets
from streams.keys import Keys, decoded
from streams.store.interface import TrendingParams
from streams.store.lua import Lua, hash_reply, lua_text, run

#: Trending buckets this recent may still fill: a look reads them again if their version moved;
#: older ones are kept in memory as last read. A bucket is keyed by broker arrival time, so it
#: fills only while the worker is less than this many buckets behind the broker.
TRENDING_OPEN_BUCKETS = 5

#: Reads a partition's shares in one call (streams/lua/trending.lua).
SHARES = Lua(lua_text("trending.lua"))

_Bucket = tuple[str, int]  # (scope, bucket)
#: One partition's share of a bucket as read: its version (the counts hash's "" field, None
#: where the partition has no share), item -> tally, and its newest arrival.
_Share = tuple[bytes | None, dict[str, Tally], float | None]


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
        # (scope, bucket) -> each partition's share of a bucket read while it was filling
        # (None: to read again): their versions are checked before the bucket is reused, and
        # only the shares whose version moved are read again.
        self.shares: dict[_Bucket, list[_Share | None]] = {}
        # scope -> the sums of its closed buckets at the current clock (models.trending).
        self.settled: dict[str, SettledSums] = {}

    def clear(self) -> None:
        """Forget everything read (an erasure subtracts from buckets of the past too)."""
        self.held.clear()
        self.shares.clear()
        self.settled.clear()

    async def look(self, scopes: Sequence[str], now: float, k: int) -> list[TrendingList]:
        """Each scope's top ``k`` at ``now``: one pipelined round trip for the versions of the
        filling buckets held, one for the buckets not held (or changed)."""
        t = self.params
        clock = math.floor(now / t.bucket_s)
        buckets = range(clock - 2 * t.span + 1, clock + 1)
        settled = clock - TRENDING_OPEN_BUCKETS  # buckets up to here no longer fill
        for kept in (self.held, self.shares):
            for key in [key for key in kept if key[1] < buckets.start]:
                del kept[key]  # out of every window now (a bucket's shares may outlive its sum)
        await self._recheck(scopes, buckets, settled)
        await self._read(scopes, buckets, settled)
        results = [self._summarise(scope, buckets, now, k, settled) for scope in scopes]
        for scope in [scope for scope, sums in self.settled.items() if sums.clock != clock]:
            del self.settled[scope]  # a scope not looked at this bucket: summed again if asked
        return results

    async def _recheck(self, scopes: Sequence[str], buckets: range, settled: int) -> None:
        """Mark the shares whose version moved since they were read (or that appeared since
        they were read absent) to be read again, and their buckets to be summed again; stop
        checking the buckets settled as read."""
        held, shares, partitions = self.held, self.shares, range(self.keys.partitions)
        check: dict[int, list[str]] = {}  # bucket -> its scopes to check
        for scope in scopes:
            for bucket in buckets:
                if (scope, bucket) in shares:
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
                key, changed = (scope, bucket), False
                kept = shares[key]
                for p, versions in enumerate(found):
                    share = kept[p]
                    if share is None or share[0] != versions[n]:
                        kept[p] = None  # read again
                        changed = True
                if changed:
                    held.pop(key, None)  # summed again once read
                elif bucket <= settled:
                    del shares[key]  # settled as read: never checked again

    async def _read(self, scopes: Sequence[str], buckets: range, settled: int) -> None:
        """Sum every bucket not held, reading the shares not kept (all of a bucket's, or
        those whose version moved); the shares of buckets still filling are kept."""
        held, shares, keys = self.held, self.shares, self.keys
        partitions = range(keys.partitions)
        wanted = [
            (scope, bucket) for scope in scopes for bucket in buckets if (scope, bucket) not in held
        ]
        if not wanted:
            return
        stale: list[list[_Bucket]] = [[] for _ in partitions]  # per partition, shares to read
        for key in wanted:
            kept = shares.setdefault(key, [None] * len(partitions))
            for p in partitions:
                if kept[p] is None:
                    stale[p].append(key)
        calls, asked = [], [p for p in partitions if stale[p]]
        for p in asked:  # one call a partition: each share's weights, then its counts
            names = [
                name
                for scope, bucket in stale[p]
                for name in (
                    keys.trending(bucket, scope, p),
                    keys.trending(bucket, scope, p, counts=True),
                )
            ]
            calls.append(SHARES.call(names[0], names))
        for p, reply in zip(asked, await run(self.client, calls) if calls else [], strict=True):
            for at, key in enumerate(stale[p]):
                shares[key][p] = _share(hash_reply(reply[2 * at]), hash_reply(reply[2 * at + 1]))
        for key in wanted:
            held[key] = _summed(shares[key])
            if key[1] <= settled:
                del shares[key]  # settled: held as summed, never read again

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
            if (scope, bucket) not in self.shares:  # filling, of no known version
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


def _share(weights: dict[bytes, bytes], counts: dict[bytes, bytes]) -> _Share:
    """A partition's share from its two hashes (field "" holds the version, the newest)."""
    version, newest = counts.pop(b"", None), weights.get(b"")
    items = {decoded(raw): Tally(float(weights.get(raw, 0.0)), int(n)) for raw, n in counts.items()}
    return version, items, None if newest is None else float(newest)


def _summed(shares: list[_Share | None]) -> tuple[dict[str, Tally], float | None]:
    """A bucket's tallies and newest arrival: its partitions' shares summed in partition
    order (each read, none None)."""
    items: dict[str, Tally] = {}
    newest: float | None = None
    for share in shares:
        assert share is not None, "every share is read before its bucket is summed"
        _, share_items, share_newest = share
        for item, tally in share_items.items():
            was = items.get(item)
            items[item] = (
                tally
                if was is None
                else Tally(was.weight + tally.weight, was.events + tally.events)
            )
        if share_newest is not None:
            newest = share_newest if newest is None else max(newest, share_newest)
    return items, newest
