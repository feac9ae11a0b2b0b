"""Where the recommender's state lives: one interface, two implementations.

:class:`RedisStore` is production: each micro-batch is one ``EVALSHA`` of streams/lua/state.lua
(one network round trip) that deduplicates by event id, applies every event atomically and
reads back what scoring needs for the users it touched. :class:`MemoryStore` wraps the pure
reference (:class:`models.state.MemoryState`) for unit tests and offline evaluation. The store
contract suite (tests/contract) runs the same checks against both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Protocol, cast

import orjson
import redis.asyncio as aioredis

from models.content import CatalogRecord
from models.events import Event
from models.state import (
    ErasureReport,
    MemoryState,
    Outcome,
    PopularView,
    Similar,
    SocialProof,
    StateParams,
    UserView,
)
from models.trending import (
    SettledSums,
    Tally,
    TrendingList,
    TrendingWindows,
    scopes_for,
    settled_sums,
    summarise_buckets,
)
from streams.itemcache import item_meta_cache, neighbour_cache
from streams.keys import SOURCE_FIELDS, Keys, decoded


@dataclass(frozen=True, slots=True)
class ReadParams:
    """How much to read back per affected user (bounded so scoring cost is bounded)."""

    recent_items: int = 20
    neighbours: int = 20
    popular: int = 100


#: What the learner reads of a user: only what excludes items from their candidates.
EXCLUSIONS_ONLY = ReadParams(recent_items=0, neighbours=0, popular=0)


@dataclass(frozen=True, slots=True)
class TrendingParams:
    """Trending windows: counts over ``window_s`` in buckets of ``bucket_s`` (by arrival)."""

    window_s: float = 60.0
    bucket_s: float = 1.0

    @property
    def span(self) -> int:
        return round(self.window_s / self.bucket_s)


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """A batch's records of one partition, and what the consumer knows of that partition.

    The store keeps, per partition, the last offset whose event its state holds (*applied*,
    written in the same atomic step as the state) and the last offset whose lists Kafka
    confirmed (*published*, the previous batch's, carried by the next one).
    """

    partition: str  # "events:3"
    first: int
    last: int
    expected: int  # the applied offset this consumer last saw stored (-1: not known)
    published: int  # lists confirmed up to here (-1: none yet)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a partition's state is: its applied and published offsets (-1: none)."""

    applied: int
    published: int


@dataclass(frozen=True, slots=True)
class BatchResult:
    outcomes: list[Outcome]  # one per event, in order
    views: dict[str, UserView]  # users whose item events were applied, first-seen order
    popular: PopularView
    #: Partitions whose stored state is behind what the consumer expected (the store lost
    #: writes: a Redis restart without its last second). Nothing was applied; the consumer
    #: goes back to each one's published offset + 1.
    rewinds: dict[str, Position] = field(default_factory=dict)


def check_offsets(
    stored: Mapping[str, Position], offsets: Sequence[OffsetRange]
) -> dict[str, Position]:
    """The partitions whose stored applied offset is behind what the consumer expected.

    >>> r = OffsetRange("events:0", first=11, last=20, expected=10, published=10)
    >>> check_offsets({"events:0": Position(10, 10)}, [r])
    {}
    >>> check_offsets({"events:0": Position(7, 5)}, [r])
    {'events:0': Position(applied=7, published=5)}
    >>> check_offsets({}, [r])  # the store lost everything
    {'events:0': Position(applied=-1, published=-1)}
    """
    behind = {}
    for r in offsets:
        position = stored.get(r.partition, Position(-1, -1))
        if r.expected >= 0 and position.applied < r.expected:
            behind[r.partition] = position
    return behind


def erased_in_flight(event: Event, arrival: float, marks: Mapping[str, float]) -> bool:
    """Whether ``event`` (reached Kafka at ``arrival``) is of, or aimed at, a user erased at
    or after that moment (``marks``: user -> erasure time). Such an event was in flight when
    the erasure was honoured: applying it would bring back state the receipt said was gone.
    Redis's twin is ``erased_since`` in streams/lua/state.lua.

    >>> from models.events import EventType
    >>> e = Event("s1", EventType.SHARE, "bob", 1.0, item_id="b", target_user_id="ann")
    >>> erased_in_flight(e, 5.0, {"ann": 6.0}), erased_in_flight(e, 7.0, {"ann": 6.0})
    (True, False)
    """
    return any(
        (at := marks.get(user)) is not None and arrival <= at
        for user in (event.user_id, event.target_user_id)
        if user
    )


def advance(stored: dict[str, Position], offsets: Sequence[OffsetRange]) -> None:
    """Record a batch's offsets (never moving a partition backwards)."""
    for r in offsets:
        was = stored.get(r.partition, Position(-1, -1))
        stored[r.partition] = Position(max(was.applied, r.last), max(was.published, r.published))


#: KEYS: the offsets hash; ARGV: partition, offset, ...: each published offset moves forward,
#: never past the applied one, and only for partitions with an applied offset.
_MARK_PUBLISHED = """
for i = 1, #ARGV, 2 do
  local part, offset = ARGV[i], tonumber(ARGV[i + 1])
  local applied = tonumber(redis.call('HGET', KEYS[1], part) or '-1')
  local field = part .. ':published'
  local was = tonumber(redis.call('HGET', KEYS[1], field) or '-1')
  if applied >= 0 and offset > was then
    redis.call('HSET', KEYS[1], field, math.min(offset, applied))
  end
end
return 0
"""


class Store(Protocol):
    async def process_batch(
        self,
        events: Sequence[Event],
        arrivals: Sequence[float] | None = None,
        offsets: Sequence[OffsetRange] = (),
    ) -> BatchResult:
        """Apply events (``arrivals``: broker timestamps, default the event times) and record
        ``offsets`` in the same atomic step; if the stored offsets are behind what the
        consumer expected, apply nothing and say so in ``rewinds``."""
        ...

    async def positions(self, partitions: Sequence[str]) -> dict[str, Position]:
        """The stored position of each partition that has one."""
        ...

    async def mark_published(self, published: Mapping[str, int]) -> None:
        """Record that the lists of ``published`` (partition -> offset) are out, for
        partitions this consumer stops owning: a batch's own step records only the batch
        before it, and the next owner starts after the stored offset (never moving back)."""
        ...

    async def put_items(self, records: Sequence[CatalogRecord]) -> None:
        """Store catalog records (trending scopes read category and merchant from them)."""
        ...

    async def delete_items(self, item_ids: Sequence[str]) -> None: ...

    async def item_categories(self, item_ids: Collection[str]) -> dict[str, str]:
        """Category of each item ("" when the catalog does not know it)."""
        ...

    async def trending(self, scopes: Sequence[str], now: float, k: int) -> list[TrendingList]:
        """Each scope's top ``k`` items over the current window at ``now``."""
        ...

    async def take_changed_scopes(self, limit: int) -> list[str]:
        """Scopes changed since they were last taken (each is handed out once)."""
        ...

    async def mark_changed(self, scopes: Sequence[str]) -> None:
        """Hand these scopes out again (their windows are still sliding)."""
        ...

    async def keep_published(self, lists: Mapping[str, bytes], ttl_s: float) -> None:
        """Keep each scope's list as published (wire JSON) for readers, for ``ttl_s``."""
        ...

    async def published(self, scopes: Sequence[str]) -> list[bytes | None]:
        """Each scope's list as last kept by :meth:`keep_published` (None: none kept)."""
        ...

    async def read_users(self, user_ids: Sequence[str]) -> BatchResult: ...

    async def snapshot(self) -> dict[str, Any]: ...

    async def cache_recommendations(self, lists: Mapping[str, bytes]) -> None:
        """Keep each user's latest published list (for pull APIs; erased with the user)."""
        ...

    async def erase_users(self, user_ids: Sequence[str]) -> list[ErasureReport]:
        """Remove each user from every derived state, atomically per call."""
        ...

    async def audience(self, user_ids: Sequence[str]) -> set[str]:
        """Users whose lists can name these users as social proof: their followers and the
        people they shared with (erasure re-publishes those lists without them)."""
        ...

    async def mark_erased(self, erased_at: Mapping[str, float]) -> None:
        """Remember, anonymously and for as long as topics keep events, that each user was
        erased at the given time (their request's broker time)."""
        ...

    async def erased_at(self, user_ids: Sequence[str]) -> dict[str, float]:
        """For users erased recently: when (events appended before that are dropped)."""
        ...

    async def save_knobs(self, body: bytes) -> None:
        """Keep the learnt blend (streams/knobs.py): one key, the last writer's."""
        ...

    async def load_knobs(self) -> bytes | None:
        """The learnt blend last saved, if any."""
        ...


#: Item categories cached per worker (for the category cap of the ranking).
CATEGORY_CACHE_SIZE = 200_000
CATEGORY_CACHE_TTL_S = 300.0
#: Items whose neighbour lists a worker keeps (with SOCIALREC_NEIGHBOURS_TTL_S); a list of 20
#: pairs is about 2.5 kB of Python objects.
NEIGHBOUR_CACHE_SIZE = 20_000

#: Trending buckets this recent may still fill: a look reads them again if their version moved;
#: older ones are kept in memory as last read (a look covers 24 buckets per scope, so reading
#: them all twice a second was most of the trending publisher's time). A bucket is keyed by
#: broker arrival time, so it fills only while the worker is less than this many buckets
#: behind the broker.
TRENDING_OPEN_BUCKETS = 5

#: How long a cached recommendation list lives if the user goes quiet. The API computes a list
#: afresh for a user without one, so Redis holds lists of recently active users only.
RECOMMENDATIONS_TTL_S = 3600


class MemoryStore:
    """The in-memory reference store (pure state machine behind the async interface)."""

    def __init__(
        self,
        params: StateParams,
        read: ReadParams | None = None,
        trending: TrendingParams | None = None,
        similar: Similar | None = None,
    ) -> None:
        """``similar(item, k)``: item-CF's neighbour lists, which this store reads but does
        not learn (the learner does: :class:`models.cooccurrence.Cooccurrence`)."""
        self.similar = similar
        self.state = MemoryState(params)
        self.read = read or ReadParams()
        self.trending_params = trending or TrendingParams()
        self.windows = TrendingWindows(
            windows_s=(self.trending_params.window_s,),
            bucket_s=self.trending_params.bucket_s,
            max_items_per_bucket=1_000_000,  # Redis buckets are not capped either
        )
        self.catalog: dict[str, CatalogRecord] = {}
        self.published_lists: dict[str, bytes] = {}
        # user -> (scope, item, weight, arrival) of their trending counts, for erasure
        self.trend_log: dict[str, list[tuple[str, str, float, float]]] = {}
        self.recommendations: dict[str, bytes] = {}
        self.keys = Keys()
        self.erased: dict[str, float] = {}  # erasure marks: digest key -> erasure time
        self.knobs: bytes | None = None  # the learnt blend (save_knobs)
        self.offsets: dict[str, Position] = {}

    async def positions(self, partitions: Sequence[str]) -> dict[str, Position]:
        return {p: self.offsets[p] for p in partitions if p in self.offsets}

    async def mark_published(self, published: Mapping[str, int]) -> None:
        for partition, offset in published.items():
            was = self.offsets.get(partition)
            if was is not None and offset > was.published:
                self.offsets[partition] = Position(was.applied, min(offset, was.applied))

    async def process_batch(
        self,
        events: Sequence[Event],
        arrivals: Sequence[float] | None = None,
        offsets: Sequence[OffsetRange] = (),
    ) -> BatchResult:
        behind = check_offsets(self.offsets, offsets)
        if behind:
            return BatchResult([], {}, self.state.popular(self.read.popular), behind)
        advance(self.offsets, offsets)
        outcomes = []
        touched: dict[str, None] = {}
        for n, event in enumerate(events):
            arrival = event.ts if arrivals is None else arrivals[n]
            marks = {
                user: self.erased[key]
                for user in (event.user_id, event.target_user_id)
                if user and (key := self.keys.erased(user)) in self.erased
            }
            if erased_in_flight(event, arrival, marks):
                outcomes.append(Outcome.ERASED)
                continue
            outcome = self.state.apply(event)
            outcomes.append(outcome)
            if outcome is Outcome.APPLIED and event.item_id is not None:
                touched.setdefault(event.user_id)
                weight = self.state.params.weight(event.type)
                if weight > 0:
                    self._add_trending(event, event.item_id, weight, arrival)
        return self._result(outcomes, list(touched))

    def _add_trending(self, event: Event, item: str, weight: float, arrival: float) -> None:
        record = self.catalog.get(item)
        scopes = scopes_for(
            event,
            category=record.category if record else None,
            merchant_id=record.merchant_id if record else None,
        )
        log = self.trend_log.setdefault(event.user_id, [])
        for scope in scopes:
            self.windows.add(scope, item, weight, arrival)
            log.append((scope, item, weight, arrival))

    async def put_items(self, records: Sequence[CatalogRecord]) -> None:
        self.catalog.update({r.item_id: r for r in records})

    async def delete_items(self, item_ids: Sequence[str]) -> None:
        for item_id in item_ids:
            self.catalog.pop(item_id, None)

    async def item_categories(self, item_ids: Collection[str]) -> dict[str, str]:
        return {i: r.category if (r := self.catalog.get(i)) else "" for i in item_ids}

    async def trending(self, scopes: Sequence[str], now: float, k: int) -> list[TrendingList]:
        # Reading moves TrendingWindows' clocks, which marks scopes changed; in Redis only
        # writes mark them (the publisher re-publishes sliding windows itself), so a read
        # here leaves the marks as they were.
        marked = set(self.windows.changed)
        lists = [self.windows.top(scope, k, now) for scope in scopes]
        self.windows.changed = marked
        return lists

    async def take_changed_scopes(self, limit: int) -> list[str]:
        taken = self.windows.take_changed()
        self.windows.changed.update(taken[limit:])
        return taken[:limit]

    async def mark_changed(self, scopes: Sequence[str]) -> None:
        self.windows.changed.update(scopes)

    async def keep_published(self, lists: Mapping[str, bytes], ttl_s: float) -> None:
        self.published_lists.update(lists)  # (no expiry: a test's store lives seconds)

    async def published(self, scopes: Sequence[str]) -> list[bytes | None]:
        return [self.published_lists.get(scope) for scope in scopes]

    async def read_users(self, user_ids: Sequence[str]) -> BatchResult:
        return self._result([], list(user_ids))

    async def cache_recommendations(self, lists: Mapping[str, bytes]) -> None:
        self.recommendations.update(lists)

    async def mark_erased(self, erased_at: Mapping[str, float]) -> None:
        for user_id, at in erased_at.items():
            self.erased[self.keys.erased(user_id)] = at

    async def erased_at(self, user_ids: Sequence[str]) -> dict[str, float]:
        marks = {u: self.erased.get(self.keys.erased(u)) for u in user_ids}
        return {u: at for u, at in marks.items() if at is not None}

    async def save_knobs(self, body: bytes) -> None:
        self.knobs = body

    async def load_knobs(self) -> bytes | None:
        return self.knobs

    async def audience(self, user_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for user_id in user_ids:
            user = self.state.users.get(user_id)
            if user is not None:
                found |= user.followers | user.outbox
        return found

    async def erase_users(self, user_ids: Sequence[str]) -> list[ErasureReport]:
        reports = []
        for user_id in user_ids:
            reports.append(self.state.erase(user_id))
            self.recommendations.pop(user_id, None)
            for scope, item, weight, arrival in self.trend_log.pop(user_id, []):
                self.windows.subtract(scope, item, weight, arrival)
        return reports

    def _result(self, outcomes: list[Outcome], users: list[str]) -> BatchResult:
        views = {
            user: self.state.user_view(
                user,
                recent_items=self.read.recent_items,
                neighbours=self.read.neighbours,
                similar=self.similar,
            )
            for user in users
        }
        return BatchResult(outcomes, views, self.state.popular(self.read.popular))

    async def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot()


def _social_proof(inbox: list[str], followees: list[list[Any]]) -> tuple[SocialProof, ...]:
    """Proofs from the script's flat replies, in MemoryState.user_view's order."""
    proofs = []
    for key, ts in _pairs(inbox):
        sharer, _, item = key.partition("\t")
        proofs.append(SocialProof(item, sharer, "share", ts))
    for followee, actions in followees:
        for key, ts in _pairs(_array(actions)):
            action, _, item = key.partition("\t")
            proofs.append(SocialProof(item, followee, action, ts))
    return tuple(sorted(proofs, key=lambda p: (p.item_id, p.user_id, p.action)))


def _array(value: Any) -> list[Any]:
    """A JSON array from Lua's cjson, which encodes an empty table as an object."""
    return value if isinstance(value, list) else []


def _pairs(flat: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """``[member, score, member, score, …]`` from the script's JSON as pairs (the scores are
    the strings Redis printed). Slices, ``zip`` and ``map`` run in C: a list reads about 500
    pairs, and a Python loop over them was a tenth of the batch's time.

    >>> _pairs(["a", "2.5", "b", "1"])
    (('a', 2.5), ('b', 1.0))
    """
    return tuple(zip(flat[::2], map(float, flat[1::2]), strict=True))


class RedisStore:
    """Production store: all state in Redis, one Lua call per batch."""

    def __init__(
        self,
        client: aioredis.Redis,
        params: StateParams,
        read: ReadParams | None = None,
        keys: Keys | None = None,
        trending: TrendingParams | None = None,
        erased_ttl_s: int = 0,
        neighbours_ttl_s: float = 0.0,
        popular_ttl_s: float = 0.0,
    ) -> None:
        """``erased_ttl_s``: how long erasure marks last (0: for ever); the worker derives it
        from topics.yaml (``streams.topics.erasure_mark_ttl_s``). ``neighbours_ttl_s``: how long
        the worker keeps an item's neighbour list (0: the script reads them for every list).
        ``popular_ttl_s``: how long it keeps the most popular items (0: read with every batch).
        """
        self.client = client
        self._popular_ttl_s = popular_ttl_s
        self._popular: PopularView | None = None
        self._popular_until = 0.0  # time.monotonic() when the kept popular items are due
        self.erased_ttl_s = erased_ttl_s
        self.params = params
        self.read = read or ReadParams()
        self.keys = keys or Keys()
        self.trending_params = trending or TrendingParams()
        # item -> (category, expiry): oldest first, so the cache evicts in insertion order.
        # (scope, bucket) -> (tallies, newest arrival) of the trending buckets read: those that
        # no longer fill (see TRENDING_OPEN_BUCKETS) and those still filling whose version is
        # known; dropped when they leave the window or on erasure.
        self._buckets: dict[tuple[str, int], tuple[dict[str, Tally], float | None]] = {}
        # (scope, bucket) -> version of a bucket read while it was filling (its counts' ""
        # field, bumped by every state step that changes it; b"": it did not exist): checked
        # before it is reused. A bucket without a version (written before versions) is not
        # kept while it fills.
        self._bucket_versions: dict[tuple[str, int], bytes] = {}
        # scope -> the sums of its closed buckets at the current clock (models.trending).
        self._settled: dict[str, SettledSums] = {}
        self._categories = item_meta_cache(
            client, self.keys, "category", size=CATEGORY_CACHE_SIZE, ttl_s=CATEGORY_CACHE_TTL_S
        )
        # With a time to live, neighbour lists come from the worker's cache, not the script.
        self._neighbours = (
            neighbour_cache(
                client,
                self.keys,
                self.read.neighbours,
                size=NEIGHBOUR_CACHE_SIZE,
                ttl_s=neighbours_ttl_s,
            )
            if neighbours_ttl_s > 0 and self.read.neighbours > 0
            else None
        )
        source = resources.files("streams").joinpath("lua/state.lua").read_text()
        self._script = client.register_script(source)
        self._published = client.register_script(_MARK_PUBLISHED)
        p = params
        # The script's header (ARGV[2..14]), the number of popular items to read between.
        self._head: list[str | int | float] = [
            self.keys.prefix,
            p.history_size,
            p.dedupe_window,
            repr(float(p.affinity_cap)),
            repr(float(p.half_life_s)),
            p.popularity_cap,
            self.trending_params.span,
            self.read.recent_items,
            0 if self._neighbours is not None else self.read.neighbours,
        ]
        self._tail: list[str | int | float] = [
            repr(float(self.trending_params.bucket_s)),
            repr(float(p.seen_window_s)),
            p.seen_cap,
        ]

    def _args(self, mode: str, count: int, popular: bool = True) -> list[str | int | float | bytes]:
        """The script's arguments up to the records (``popular``: read the popular items)."""
        return [mode, *self._head, self.read.popular if popular else 0, *self._tail, count]

    def _popular_due(self) -> bool:
        """Whether this call reads the popular items (else the kept ones serve). Fewer kept
        than asked for means a young store, where each batch's items change the fill-ins a
        list may need: those are read with every batch, as without a time to live."""
        kept = self._popular
        return (
            kept is None
            or len(kept.items) < self.read.popular
            or time.monotonic() >= self._popular_until
        )

    def _with_popular(self, result: BatchResult, read: bool) -> BatchResult:
        """Keep the popular items a call read, or give a call that did not the kept ones.
        Popularity is the long-run fallback (a half-life of hours): reading and decoding its
        100 best with every small batch was a third of the state call's time."""
        if result.rewinds:
            return result
        if read:
            self._popular = result.popular
            self._popular_until = time.monotonic() + self._popular_ttl_s
            return result
        assert self._popular is not None
        return replace(result, popular=self._popular)

    async def process_batch(
        self,
        events: Sequence[Event],
        arrivals: Sequence[float] | None = None,
        offsets: Sequence[OffsetRange] = (),
    ) -> BatchResult:
        popular = self._popular_due()
        args = self._args("process", len(events), popular)
        weight, mark = self.params.weight, self.keys.erased
        rows = [
            [
                e.event_id,
                e.type.value,
                e.user_id,
                e.item_id or "",
                e.target_user_id or "",
                repr(e.ts),
                repr(weight(e.type)),
                e.stream_id or "",
                repr(e.ts if arrivals is None else float(arrivals[n])),
                mark(e.user_id),
                mark(e.target_user_id) if e.target_user_id else "",
            ]
            for n, e in enumerate(events)
        ]
        args.append(orjson.dumps(rows))
        args.append(len(offsets))
        for r in offsets:
            args += [r.partition, r.first, r.last, r.expected, r.published]
        result = self._with_popular(self._decode(await self._script(keys=[], args=args)), popular)
        return await self._with_neighbours(result)

    async def positions(self, partitions: Sequence[str]) -> dict[str, Position]:
        if not partitions:
            return {}
        fields = [f for p in partitions for f in (p, f"{p}:published")]
        raw = await self.client.hmget(self.keys.global_("offsets"), fields)
        found = {}
        for n, partition in enumerate(partitions):
            applied, published = raw[2 * n], raw[2 * n + 1]
            if applied is not None:
                found[partition] = Position(int(applied), int(published or -1))
        return found

    async def mark_published(self, published: Mapping[str, int]) -> None:
        if published:
            flat = [x for p, o in published.items() for x in (p, o)]
            await self._published(keys=[self.keys.global_("offsets")], args=flat)

    async def mark_erased(self, erased_at: Mapping[str, float]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for user_id, at in erased_at.items():
                pipe.set(self.keys.erased(user_id), repr(at), ex=self.erased_ttl_s or None)
            await pipe.execute()

    async def save_knobs(self, body: bytes) -> None:
        await self.client.set(self.keys.global_("knobs"), body)

    async def load_knobs(self) -> bytes | None:
        return cast(bytes | None, await self.client.get(self.keys.global_("knobs")))

    async def erased_at(self, user_ids: Sequence[str]) -> dict[str, float]:
        if not user_ids:
            return {}
        values = await self.client.mget([self.keys.erased(u) for u in user_ids])
        return {u: float(v) for u, v in zip(user_ids, values, strict=True) if v is not None}

    async def audience(self, user_ids: Sequence[str]) -> set[str]:
        async with self.client.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.smembers(self.keys.user(user_id, "followers"))
                pipe.smembers(self.keys.user(user_id, "outbox"))
            replies = await pipe.execute()
        return {decoded(member) for members in replies for member in members}

    async def read_users(self, user_ids: Sequence[str]) -> BatchResult:
        popular = self._popular_due()
        args = [*self._args("read", len(user_ids), popular), *user_ids]
        result = self._with_popular(self._decode(await self._script(keys=[], args=args)), popular)
        return await self._with_neighbours(result)

    async def _with_neighbours(self, result: BatchResult) -> BatchResult:
        """The views with their recent items' neighbour lists from the cache (if it is on)."""
        cache = self._neighbours
        if cache is None or not result.views:
            return result
        lists = await cache.get({item for v in result.views.values() for item, _ in v.recent})
        views = {
            user: replace(view, neighbours={item: lists[item] for item, _ in view.recent})
            for user, view in result.views.items()
        }
        return BatchResult(result.outcomes, views, result.popular, result.rewinds)

    async def put_items(self, records: Sequence[CatalogRecord]) -> None:
        if not records:
            return
        pipe = self.client.pipeline(transaction=False)
        for r in records:
            key = self.keys.item(r.item_id, "meta")
            pipe.delete(key)
            pipe.hset(
                key,
                mapping={
                    "title": r.title,
                    "category": r.category,
                    "brand": r.brand,
                    "merchant_id": r.merchant_id,
                    "price": "" if r.price is None else repr(r.price),
                    "tags": "\t".join(r.tags),
                },
            )
        await pipe.execute()

    async def delete_items(self, item_ids: Sequence[str]) -> None:
        if item_ids:
            await self.client.delete(*(self.keys.item(i, "meta") for i in item_ids))
            self._categories.drop(item_ids)

    async def item_categories(self, item_ids: Collection[str]) -> dict[str, str]:
        """From a local cache; misses in one pipelined round trip. Entries live
        ``CATEGORY_CACHE_TTL_S`` so a category changed through another worker shows up."""
        return await self._categories.get(item_ids)

    async def trending(self, scopes: Sequence[str], now: float, k: int) -> list[TrendingList]:
        """Reads the buckets of every scope this worker does not hold yet, or that changed
        since it read them (one pipelined round trip for their versions, one for them)."""
        t = self.trending_params
        clock = math.floor(now / t.bucket_s)
        buckets = range(clock - 2 * t.span + 1, clock + 1)
        settled = clock - TRENDING_OPEN_BUCKETS  # buckets up to here no longer fill
        held, versions = self._buckets, self._bucket_versions
        for key in [key for key in held if key[1] < buckets.start]:
            del held[key]  # out of every window now
            versions.pop(key, None)
        # Buckets read while they were filling: still as read only if their version is the
        # same (or they are still absent).
        check = [
            (scope, bucket) for scope in scopes for bucket in buckets if (scope, bucket) in versions
        ]
        if check:
            pipe = self.client.pipeline(transaction=False)
            for scope, bucket in check:
                counts_key = self.keys.trending(bucket, scope, counts=True)
                if versions[scope, bucket]:
                    pipe.hget(counts_key, "")
                else:
                    pipe.exists(counts_key)
            for key, now_at in zip(check, await pipe.execute(), strict=True):
                changed = now_at != versions[key] if versions[key] else now_at != 0
                if changed:
                    del held[key]  # read again
                if changed or key[1] <= settled:
                    del versions[key]  # settled as read: never checked again
        wanted = [
            (scope, bucket) for scope in scopes for bucket in buckets if (scope, bucket) not in held
        ]
        pipe = self.client.pipeline(transaction=False)
        for scope, bucket in wanted:
            pipe.hgetall(self.keys.trending(bucket, scope))
            pipe.hgetall(self.keys.trending(bucket, scope, counts=True))
        replies = iter(await pipe.execute())
        for scope, bucket in wanted:
            weights, counts = next(replies), next(replies)
            version = counts.pop(b"", None)  # bumped by every step that changes the bucket
            items = {
                decoded(item): Tally(float(weights.get(item, 0.0)), int(n))
                for item, n in counts.items()
            }
            newest = float(weights[b""]) if b"" in weights else None
            held[scope, bucket] = (items, newest)
            if bucket > settled and (version is not None or not (weights or counts)):
                versions[scope, bucket] = version or b""  # b"": absent when read
        results = []
        for scope in scopes:
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
                if (scope, bucket) not in versions:  # filling, of no known version
                    held.pop((scope, bucket), None)  # read again next time
            sums = self._settled.get(scope)
            if sums is None or (sums.clock, sums.settled) != (clock, settled):
                sums = settled_sums(tallies, clock=clock, span=t.span, settled=settled)
                self._settled[scope] = sums
            results.append(
                summarise_buckets(
                    scope,
                    tallies,
                    newest_of,
                    now=now,
                    window_s=t.window_s,
                    bucket_s=t.bucket_s,
                    k=k,
                    settled=sums,
                )
            )
        for scope in [scope for scope, sums in self._settled.items() if sums.clock != clock]:
            del self._settled[scope]  # a scope not looked at this bucket: summed again if asked
        return results

    async def take_changed_scopes(self, limit: int) -> list[str]:
        popped = await self.client.spop(self.keys.global_("trending_changed"), limit)
        return sorted(decoded(s) for s in cast(list[bytes], popped or []))

    async def mark_changed(self, scopes: Sequence[str]) -> None:
        if scopes:
            await self.client.sadd(self.keys.global_("trending_changed"), *scopes)

    async def keep_published(self, lists: Mapping[str, bytes], ttl_s: float) -> None:
        if not lists:
            return
        pipe = self.client.pipeline(transaction=False)
        for scope, body in lists.items():
            pipe.set(self.keys.trending_published(scope), body, px=max(1, round(ttl_s * 1000)))
        await pipe.execute()

    async def published(self, scopes: Sequence[str]) -> list[bytes | None]:
        if len(scopes) == 1:  # the API's case: one GET, no pipeline to build
            return [
                cast(bytes | None, await self.client.get(self.keys.trending_published(scopes[0])))
            ]
        pipe = self.client.pipeline(transaction=False)
        for scope in scopes:
            pipe.get(self.keys.trending_published(scope))
        return list(await pipe.execute())

    async def cache_recommendations(self, lists: Mapping[str, bytes]) -> None:
        if not lists:
            return
        pipe = self.client.pipeline(transaction=False)
        for user_id, body in lists.items():
            pipe.set(self.keys.user(user_id, "recommendations"), body, ex=RECOMMENDATIONS_TTL_S)
        await pipe.execute()

    async def erase_users(self, user_ids: Sequence[str]) -> list[ErasureReport]:
        self._buckets.clear()  # the erasure subtracts from buckets of the past too
        self._bucket_versions.clear()
        self._settled.clear()
        args = [*self._args("erase", len(user_ids)), *user_ids]
        raw = await self._script(keys=[], args=args)
        return [ErasureReport(int(h), int(e), int(f)) for h, e, f in raw]

    def _decode(self, raw: list[Any]) -> BatchResult:
        outcomes_raw, payload = raw[0], raw[1]
        if len(raw) > 2 and raw[2]:  # the stored offsets were behind: nothing was applied
            rewinds = {decoded(p): Position(int(a), int(pub)) for p, a, pub in orjson.loads(raw[2])}
            return BatchResult([], {}, PopularView((), 0.0), rewinds)
        popular_raw, landmark_raw, views_raw = orjson.loads(payload)
        outcomes = [_OUTCOMES[o] for o in outcomes_raw]
        views: dict[str, UserView] = {}
        for view in _array(views_raw):
            user, recent_raw, aff_raw, neigh_raw, seen, bought, hidden, inbox, followees = view
            recent = tuple(
                (item, float(aff))
                for item, aff in zip(_array(recent_raw), _array(aff_raw), strict=True)
            )
            views[user] = UserView(
                user_id=user,
                recent=recent,
                neighbours={  # empty when the lists come from the worker's cache
                    item: _pairs(_array(n)) for (item, _), n in zip(recent, lists, strict=True)
                }
                if (lists := _array(neigh_raw))
                else {},
                seen=frozenset(_array(seen)),
                bought=frozenset(_array(bought)),
                hidden=frozenset(_array(hidden)),
                social=_social_proof(_array(inbox), _array(followees)),
            )
        landmark = float(landmark_raw) if landmark_raw else 0.0
        return BatchResult(outcomes, views, PopularView(_pairs(_array(popular_raw)), landmark))

    async def snapshot(self) -> dict[str, Any]:
        """Every socialrec key parsed into the same shape as MemoryState.snapshot().

        A key that does not parse raises, which is how tests prove no state hides outside
        the documented key layout.
        """
        users: dict[str, dict[str, Any]] = {}
        result: dict[str, Any] = {"users": users, "landmark": None}
        async for raw_key in self.client.scan_iter(match=f"{self.keys.prefix}*", count=1000):
            key = decoded(raw_key)
            scope, entity, field = self.keys.parse(key)
            if scope == "trending" or field in NOT_IN_SNAPSHOT:
                continue  # compared by their own contract tests, not part of MemoryState
            value = await self._read_key(key, text_values=field in ("event_log",))
            if scope == "user":
                users.setdefault(entity, {}).update({field: value})
            elif field == "landmark":
                result["landmark"] = float(value)
            else:
                result[field] = value
        for user in users.values():
            for field, empty in _USER_DEFAULTS.items():
                user.setdefault(field, empty())
        result.setdefault("popularity", {})
        return result

    async def _read_key(self, key: str, *, text_values: bool = False) -> Any:
        kind = decoded(await self.client.type(key))
        if kind == "hash" and text_values:
            return {decoded(k): decoded(v) for k, v in (await self.client.hgetall(key)).items()}
        if kind == "zset":
            members = await self.client.zrange(key, 0, -1, withscores=True)
            return {decoded(m): float(s) for m, s in cast(list[tuple[bytes, float]], members)}
        if kind == "hash":
            return {decoded(k): float(v) for k, v in (await self.client.hgetall(key)).items()}
        if kind == "set":
            return {decoded(m) for m in await self.client.smembers(key)}
        value = await self.client.get(key)
        return "" if value is None else decoded(value)


_OUTCOMES = {0: Outcome.DUPLICATE, 1: Outcome.APPLIED, 2: Outcome.REJECTED, 3: Outcome.ERASED}

#: Keys outside MemoryState's snapshot: catalog metadata, trending windows and their erasure log,
#: and the recommendation sources' state.
NOT_IN_SNAPSHOT = frozenset(
    {"meta", "trend_log", "trending_changed", "recommendations", "offsets", *SOURCE_FIELDS}
)

_USER_DEFAULTS: Mapping[str, type] = {
    "history": dict,
    "affinity": dict,
    "seen_events": dict,
    "event_log": dict,
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
