"""The production store: all state in Redis, one ``EVALSHA`` of streams/lua/state.lua per
partition of a batch, pipelined.

Each micro-batch is one network round trip that deduplicates by event id, applies every event
atomically per partition (each step touches its partition's slot: its users' keys and offsets,
streams/keys.py), records the batch's offsets and reads back what scoring needs for the users
it touched. :class:`RedisStore` stays one class: the script's argument header, the popular items
kept between reads and the neighbour cache that replaces the script's neighbour reads must
agree with each other. What stands apart lives beside it: the script's arguments and replies
(script.py), the trending buckets' cache (trending_looks.py), the snapshot (snapshot.py) and
the offsets' rules (offsets.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
import redis.exceptions

from models.content import CatalogRecord
from models.events import Event
from models.popularity import merged_top
from models.state import ACTIONS_READ, ErasureReport, Outcome, PopularView, StateParams
from models.state.seen import event_digest
from models.trending import TrendingList
from streams.keys import Keys, best_command, best_pairs, decoded, queue_best
from streams.runtime.itemcache import Neighbours, item_meta_cache, neighbour_cache
from streams.store.interface import BatchResult, ReadParams, TrendingParams
from streams.store.landmarks import Landmarks
from streams.store.lua import Call, Lua, command, lua_text, run
from streams.store.offsets import (
    MARK_PUBLISHED_LUA,
    OffsetRange,
    Position,
    Step,
    partition_number,
    partition_steps,
)
from streams.store.plan import (
    Kept,
    KeptFacts,
    Plan,
    can_plan,
    plan_from,
    plan_users,
    read_facts,
    refused,
)
from streams.store.relay import last_seq, relay_calls
from streams.store.script import (
    Actions,
    Reply,
    behind,
    decode_batch,
    decode_reply,
    json_array,
    script_header,
)
from streams.store.snapshot import redis_snapshot
from streams.store.trending_looks import TrendingLooks

log = logging.getLogger(__name__)

#: Items whose category and merchant a worker keeps (the ranking's category cap, trending's
#: scopes), and for how long: a record changed through another worker shows after that. An
#: item the catalog does not know yet is asked again sooner, so its later events count in its
#: category and merchant soon after the record arrives.
CATALOG_CACHE_SIZE = 200_000
CATALOG_CACHE_TTL_S = 300.0
UNKNOWN_ITEM_TTL_S = 5.0
#: Items whose neighbour lists a worker keeps (for SOCIALREC_NEIGHBOURS_TTL_S; 0: read for
#: every list); a list of 20 pairs is about 2.5 kB of Python objects.
NEIGHBOUR_CACHE_SIZE = 20_000

#: How long a cached recommendation list lives if the user goes quiet. The API computes a list
#: afresh for a user without one, so Redis holds lists of recently active users only.
RECOMMENDATIONS_TTL_S = 3600
#: Cached lists are deflated: about 1.8 kB of JSON each, they were Redis's largest family.
#: zlib's fastest level with a 2 kB window (the lists are shorter) keeps about 500 bytes, for
#: 11-16 us of the worker's time a list; with the default 32 kB window (a state of about
#: 256 kB to allocate each time) 13-60 us.
_LIST_DEFLATE = (1, zlib.DEFLATED, 11, 4)  # level, method, window bits, memory level


def deflate_list(body: bytes) -> bytes:
    """A list as cached (zlib's format: its first byte is never JSON's ``{``)."""
    packer = zlib.compressobj(*_LIST_DEFLATE)
    return packer.compress(body) + packer.flush()


def inflate_list(raw: bytes) -> bytes:
    """A cached list's JSON, deflated or (cached before lists were deflated) as it is.

    >>> inflate_list(deflate_list(b'{"items":[]}')), inflate_list(b'{"items":[]}')
    (b'{"items":[]}', b'{"items":[]}')
    """
    return raw if raw[:1] == b"{" else zlib.decompress(raw)


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
        withdraw: bool = False,
    ) -> None:
        """``erased_ttl_s``: how long erasure marks last (0: for ever); the worker derives it
        from topics.yaml (``streams.ops.topics.erasure_mark_ttl_s``). ``neighbours_ttl_s``: how long
        the worker keeps an item's neighbour list (0: read again for every list).
        ``popular_ttl_s``: how long it keeps the most popular items (0: read with every batch).
        ``withdraw``: erasure hands the users' logged events to a learner, which keeps
        popularity of its own (streams/runtime/learner_state.py); only where one runs, since
        nobody else takes them.
        """
        self._erase_mode = "erase+withdraw" if withdraw else "erase"
        #: Per partition, the last relay entry this store delivered (its next step trims).
        self._delivered: dict[int, int] = {}
        self.client = client
        self._popular_ttl_s = popular_ttl_s
        self._popular: PopularView | None = None
        self._popular_until = 0.0  # time.monotonic() when the kept popular items are due
        self.erased_ttl_s = erased_ttl_s
        self.params = params
        self.read = read or ReadParams()
        if self.read.popular <= 0:  # (the learner's reads) none, ever: ZRANGE of 0 reads all
            self._popular, self._popular_until = PopularView((), 0.0), math.inf
        self.keys = keys or Keys()
        self.trending_params = trending or TrendingParams()
        self._looks = TrendingLooks(client, self.keys, self.trending_params)
        self._catalog = item_meta_cache(
            client,
            self.keys,
            ("category", "merchant_id"),
            size=CATALOG_CACHE_SIZE,
            ttl_s=CATALOG_CACHE_TTL_S,
            unknown_ttl_s=UNKNOWN_ITEM_TTL_S,
        )
        # Neighbour lists live in their items' slots: never read by the state script.
        self._neighbours = (
            neighbour_cache(
                client,
                self.keys,
                self.read.neighbours,
                size=NEIGHBOUR_CACHE_SIZE,
                ttl_s=neighbours_ttl_s,
            )
            if self.read.neighbours > 0
            else None
        )
        self._lua = Lua(lua_text("state.lua"))
        self._published = Lua(MARK_PUBLISHED_LUA)
        self._header = script_header(self.keys, params, self.read, self.trending_params)
        self._landmarks = Landmarks(self.keys, params)
        self._kept = KeptFacts(self.keys.partitions)

    def _args(self, mode: str, count: int) -> list[str | int | float | bytes]:
        """The script's arguments up to the records."""
        return [mode, *self._header, count]

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
        views: bool = True,
    ) -> BatchResult:
        popular = self._popular_due()
        rows = await self._rows(events, arrivals)
        users = [e.user_id for e in events]
        steps = partition_steps(self.keys.partition_of, users, offsets)
        # In one round trip: each partition's step, then a read of every user with an item
        # event, after all of them (a view shows what other partitions' steps wrote).
        readers = list(dict.fromkeys(e.user_id for e in events if e.item_id and views))
        await self._landmarks.learn(self.client, (s.partition for s in steps))
        plans = await self._plans(steps, events, rows, {})
        stepped = [self._process(step, events, rows, plans) for step in steps]
        reads = self._reads(readers, "views")
        popular_reads = self._popular_reads() if popular else []
        raws = await run(self.client, [c for c, _ in stepped] + reads + popular_reads)
        if await self._after_steps(steps, stepped, raws, events, rows, plans):
            raws[len(steps) :] = await run(self.client, reads + popular_reads)
        read = len(popular_reads)
        replies = [decode_reply(raw) for raw in raws[: len(raws) - read]]
        pending = {
            s.partition: r.pending for s, r in zip(steps, replies, strict=False) if r.pending
        }
        if pending:
            try:
                await self._deliver(pending)
            except (redis.exceptions.RedisError, OSError) as exc:
                # The steps are applied: failing the call would make their retry find every
                # event a duplicate. The entries stay in the lists, and the partition's next
                # step (or its next owner, on assignment) hands them over again.
                log.warning("relayed changes not delivered yet (%s)", type(exc).__name__)
        outcomes = [Outcome.DUPLICATE] * len(events)
        for step, reply in zip(steps, replies, strict=False):
            for n, outcome in zip(step.events, reply.outcomes, strict=False):
                outcomes[n] = outcome
        applied = {
            e.user_id
            for e, o in zip(events, outcomes, strict=True)
            if o is Outcome.APPLIED and e.item_id
        }
        reply = _merged(replies, outcomes, users, self._popular_of(raws, read))
        shown = [v for v in reply.views if v[0] in applied]
        return await self._result(replace(reply, views=shown), popular)

    async def _plans(
        self,
        steps: Sequence[Step],
        events: Sequence[Event],
        rows: Sequence[list[str]],
        gates: Mapping[int, Mapping[int, int]],
    ) -> dict[int, Plan]:
        """Each step's plan (streams/store/plan.py): from the facts kept from this store's own
        last step of the partition, or read (one round trip for all). ``gates``: per
        partition, the events its step said it refuses."""
        plans, reads, calls = {}, [], []
        for step in (s for s in steps if s.events):
            mine = [events[n] for n in step.events]
            kept = self._kept.take(step.partition)
            if kept is not None and can_plan(kept[1], mine, self.params):
                plans[step.partition] = self._plan(step, mine, gates, kept[0], kept[1], kept)
                continue
            args = self._args("plan", len(mine))
            args.append(plan_users(mine, [rows[n][0] for n in step.events], self.keys.user_stem))
            args.append(self.keys.partition_stem(step.partition))
            calls.append(self._step(step.partition, args))
            reads.append((step, mine, kept))
        for (step, mine, kept), raw in zip(reads, await run(self.client, calls), strict=True):
            version, found = read_facts(raw)
            plans[step.partition] = self._plan(step, mine, gates, version, found, kept)
        return plans

    def _plan(
        self,
        step: Step,
        mine: Sequence[Event],
        gates: Mapping[int, Mapping[int, int]],
        version: str,
        facts: Mapping[str, Kept],
        kept: tuple[str, dict[str, Kept]] | None,
    ) -> Plan:
        """A step's plan from its users' ``facts`` at ``version``; the other users ``kept``
        hold beside them if they are at the same version (nobody wrote since)."""
        plan = plan_from(version, facts, mine, gates.get(step.partition, {}), self.params)
        if kept is not None and kept[0] == version:
            plan.others = kept[1]
        return plan

    def _process(
        self,
        step: Step,
        events: Sequence[Event],
        rows: Sequence[list[str]],
        plans: Mapping[int, Plan],
    ) -> tuple[Call, list[str]]:
        """A partition's step of the batch, and its popularity arguments."""
        mine = [events[n] for n in step.events]
        popularity, amounts = self._landmarks.step(step.partition, mine)
        plan = plans.get(step.partition, Plan("", []))
        args = self._args("process", len(step.events))
        args.append(
            orjson.dumps(
                [
                    [*rows[n], a, *planned]
                    for n, a, planned in zip(step.events, amounts, plan.events, strict=True)
                ]
            )
        )
        args.append(len(step.offsets))
        for r in step.offsets:
            args += [self._offsets_key(r.partition), r.partition, r.first, r.last]
            args += [r.expected, r.published]
        args += [*self._relay_args(step.partition), *popularity, plan.version]
        return self._step(step.partition, args), popularity

    async def _after_steps(
        self,
        steps: Sequence[Step],
        stepped: list[tuple[Call, list[str]]],
        raws: list[Any],
        events: Sequence[Event],
        rows: Sequence[list[str]],
        plans: dict[int, Plan],
    ) -> bool:
        """Follow each applied step's landmark; run again each step that wrote nothing: worked
        out anew from the landmark it found stored, or planned anew (streams/store/plan.py).
        Returns whether any did: the reads made with the steps are then made again."""
        again = False
        gates: dict[int, Mapping[int, int]] = {}
        done: set[int] = set()  # steps written, whose facts are kept
        for attempt in range(_STEP_ATTEMPTS):
            found = {n: why for n in range(len(steps)) if (why := refused(raws[n])) is not None}
            for n, step in enumerate(steps):
                if n not in found:
                    self._landmarks.stepped(step.partition, stepped[n][1])
                    if step.partition in plans and n not in done and not behind(raws[n]):
                        self._kept.stepped(step.partition, plans[step.partition])
                        done.add(n)
                elif found[n][0] == "landmark":
                    self._landmarks.found(step.partition, found[n][1])
            if not found:
                return again
            if attempt == _STEP_ATTEMPTS - 1:
                break
            again = True
            replan = [n for n in found if found[n][0] == "replan"]
            for n in replan:
                gates[steps[n].partition] = found[n][1]
            plans.update(await self._plans([steps[n] for n in replan], events, rows, gates))
            for n in found:
                stepped[n] = self._process(steps[n], events, rows, plans)
            replies = await run(self.client, [stepped[n][0] for n in found])
            for n, raw in zip(found, replies, strict=True):
                raws[n] = raw
        raise redis.exceptions.RedisError("the steps kept being refused (landmark or plan)")

    def _step(self, partition: int, args: Sequence[Any]) -> Call:
        """A call of the state script in ``partition``'s slot (its key stem is the route)."""
        return self._lua.call(self.keys.partition_stem(partition), args)

    def _reads(self, user_ids: Sequence[str], mode: str = "read") -> list[Call]:
        """One read per partition of the users (``mode`` "views": a user whose keys hold the
        wrong kind of value is left out)."""
        parts: dict[int, list[str]] = {}
        for u in user_ids:
            parts.setdefault(self.keys.partition_of(u), []).append(u)
        calls = []
        for partition, users in parts.items():
            args = self._args(mode, len(users))
            args.append(orjson.dumps([[u, self.keys.user_stem(u)] for u in users]))
            calls.append(self._step(partition, args))
        return calls

    def _popular_reads(self) -> list[Call]:
        """Reads of every partition's most popular items and landmark (their replies come
        last: :meth:`_popular_of`)."""
        calls = []
        for p in range(self.keys.partitions):
            calls.append(
                command(*best_command(self.keys.partition(p, "popularity"), self.read.popular))
            )
            calls.append(command("GET", self.keys.partition(p, "landmark")))
        return calls

    def _popular_of(self, raws: Sequence[Any], read: int) -> PopularView:
        """The most popular items over every partition, from the last ``read`` replies."""
        if not read:
            return PopularView((), 0.0)
        tail = raws[len(raws) - read :]
        parts = [
            (best_pairs(best), float(landmark))
            for best, landmark in zip(tail[0::2], tail[1::2], strict=True)
            if landmark is not None
        ]
        return PopularView(*merged_top(parts, self.read.popular, self.params.half_life_s))

    async def _rows(
        self, events: Sequence[Event], arrivals: Sequence[float] | None
    ) -> list[list[str]]:
        """Each event as the script takes it (streams/lua/state.lua, ``process``)."""
        weight, mark, stem = self.params.weight, self.keys.erased, self.keys.user_stem
        catalog = await self._catalog.get({e.item_id for e in events if e.item_id})
        return [
            [
                event_digest(e.event_id),
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
                stem(e.user_id),
                stem(e.target_user_id) if e.target_user_id else "",
                "\x1f".join(catalog[e.item_id]) if e.item_id else "\x1f",
            ]
            for n, e in enumerate(events)
        ]

    def _offsets_key(self, partition: str) -> str:
        """Where a partition ("events:3") keeps its offsets: in its users' slot."""
        return self.keys.offsets(partition_number(partition))

    def _relay_args(self, partition: int) -> list[str | int]:
        """A step's partition: its key stem, and the last relay entry this store delivered."""
        return [self.keys.partition_stem(partition), self._delivered.get(partition, 0)]

    async def _deliver(self, pending: Mapping[int, Sequence[str]]) -> set[int]:
        """Apply relay entries in their targets' slots (streams/store/relay.py), then what
        those deliveries relayed back (an erased target taken out of its sender's sets);
        returns the partitions whose lists held what was delivered."""
        skipped, sources = 0, set[int]()
        while pending:
            sources.update(pending)
            calls = relay_calls(pending)
            replies = await run(
                self.client,
                [
                    self._step(
                        target,
                        [
                            *self._args("relay", 0),
                            source,
                            orjson.dumps(entries),
                            self.keys.partition_stem(target),
                        ],
                    )
                    for source, target, entries in calls
                ],
            )
            for source, delivered in pending.items():
                self._delivered[source] = max(self._delivered.get(source, 0), last_seq(delivered))
            back: dict[int, list[str]] = {}
            for (_, target, _), (count, appended) in zip(calls, replies, strict=True):
                skipped += int(count)
                back.setdefault(target, []).extend(json_array(orjson.loads(appended)))
            pending = {target: entries for target, entries in back.items() if entries}
        if skipped:
            log.info("%d relayed changes skipped: their targets were erased or damaged", skipped)
        return sources

    async def _drain(self, partitions: Sequence[int]) -> None:
        """Deliver every relay entry left in these partitions' lists (a worker or an erasure
        that stopped before delivering), then trim what was delivered: an empty step each."""
        async with self.client.pipeline(transaction=False) as pipe:
            for p in partitions:
                pipe.lrange(self.keys.partition(p, "relay"), 0, -1)
            lists = await pipe.execute()
        pending = {p: [decoded(e) for e in raw] for p, raw in zip(partitions, lists, strict=True)}
        pending = {p: entries for p, entries in pending.items() if entries}
        if not pending:
            return
        delivered = await self._deliver(pending)
        await self._landmarks.learn(self.client, delivered)
        trims = [
            (p, [*self._args("process", 0), b"[]", 0, *self._relay_args(p)]) for p in delivered
        ]
        await run(  # (a step that finds another landmark trims nothing: the next one will)
            self.client,
            [self._step(p, [*args, *self._landmarks.step(p, [])[0]]) for p, args in trims],
        )

    async def positions(self, partitions: Sequence[str]) -> dict[str, Position]:
        """Also delivers what a former owner of these partitions left undelivered."""
        if not partitions:
            return {}
        await self._drain([partition_number(p) for p in partitions])
        async with self.client.pipeline(transaction=False) as pipe:
            for p in partitions:
                pipe.hmget(self._offsets_key(p), [p, f"{p}:published"])
            replies = await pipe.execute()
        found = {}
        for partition, (applied, published) in zip(partitions, replies, strict=True):
            if applied is not None:
                found[partition] = Position(int(applied), int(published or -1))
        return found

    async def mark_published(self, published: Mapping[str, int]) -> None:
        """One script per partition (each in its own slot), pipelined."""
        if published:
            await run(
                self.client,
                [self._published.call(self._offsets_key(p), [p, o]) for p, o in published.items()],
            )

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
        async with self.client.pipeline(transaction=False) as pipe:  # (marks in many slots)
            for u in user_ids:
                pipe.get(self.keys.erased(u))
            values = await pipe.execute()
        return {u: float(v) for u, v in zip(user_ids, values, strict=True) if v is not None}

    async def audience(self, user_ids: Sequence[str]) -> set[str]:
        async with self.client.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.smembers(self.keys.user(user_id, "followers"))
                pipe.smembers(self.keys.user(user_id, "outbox"))
            replies = await pipe.execute()
        return {decoded(member) for members in replies for member in members}

    async def read_users(self, user_ids: Sequence[str]) -> BatchResult:
        """One read per partition of the users, pipelined."""
        popular = self._popular_due()
        popular_reads = self._popular_reads() if popular else []
        raws = await run(self.client, self._reads(user_ids) + popular_reads)
        read = len(popular_reads)
        replies = [decode_reply(raw) for raw in raws[: len(raws) - read]]
        return await self._result(
            _merged(replies, [], user_ids, self._popular_of(raws, read)), popular
        )

    async def _result(self, reply: Reply, popular: bool) -> BatchResult:
        """A call's result: its reply, the followees' actions, kept popular items and the
        recent items' neighbour lists (the two reads in flight together)."""
        actions, lists = await asyncio.gather(
            self._followee_actions(reply), self._neighbour_lists(reply)
        )
        result = self._with_popular(decode_batch(reply, actions), popular)
        if lists is None:
            return result
        views = {
            user: replace(view, neighbours={item: lists[item] for item, _ in view.recent})
            for user, view in result.views.items()
        }
        return BatchResult(result.outcomes, views, result.popular, result.rewinds)

    async def _followee_actions(self, reply: Reply) -> dict[str, Actions]:
        """The latest actions of every followee the views name: one pipelined read (each
        followee's actions sit in their own partition's slot)."""
        followees = sorted(reply.followees())
        if not followees:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for followee in followees:
                queue_best(pipe, self.keys.user(followee, "actions"), ACTIONS_READ)
            replies = await pipe.execute()
        return {f: best_pairs(r) for f, r in zip(followees, replies, strict=True) if r}

    async def _neighbour_lists(self, reply: Reply) -> dict[str, Neighbours] | None:
        """The neighbour list of every recent item the views name, from the cache (None when
        no list is read)."""
        if self._neighbours is None or not reply.views:
            return None
        return await self._neighbours.get(reply.recent_items())

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
        self._catalog.drop([r.item_id for r in records])

    async def delete_items(self, item_ids: Sequence[str]) -> None:
        if item_ids:
            await self.client.delete(*(self.keys.item(i, "meta") for i in item_ids))
            self._catalog.drop(item_ids)

    async def item_categories(self, item_ids: Collection[str]) -> dict[str, str]:
        """From a local cache; misses in one pipelined round trip. Entries live
        ``CATALOG_CACHE_TTL_S`` so a category changed through another worker shows up."""
        return {i: meta[0] for i, meta in (await self._catalog.get(item_ids)).items()}

    async def trending(self, scopes: Sequence[str], now: float, k: int) -> list[TrendingList]:
        """Reads the buckets of every scope this worker does not hold yet, or that changed
        since it read them (see streams/store/trending_looks.py)."""
        return await self._looks.look(scopes, now, k)

    async def take_changed_scopes(self, limit: int) -> list[str]:
        """From every partition's set; beyond ``limit``, the rest are handed out again."""
        async with self.client.pipeline(transaction=False) as pipe:
            for p in range(self.keys.partitions):
                pipe.spop(self.keys.partition(p, "trending_changed"), limit)
            popped = await pipe.execute()
        scopes = sorted({decoded(s) for found in popped for s in cast(list[bytes], found or [])})
        await self.mark_changed(scopes[limit:])
        return scopes[:limit]

    async def mark_changed(self, scopes: Sequence[str]) -> None:
        if scopes:
            # Any partition's set: readers take from all of them.
            await self.client.sadd(self.keys.partition(0, "trending_changed"), *scopes)

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
            key = self.keys.user(user_id, "recommendations")
            pipe.set(key, deflate_list(body), ex=RECOMMENDATIONS_TTL_S)
        await pipe.execute()

    async def cached_recommendations(self, user_id: str) -> bytes | None:
        raw = await self.client.get(self.keys.user(user_id, "recommendations"))
        return None if raw is None else inflate_list(cast(bytes, raw))

    async def erase_users(self, user_ids: Sequence[str]) -> list[ErasureReport]:
        """The script is handed the key stems of everyone the users' sets name, read first;
        if a set changed meanwhile it names the newcomers, writes nothing and is run again
        with their stems too."""
        self._looks.clear()  # the erasure subtracts from buckets of the past too
        stem = self.keys.user_stem
        others = set(await self._counterparts(user_ids))
        reports = []
        for user in user_ids:  # one step each, in its slot; its changes to others delivered
            partition = self.keys.partition_of(user)
            self._kept.drop(partition)  # the step bumps the partition's version
            while True:
                args = self._args(self._erase_mode, 1)
                args += [orjson.dumps([[user, stem(user)]])]
                args += [orjson.dumps({o: stem(o) for o in sorted(others)})]
                args += self._relay_args(partition)
                args += await self._landmarks.withdrawals(self.client, user)
                (raw,) = await run(self.client, [self._step(partition, args)])
                if isinstance(raw[0], (bytes, str)):
                    # A set changed meanwhile ("missing": their stems), or popularity's
                    # landmark or the user's logged events did: read again.
                    if decoded(raw[0]) == "missing":
                        others.update(decoded(m) for m in raw[1])
                    continue
                break
            ((h, e, f),) = raw[0]
            reports.append(ErasureReport(int(h), int(e), int(f)))
            if pending := json_array(orjson.loads(raw[1])):
                await self._deliver({partition: pending})
        # Every list, delivered and trimmed: no relay entry naming the users is left.
        await self._drain(list(range(self.keys.partitions)))
        return reports

    async def _counterparts(self, user_ids: Sequence[str]) -> set[str]:
        """Everyone the users' outbox, senders, following and followers sets name."""
        async with self.client.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                for field in ("outbox", "senders", "following", "followers"):
                    pipe.smembers(self.keys.user(user_id, field))
            replies = await pipe.execute()
        return {decoded(m) for members in replies for m in members}

    async def snapshot(self) -> dict[str, Any]:
        """Every socialrec key parsed into the same shape as MemoryState.snapshot()."""
        return await redis_snapshot(self.client, self.keys)


#: How often a batch's steps are tried before giving up (an outage to wait out): a landmark
#: or a plan that another writer moved, then the events it refuses, then a last try.
_STEP_ATTEMPTS = 4


def _merged(
    replies: Sequence[Reply], outcomes: list[Outcome], users: Sequence[str], popular: PopularView
) -> Reply:
    """One reply of a call's steps and reads: their views in the order their users first come
    in the batch, the popular items, and every partition found behind (then nothing else
    counts: the consumer goes back)."""
    rewinds = {p: at for r in replies for p, at in r.rewinds.items()}
    if rewinds:
        return Reply([], popular, [], rewinds)
    first = {u: n for n, u in reversed(list(enumerate(users)))}
    views = sorted((v for r in replies for v in r.views), key=lambda v: first[v[0]])
    return Reply(outcomes, popular, views, {})
