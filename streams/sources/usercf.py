"""User-user collaborative filtering with its state in Redis (:class:`RedisUserCF`).

The pure model is :class:`models.usercf.UserCF`; here its two sides live in Redis:

* ``u:{user}:ucf_row``: the user's *row*, one JSON string ``{item: [affinity, last event
  time]}`` (at most ``items_per_user`` entries, the least recent evicted). Per-user state,
  written only by the learner that owns the user, so it is read, changed and written back
  whole: one value per user, so a batch reads every row it needs with one ``MGET`` (a hash
  per user cost a command each, and redis-py's per-command work was the learner's largest
  cost);
* ``i:{item}:ucf_users``: zset user -> last event time, the item's inverted *index* (at most
  ``users_per_item`` users, the least recent evicted).

The cross-partition rule: **rows are authoritative, the index is a bounded hint.** When an
item's index is full, the oldest users are dropped from the index only: their rows belong to
other workers and are left alone (in the pure model the entry would vanish from both sides).
The index is used for one thing, finding who might be similar; similarities and scores are then
computed from the rows, which are read whole. So a user evicted from one item's index is still
found through their other items, and counts that item in the dot product when found; a user
pushed out of every index of the user's items is simply not found. A learner only removes
*its own* users' index entries (when their rows drop the item) and trims indexes by
``ZREMRANGEBYRANK``, which any learner may do. A partition's rows are written in one step in
its slot, which hands each item's index its changes in the item's slot, applied there once
(streams/sources/handoff.py): an index lags its rows until then, and no entry is added
before its row. A row entry's last event time is kept in the row and is its index score; an entry
whose index slot was evicted keeps its time in the row (it goes when it is the oldest of a
full row, as in the pure model). With caps that never fill an index, the state and the
candidates are exactly the pure model's.

Erasure walks the user's row: the row is deleted, and each item's index is handed a ``ZREM``
in the same step. Only the owner adds index entries, always after the row, so once the
hand-offs are applied (before :meth:`RedisUserCF.erase` returns) no key or member mentions the
user.

Reasons never name the neighbours: every candidate carries the one shared
``models.hybrid.SIMILAR_SHOPPERS`` reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis

from models.events import DEFAULT_WEIGHTS, Event, EventType
from models.hybrid import SIMILAR_SHOPPERS
from models.recommend import Candidate, Source
from models.usercf import UserCF, pool_of
from streams.keys import Keys, best_arrays, decoded, queue_best, user_strings
from streams.sources.handoff import Handoffs
from streams.sources.progress import Marks
from streams.sources.writes import ByPartition

#: A local model never evicts from its index: Redis trims the real one.
_UNBOUNDED = 1 << 40


#: A row entry: (affinity, time of the user's last event on the item).
Entry = tuple[float, float]


def parse_row(raw: bytes | str | None) -> dict[str, Entry]:
    """A stored row (None: the user has none).

    >>> parse_row(b'{"phone": [8.0, 1700000000.5]}')
    {'phone': (8.0, 1700000000.5)}
    """
    if raw is None:
        return {}
    return {item: (a, ts) for item, (a, ts) in orjson.loads(raw).items()}


def encode_row(row: Mapping[str, Entry]) -> bytes:
    """A row as stored (orjson writes the shortest float that reads back exactly).

    >>> parse_row(encode_row({"phone": (0.1, 1700000000.25)}))
    {'phone': (0.1, 1700000000.25)}
    """
    return orjson.dumps({item: [a, ts] for item, (a, ts) in row.items()})


class RedisUserCF:
    """People who act like you, and what they liked, over rows and indexes in Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys | None = None,
        *,
        weights: Mapping[EventType, float] | None = None,
        affinity_cap: float = 15.0,
        items_per_user: int = 50,
        users_per_item: int = 200,
        neighbours: int = 20,
        min_overlap: int = 1,
        neighbour_pool: int = 100,
    ) -> None:
        """``neighbour_pool``: how many users (per queried user, most items in common first)
        have their rows read to compute exact similarities; the ``neighbours`` best of them are
        used. It bounds the third round trip of :meth:`candidates`."""
        if items_per_user < 1 or users_per_item < 1 or neighbours < 1 or neighbour_pool < 1:
            raise ValueError("caps, neighbours and neighbour_pool must be at least 1")
        self.client = client
        self.keys = keys or Keys()
        self.weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        self.affinity_cap = affinity_cap
        self.items_per_user = items_per_user
        self.users_per_item = users_per_item
        self.neighbours = neighbours
        self.min_overlap = min_overlap
        self.neighbour_pool = neighbour_pool
        self.handoffs = Handoffs(client, self.keys, Source.USER_CF.value)

    @property
    def source(self) -> Source:
        return Source.USER_CF

    def new_model(self, items_per_user: int = _UNBOUNDED) -> UserCF:
        """An empty pure model with this source's parameters (and an unbounded index)."""
        return UserCF(
            weights=self.weights,
            affinity_cap=self.affinity_cap,
            items_per_user=items_per_user,
            users_per_item=_UNBOUNDED,
            neighbours=self.neighbours,
            min_overlap=self.min_overlap,
        )

    async def _rows(self, user_ids: Sequence[str]) -> dict[str, dict[str, Entry]]:
        """Each user's row (one ``MGET``)."""
        return await user_strings(self.client, self.keys, user_ids, "ucf_row", parse_row)

    async def learn(self, events: Sequence[Event], learnt: Marks | None = None) -> None:
        """Item events with a non-zero weight; four round trips per batch: the rows; a step
        per partition (all in one round trip) writing its users' rows with its marks, handing
        each index its entries and trims (streams/sources/handoff.py); those applied, and
        dropped from the lists."""
        item_events = [
            e for e in events if e.item_id is not None and self.weights.get(e.type, 0.0) != 0.0
        ]
        if not item_events:
            return
        user_ids = list(dict.fromkeys(e.user_id for e in item_events))
        rows = await self._rows(user_ids)
        model = self.new_model(self.items_per_user)
        for user_id, row in rows.items():
            model.restore_user(user_id, row)
        for e in item_events:
            assert e.item_id is not None
            model.add(e.user_id, e.item_id, e.type, e.ts)

        writes = ByPartition(self.keys)
        trimmed: dict[int, set[str]] = {}
        for user_id in user_ids:
            key, part = self.keys.user(user_id, "ucf_row"), self.keys.partition_of(user_id)
            own = writes[part]
            old = rows[user_id]
            new = {
                item_id: (a, model.index[item_id][user_id])
                for item_id, a in model.items.get(user_id, {}).items()
            }
            if new != old:
                own.add(*(("SET", key, encode_row(new)) if new else ("DEL", key)))
            for item_id in old.keys() - new.keys():
                own.add("ZREM", self.keys.item(item_id, "ucf_users"), user_id)
            for item_id, (_, ts) in new.items():
                if item_id not in old or old[item_id][1] != ts:
                    own.add("ZADD", self.keys.item(item_id, "ucf_users"), ts, user_id)
                    trimmed.setdefault(part, set()).add(item_id)
        for part, items in trimmed.items():
            for item_id in sorted(items):
                # Keep the most recent users; ties go by member, as the pure model's (ts, user).
                index = self.keys.item(item_id, "ucf_users")
                writes[part].add("ZREMRANGEBYRANK", index, 0, -self.users_per_item - 1)
        await self.handoffs.run(writes.steps(learnt))

    async def erase(self, user_ids: Sequence[str]) -> dict[str, int]:
        """Remove the users' rows and every index entry of theirs; returns per user how many
        entries (user, item) were removed."""
        unique = list(dict.fromkeys(user_ids))
        if not unique:
            return {}
        rows = await self._rows(unique)
        writes = ByPartition(self.keys)
        for user_id, row in rows.items():
            own = writes.user(user_id)
            for item_id in row:
                own.add("ZREM", self.keys.item(item_id, "ucf_users"), user_id)
            own.add("DEL", self.keys.user(user_id, "ucf_row"))
        await self.handoffs.run(writes.steps())
        return {u: len(row) for u, row in rows.items()}

    async def candidates(
        self,
        user_ids: Sequence[str],
        exclude: Mapping[str, frozenset[str]],
        k: int,
        now: float,
    ) -> dict[str, list[Candidate]]:
        """Three round trips for the whole batch: the users' rows; the indexes of their items;
        the rows of each user's neighbour pool. Scores are ``Σ_v sim(u, v)·a_vi`` over the best
        ``neighbours`` of the pool, as the pure model computes them."""
        result: dict[str, list[Candidate]] = {u: [] for u in user_ids}
        if not result or k <= 0:
            return result
        rows = await self._rows(list(result))
        pools = await self._neighbour_pools(rows)
        if pools is None:  # none of the users has an item
            return result
        wanted = list(dict.fromkeys(v for pool in pools.values() for v in pool if v not in rows))
        if wanted:
            rows.update(await self._rows(wanted))
        # One model holds every row read (each restored once, not once per pool it is in);
        # each user's neighbours are still chosen among their own pool only.
        model = self.new_model()
        for member, row in rows.items():
            if row:
                model.restore_user(member, row)
        for user_id in result:
            if not rows[user_id]:
                continue
            # The scores of UserCF.candidates without its contributors (none reach a list).
            found = model.top_k(user_id, k, exclude.get(user_id, frozenset()), among=pools[user_id])
            result[user_id] = [Candidate(item, s, SIMILAR_SHOPPERS) for item, s in found]
        return result

    async def _neighbour_pools(
        self, rows: dict[str, dict[str, Entry]]
    ) -> dict[str, list[str]] | None:
        """Each user's neighbour pool, from the indexes of the items in their row (one round
        trip); None when no user has an item."""
        items = list(dict.fromkeys(i for row in rows.values() for i in row))
        if not items:
            return None
        pipe = self.client.pipeline(transaction=False)
        for item_id in items:
            queue_best(pipe, self.keys.item(item_id, "ucf_users"), self.users_per_item)
        # Each index as (user codes, times), members coded as Redis sent them: a batch reads
        # thousands of entries and keeps a few hundred users, decoded once each.
        code: dict[Any, int] = {}
        indexes = {}
        for item_id, reply in zip(items, await pipe.execute(), strict=True):
            members, times = best_arrays(reply)
            coded = (code.setdefault(m, len(code)) for m in members)
            indexes[item_id] = (np.fromiter(coded, np.intp, len(members)), times)
        names = [decoded(m) for m in code]
        own = {name: n for n, name in enumerate(names)}
        return {
            user_id: [
                other
                for other, _ in pool_of(
                    [indexes[i] for i in row],
                    own.get(user_id, len(names)),  # not indexed: a code no entry has
                    self.neighbour_pool,
                    names,
                )
            ]
            for user_id, row in rows.items()
        }
