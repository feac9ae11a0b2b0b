"""Frequently bought together, with its state in Redis (:class:`RedisFBT`).

The pure model is :class:`models.fbt.BasketTracker`; this module keeps the same state in Redis
so every worker shares one set of counts:

* ``u:{user}:fbt_baskets``: JSON of the user's retained baskets (``[[items, first, last]…]``,
  oldest first). Per-user state, so it is read, changed and written back whole;
* ``fbt_total`` (counter) and ``fbt_items`` (hash item -> baskets containing it), both in the
  ``{fbt}`` slot, and ``i:{A}:fbt_pairs`` (zset B -> baskets with both, kept in both
  directions; in A's slot): shared tables, changed only by increments, so two learners never
  lose each other's updates.

How a batch is learnt, one partition's users at a time: their stored baskets are restored into
a throwaway :class:`BasketTracker` (which then holds exactly their contributions), their
events are applied to it, and the difference of its counts before and after is exactly the
change they make to the global counts (negative where an old basket fell out). The step that
rewrites their baskets, in their slot with the source's marks, hands that difference to the
``{fbt}`` slot and to each pair row's (streams/sources/handoff.py), where it is added once: a
crash never leaves the counts and the baskets disagreeing, nor counts a basket twice. A count
that reaches zero is removed in the same step as the increment that got it there; no count is
ever negative, because each user's own changes net out to their current baskets.

Erasure subtracts the user's baskets the same way and deletes their key, so the counts are
afterwards exactly those of a run without the user (users do not affect each other's
retention). Basket TTL expiry (:meth:`BasketTracker.expire`) is not done here: it would walk
every user; a retained basket leaves the counts when it is pushed out by newer ones, or when
the user is erased.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from models.events import Event
from models.fbt import (
    BASKET_TYPES,
    Basket,
    BasketCounts,
    BasketTracker,
    Rule,
    basket_candidates,
    basket_counts,
    rules_from_counts,
)
from models.recommend import Candidate, Reason, Source
from streams.keys import Keys, best_pairs, queue_best
from streams.sources.handoff import Handoffs
from streams.sources.progress import Marks
from streams.sources.writes import ByPartition, Writes


def encode_baskets(baskets: Sequence[Basket]) -> bytes:
    """The stored form of a user's baskets (the same shape as ``BasketTracker.snapshot``).

    >>> encode_baskets([Basket(["a", "b"], 1.0, 2.5)])
    b'[[["a","b"],1.0,2.5]]'
    >>> decode_baskets(encode_baskets([Basket(["a"], 1.0, 1.0)]))
    [Basket(items=['a'], first_ts=1.0, last_ts=1.0)]
    """
    return orjson.dumps([[list(b.items), b.first_ts, b.last_ts] for b in baskets])


def decode_baskets(raw: bytes | str | None) -> list[Basket]:
    if raw is None:
        return []
    data = cast(list[list[Any]], orjson.loads(raw))
    return [
        Basket([str(i) for i in items], float(first), float(last)) for items, first, last in data
    ]


class RedisFBT:
    """Frequently-bought-together candidates from association rules over shared counts."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys | None = None,
        *,
        session_gap_s: float = 1800.0,
        max_basket_items: int = 50,
        baskets_per_user: int = 20,
        min_count: int = 2,
        pairs_per_item: int = 50,
        context_s: float = 86400.0,
        max_antecedents: int = 10,
        reasons_per_item: int = 3,
    ) -> None:
        """``min_count``: a pair seen in fewer baskets makes no rule (one co-occurrence would
        otherwise get a huge lift). ``pairs_per_item``: how many of an antecedent's most
        co-bought items are read (rules are ranked among those). ``context_s``: the user's
        latest basket is the context while its last event is this recent (it stays useful
        for a while after checkout); its ``max_antecedents`` latest items are used.
        """
        if min_count < 1 or pairs_per_item < 1 or max_antecedents < 1:
            raise ValueError("min_count, pairs_per_item and max_antecedents must be at least 1")
        self.client = client
        self.keys = keys or Keys()
        self.session_gap_s = session_gap_s
        self.max_basket_items = max_basket_items
        self.baskets_per_user = baskets_per_user
        self.min_count = min_count
        self.pairs_per_item = pairs_per_item
        self.context_s = context_s
        self.max_antecedents = max_antecedents
        self.reasons_per_item = reasons_per_item
        self.new_tracker()  # validates the model parameters now rather than at the first batch
        self.handoffs = Handoffs(client, self.keys, Source.FBT.value)

    @property
    def source(self) -> Source:
        return Source.FBT

    def new_tracker(self) -> BasketTracker:
        """An empty pure model with this source's parameters."""
        return BasketTracker(
            self.session_gap_s,
            max_basket_items=self.max_basket_items,
            baskets_per_user=self.baskets_per_user,
        )

    async def _load(self, user_ids: Sequence[str]) -> dict[str, list[Basket]]:
        """Each user's stored baskets (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.get(self.keys.user(user_id, "fbt_baskets"))
        raw = await pipe.execute()
        return {u: decode_baskets(r) for u, r in zip(user_ids, raw, strict=True)}

    def _hand_delta(self, writes: Writes, delta: BasketCounts) -> None:
        """Hand off the increments of ``delta``: the total and the items' counts to the
        ``{fbt}`` slot, each pair row to its item's; a count that reaches zero goes (each in
        the slot's own atomic step, so a concurrent increment is never deleted with it)."""
        if delta.baskets:
            writes.add("!incr", self.keys.global_("fbt_total"), delta.baskets)
        for item, n in delta.items.items():
            writes.add("!hincr", self.keys.global_("fbt_items"), item, n)
        for a, row in delta.pairs.items():
            key = self.keys.item(a, "fbt_pairs")
            for b, n in row.items():
                writes.add("!zincr", key, b, n)

    async def learn(self, events: Sequence[Event], learnt: Marks | None = None) -> None:
        """Cart and purchase events only; the baskets read, then a step per partition: its
        users' baskets with its marks, handing off the counts their change makes (one
        round trip for all, streams/sources/handoff.py), and two to apply those and drop
        them from the lists."""
        basket_events = [e for e in events if e.type in BASKET_TYPES and e.item_id is not None]
        if not basket_events:
            return
        user_ids = list(dict.fromkeys(e.user_id for e in basket_events))
        stored = await self._load(user_ids)
        writes = ByPartition(self.keys)
        for part, users in self.keys.by_partition(user_ids).items():
            # One partition's users at a time: the change of the counts is theirs alone.
            tracker = self.new_tracker()
            for user_id in users:
                tracker.restore_user(user_id, stored[user_id])
            before = tracker.counts()
            for e in basket_events:
                if e.item_id is not None and self.keys.partition_of(e.user_id) == part:
                    tracker.add(e.user_id, e.item_id, e.ts, e.type)
            for user_id in users:
                key = self.keys.user(user_id, "fbt_baskets")
                writes[part].add("SET", key, encode_baskets(tracker.users[user_id]))
            self._hand_delta(writes[part], tracker.counts().minus(before))
        await self.handoffs.run(writes.steps(learnt))

    async def erase(self, user_ids: Sequence[str]) -> dict[str, int]:
        """Subtract every retained basket of the users and delete their key; returns per user
        how many baskets were removed."""
        if not user_ids:
            return {}
        stored = await self._load(list(dict.fromkeys(user_ids)))
        writes = ByPartition(self.keys)
        for part, users in self.keys.by_partition(stored).items():
            writes[part].add("DEL", *[self.keys.user(u, "fbt_baskets") for u in users])
            counts = basket_counts(b for u in users for b in stored[u])
            self._hand_delta(writes[part], counts.negated())
        await self.handoffs.run(writes.steps())
        return {u: len(baskets) for u, baskets in stored.items()}

    def context(self, baskets: Sequence[Basket], now: float) -> list[str]:
        """The antecedents: the latest basket's latest items, if it is recent enough.

        >>> fbt = RedisFBT(None, max_antecedents=2)  # type: ignore[arg-type]
        >>> fbt.context([Basket(["a"], 0, 0), Basket(["b", "c", "d"], 10.0, 20.0)], now=30.0)
        ['c', 'd']
        >>> fbt.context([Basket(["a"], 0, 0)], now=1e6)
        []
        """
        if not baskets or now - baskets[-1].last_ts > self.context_s:
            return []
        return list(baskets[-1].items[-self.max_antecedents :])

    async def candidates(
        self,
        user_ids: Sequence[str],
        exclude: Mapping[str, frozenset[str]],
        k: int,
        now: float,
    ) -> dict[str, list[Candidate]]:
        """Items that complete each user's current basket; three round trips per call (the
        baskets; the antecedents' top pairs, counts and the total; the consequents' counts)."""
        result: dict[str, list[Candidate]] = {u: [] for u in user_ids}
        if not user_ids or k <= 0:
            return result
        stored = await self._load(list(result))
        contexts = {u: self.context(stored[u], now) for u in result}
        antecedents = list(dict.fromkeys(a for items in contexts.values() for a in items))
        if not antecedents:
            return result
        pipe = self.client.pipeline(transaction=False)
        for a in antecedents:
            # Most co-bought first: a bounded read. Rules are ranked by lift among these, so a
            # rare high-lift pair beyond the top ``pairs_per_item`` by count is not seen.
            queue_best(pipe, self.keys.item(a, "fbt_pairs"), self.pairs_per_item)
        pipe.hmget(self.keys.global_("fbt_items"), antecedents)
        pipe.get(self.keys.global_("fbt_total"))
        replies = await pipe.execute()
        total = int(replies[-1] or 0)
        counts = {a: int(n) for a, n in zip(antecedents, replies[-2], strict=True) if n}
        pairs = {
            a: {b: round(n) for b, n in best_pairs(rows)}
            for a, rows in zip(antecedents, replies[:-2], strict=True)
        }
        consequents = list({b for row in pairs.values() for b in row} - counts.keys())
        if consequents:
            more = await self.client.hmget(self.keys.global_("fbt_items"), consequents)
            counts.update({b: int(n) for b, n in zip(consequents, more, strict=True) if n})
        rules: dict[str, list[Rule]] = {
            a: rules_from_counts(
                a,
                counts.get(a, 0),
                pairs[a],
                counts,
                total,
                k=len(pairs[a]),
                min_count=self.min_count,
            )
            for a in antecedents
        }
        for user_id, basket in contexts.items():
            found = basket_candidates(basket, rules, k, exclude.get(user_id, frozenset()))
            result[user_id] = [
                Candidate(
                    c.item_id,
                    c.score,
                    tuple(Reason(a, v) for a, v in c.because[: self.reasons_per_item]),
                )
                for c in found
            ]
        return result
