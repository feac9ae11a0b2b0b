"""Frequently bought together, with its state in Redis (:class:`RedisFBT`).

The pure model is :class:`models.fbt.BasketTracker`; this module keeps the same state in Redis
so every worker shares one set of counts:

* ``u:{user}:fbt_baskets``: JSON of the user's retained baskets (``[[items, first, last]…]``,
  oldest first). Per-user state, so it is read, changed and written back whole;
* ``fbt_total`` (counter), ``fbt_items`` (hash item -> baskets containing it) and
  ``i:{A}:fbt_pairs`` (zset B -> baskets with both, kept in both directions): shared tables,
  changed only by increments, so two workers never lose each other's updates.

How a batch is learnt: the batch users' stored baskets are restored into a throwaway
:class:`BasketTracker` (which then holds exactly their contributions), the events are applied
to it, and the difference of its counts before and after is exactly the change the batch makes
to the global counts (negative where an old basket fell out). That difference is applied with
``INCRBY``/``HINCRBY``/``ZINCRBY``, in one ``MULTI`` with the rewritten baskets, so a crash
never leaves the counts and the baskets disagreeing. Counts that reach zero are removed in the
same transaction (a hash field by a tiny script, a zset member by ``ZREMRANGEBYSCORE -inf 0``);
no count is ever negative, because each user's own changes net out to their current baskets.

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
from streams.sources.progress import Learnt, commit

#: Adds ``ARGV[1]`` to the total and ``ARGV[2k+1]`` to field ``ARGV[2k]`` of the item hash;
#: anything that reaches zero is deleted. Atomic, so a concurrent increment of the same field
#: can never be deleted with it (which a read-then-HDEL from the client could do).
_GLOBAL_DELTA = """
local total = redis.call('INCRBY', KEYS[2], ARGV[1])
if total <= 0 then redis.call('DEL', KEYS[2]) end
for n = 2, #ARGV, 2 do
  if redis.call('HINCRBY', KEYS[1], ARGV[n], ARGV[n + 1]) <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[n])
  end
end
return 0
"""


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

    def _apply_delta(self, pipe: Any, delta: BasketCounts) -> None:
        """Queue the increments of ``delta`` (and the removal of counts that reach zero)."""
        args: list[str | int] = [delta.baskets]
        for item, n in delta.items.items():
            args += [item, n]
        if len(args) > 1 or delta.baskets:
            pipe.eval(
                _GLOBAL_DELTA,
                2,
                self.keys.global_("fbt_items"),
                self.keys.global_("fbt_total"),
                *args,
            )
        for a, row in delta.pairs.items():
            key = self.keys.item(a, "fbt_pairs")
            for b, n in row.items():
                pipe.zincrby(key, n, b)
            if any(n < 0 for n in row.values()):
                pipe.zremrangebyscore(key, "-inf", 0)

    async def learn(self, events: Sequence[Event], learnt: Learnt | None = None) -> None:
        """Cart and purchase events only; two round trips per batch (read, then one MULTI)."""
        basket_events = [e for e in events if e.type in BASKET_TYPES and e.item_id is not None]
        if not basket_events:
            return
        user_ids = list(dict.fromkeys(e.user_id for e in basket_events))
        stored = await self._load(user_ids)
        tracker = self.new_tracker()
        for user_id, baskets in stored.items():
            tracker.restore_user(user_id, baskets)
        before = tracker.counts()
        for e in basket_events:
            assert e.item_id is not None
            tracker.add(e.user_id, e.item_id, e.ts, e.type)
        delta = tracker.counts().minus(before)

        def queue(pipe: Any) -> None:
            for user_id in user_ids:
                key = self.keys.user(user_id, "fbt_baskets")
                pipe.set(key, encode_baskets(tracker.users[user_id]))
            self._apply_delta(pipe, delta)

        await commit(self.client, learnt, queue)

    async def erase(self, user_ids: Sequence[str]) -> dict[str, int]:
        """Subtract every retained basket of the users and delete their key; returns per user
        how many baskets were removed."""
        if not user_ids:
            return {}
        stored = await self._load(list(dict.fromkeys(user_ids)))
        counts = basket_counts(b for baskets in stored.values() for b in baskets)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(*(self.keys.user(u, "fbt_baskets") for u in stored))
        self._apply_delta(pipe, counts.negated())
        await pipe.execute()
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
