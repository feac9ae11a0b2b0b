"""Followees' latest items, by trust, in Redis (:class:`RedisFollowees`): eval's ``followees``
source for the worker. The maths is :class:`models.followees.FolloweeItems`; this module keeps
its state where every learner and worker can read it, all per user:

* ``u:{user}:fol_items``: JSON ``[[item, last ts], …]``, oldest first: the user's latest
  items of positive weight, what the user's followers read and what the user's trust in each
  followee is computed from when scoring;
* ``u:{user}:fol_following``: zset followee -> since, the user's most recent
  :data:`~models.followees.FOLLOWEES_READ` follows (the earliest go first), so a request
  reads every edge kept;
* ``u:{user}:fol_followers``: set of the users who keep this one in ``fol_following``: the
  reverse index erasure needs (each follower's learner adds or removes only its own id). Like
  the core state's ``followers`` it grows with the user's audience; everything else is
  bounded per user.

Each key follows from its user's own events (the reverse index from its members' own), and
no trust is stored: whichever learner learns a user, and however far the others' partitions
had got, the state is the one model's fed the stream once. The source keeps its own follow
graph instead of reading the core state's ``following`` set, which has no follow times.

A batch costs four round trips: the batch users' edges and items; a step per partition, in
one round trip, writing what changed of its users with the source's marks
(streams/sources/progress.py); one applying, in each followee's slot, the reverse index
entries the steps handed off (streams/sources/handoff.py), and one dropping them from the
lists. A learner that crashes reads the
batch again and learns only what is past the marks; what a step handed off is applied once.
Candidates cost two more: the users' edges and items, their followees' items.

Erasure: a step writes nothing of a user whose erasure mark exists (it is set before anything
is erased), so a batch read before an erasure and written after it cannot bring her back. An
edge to her written meanwhile by a follower's step is handed to her slot, where her mark is
read: her reverse index does not name the follower, and the edge is handed back out of the
follower's ``fol_following``. :meth:`RedisFollowees.erase` deletes her three keys and hands
the removal of her id to the ``fol_followers`` of those she follows and to the
``fol_following`` of those who follow her (her ``fol_followers``). Candidates carry the one
anonymous ``FOLLOWED`` reason, so no pool names a followee.

The half-life: eval decays with the learned popularity half-life, which the worker does not
learn yet (docs/quality.md); the worker's source takes the configured half-life its social
proof decays with (``RecommendParams.social_half_life_s``, given by the factory).

>>> decode_items(encode_items({"lamp": 10.0, "rug": 12.5}))
{'lamp': 10.0, 'rug': 12.5}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
import redis.asyncio as aioredis

from models.events import ITEM_TYPES, Event, EventType
from models.followees import FOLLOWEES_READ, FolloweeItems
from models.hybrid import FOLLOWED
from models.recommend import Candidate, Source
from streams.keys import Keys, decoded, user_strings
from streams.sources.handoff import Handoffs
from streams.sources.progress import Marks
from streams.sources.writes import ByPartition, Op, Writes, payload

#: One user's stored state: following (followee -> since), items (item -> last ts).
Stored = tuple[dict[str, float], dict[str, float]]


def encode_items(items: Mapping[str, float]) -> bytes:
    return orjson.dumps([[item, ts] for item, ts in items.items()])


def decode_items(raw: bytes | str | None) -> dict[str, float]:
    """A stored item list, oldest first (None: the user has none)."""
    if not raw:
        return {}
    return {item: float(ts) for item, ts in orjson.loads(raw)}


def _teaches(event: Event) -> bool:
    if event.type in (EventType.FOLLOW, EventType.UNFOLLOW):
        return event.target_user_id is not None
    return event.item_id is not None and event.type in ITEM_TYPES


class RedisFollowees:
    """Followees' latest items for the worker, learnt by the learner."""

    source = Source.FOLLOWEES

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys | None = None,
        *,
        weights: Mapping[EventType, float] | None = None,
        half_life_s: float,
        followees: int = FOLLOWEES_READ,
    ) -> None:
        if half_life_s <= 0 or followees < 1:
            raise ValueError("half_life_s and followees must be positive")
        self.client = client
        self.keys = keys or Keys()
        self.weights = weights
        self.half_life_s = half_life_s
        self.followees = followees
        self.handoffs = Handoffs(client, self.keys, Source.FOLLOWEES.value)

    def new_model(self) -> FolloweeItems:
        """An empty pure model with this source's parameters (every kept edge is read)."""
        return FolloweeItems(
            self.weights, followees_read=self.followees, followees_kept=self.followees
        )

    async def _read(self, user_ids: Sequence[str]) -> dict[str, Stored]:
        """Each user's edges and items (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for user in user_ids:
            pipe.zrange(self.keys.user(user, "fol_following"), 0, -1, withscores=True)
            pipe.get(self.keys.user(user, "fol_items"))
        replies = await pipe.execute()
        found = {}
        for n, user in enumerate(user_ids):
            edges, items = replies[2 * n : 2 * n + 2]
            found[user] = ({decoded(f): float(since) for f, since in edges}, decode_items(items))
        return found

    async def learn(self, events: Sequence[Event], learnt: Marks | None = None) -> None:
        """Follows, unfollows and item events: their users' state is restored into a
        throwaway model, the events applied, and what changed written with the marks. No
        other user's state is read: an event changes only its own user's."""
        mine = [e for e in events if _teaches(e)]
        if not mine:
            return
        users = list(dict.fromkeys(e.user_id for e in mine))
        stored = await self._read(users)
        model = self.new_model()
        for user, (following, latest) in stored.items():
            model.restore_user(user, following=following, latest=latest)
        for event in mine:
            model.learn(event)
        writes = ByPartition(self.keys)
        for user in users:
            self._write(writes.user(user), user, stored[user], model)
        await self.handoffs.run(writes.steps(learnt))

    def _write(self, writes: Writes, user: str, stored: Stored, model: FolloweeItems) -> None:
        """What changed of the user's, unless she was erased meanwhile. Each edge added is
        handed to the followee's slot: her reverse index names the user there unless she was
        erased, in which case the edge is taken back out of the user's ``fol_following``."""
        following, latest = stored
        now_following = model.following.get(user, {})
        now_latest = model.latest.get(user, {})
        keys = self.keys
        mine = Writes(keys, writes.stem)
        if list(now_latest.items()) != list(latest.items()):
            items = keys.user(user, "fol_items")
            mine.add(*(("SET", items, encode_items(now_latest)) if now_latest else ("DEL", items)))
        edges = keys.user(user, "fol_following")
        for f, since in now_following.items():
            if following.get(f) != since:
                mine.add("ZADD", edges, since, f)
                back: Op = ["!out", writes.stem, payload([["ZREM", edges, f]])]
                fans = keys.user(f, "fol_followers")
                live: Op = ["!live", keys.erased(f), 1, 1]
                mine.to(keys.stem_of(fans), live, ["SADD", fans, user], back)
        for f in following:
            if f not in now_following:
                mine.add("ZREM", edges, f)
                mine.add("SREM", keys.user(f, "fol_followers"), user)
        writes.guarded(keys.erased(user), mine)

    async def candidates(
        self,
        user_ids: Sequence[str],
        exclude: Mapping[str, frozenset[str]],
        k: int,
        now: float,
    ) -> dict[str, list[Candidate]]:
        """Two round trips for the whole batch: the users' edges and own items (their trust
        is computed from them); their followees' items. Scores are the pure model's."""
        result: dict[str, list[Candidate]] = {u: [] for u in user_ids}
        if not result or k <= 0:
            return result
        stored = await self._read(list(result))
        wanted = sorted({f for following, _ in stored.values() for f in following} - set(result))
        if not any(following for following, _ in stored.values()):
            return result
        model = self.new_model()
        found = await user_strings(self.client, self.keys, wanted, "fol_items", decode_items)
        for followee, latest in found.items():
            model.restore_user(followee, latest=latest)
        for user, (following, latest) in stored.items():
            model.restore_user(user, following=following, latest=latest)
        for user in result:
            top = model.top_k(
                user, k, exclude.get(user, frozenset()), now=now, half_life_s=self.half_life_s
            )
            result[user] = [Candidate(item, score, FOLLOWED) for item, score in top]
        return result

    async def erase(self, user_ids: Sequence[str]) -> dict[str, int]:
        """Delete the users' keys and their ids from the others' edges and reverse index;
        returns per user how many entries went (items, edges both ways)."""
        unique = list(dict.fromkeys(user_ids))
        if not unique:
            return {}
        keys = self.keys
        pipe = self.client.pipeline(transaction=False)
        for user in unique:
            pipe.zrange(keys.user(user, "fol_following"), 0, -1)
            pipe.smembers(keys.user(user, "fol_followers"))
            pipe.get(keys.user(user, "fol_items"))
        replies = await pipe.execute()
        removed: dict[str, int] = {}
        writes = ByPartition(keys)
        for n, user in enumerate(unique):
            following, followers, items = replies[3 * n : 3 * n + 3]
            own = writes.user(user)
            for followee in map(decoded, following):
                own.add("SREM", keys.user(followee, "fol_followers"), user)
            for follower in map(decoded, followers):
                own.add("ZREM", keys.user(follower, "fol_following"), user)
            fields = ("fol_items", "fol_following", "fol_followers")
            own.add("DEL", *[keys.user(user, f) for f in fields])
            removed[user] = len(following) + len(followers) + len(decode_items(items))
        await self.handoffs.run(writes.steps())
        return removed
