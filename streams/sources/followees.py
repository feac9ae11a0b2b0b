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

A batch costs two round trips: the batch users' edges and items, then one ``MULTI`` with the
source's marks (:func:`streams.sources.progress.commit`) around one script call that writes
what changed. A learner that crashes reads the batch again and learns only what is past the
marks. Candidates cost two more: the users' edges and items, their followees' items.

Erasure: the script writes nothing of a user whose erasure mark exists (it is set before
anything is erased), nor an edge naming one, so a batch read before an erasure and written
after it cannot bring her back. :meth:`RedisFollowees.erase` deletes her three keys and her id
from the ``fol_followers`` of those she follows and from the ``fol_following`` of those who
follow her (her ``fol_followers``). Candidates carry the one anonymous ``FOLLOWED`` reason, so
no pool names a followee.

The half-life: eval decays with the learned popularity half-life, which the worker does not
learn yet (docs/quality.md); the worker's source takes the configured half-life its social
proof decays with (``RecommendParams.social_half_life_s``, given by the factory).

>>> decode_items(encode_items({"lamp": 10.0, "rug": 12.5}))
{'lamp': 10.0, 'rug': 12.5}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from models.events import ITEM_TYPES, Event, EventType
from models.followees import FOLLOWEES_READ, FolloweeItems
from models.hybrid import FOLLOWED
from models.recommend import Candidate, Source
from streams.keys import Keys, decoded, user_strings
from streams.sources.progress import Learnt, commit

#: ARGV[1]: JSON, per user ``[erased mark, items key, items (a string to set, "" to delete,
#: false: unchanged), following key, user, adds [[followee, mark, followers key, since]],
#: drops [[followee, followers key]]]``. Nothing of an erased user is written, nor an edge
#: naming one.
_WRITE = """
local function live(mark) return redis.call('EXISTS', mark) == 0 end
for _, u in ipairs(cjson.decode(ARGV[1])) do
  if live(u[1]) then
    if u[3] == '' then redis.call('DEL', u[2]) elseif u[3] then redis.call('SET', u[2], u[3]) end
    for _, a in ipairs(u[6]) do
      if live(a[2]) then
        redis.call('ZADD', u[4], a[4], a[1])
        redis.call('SADD', a[3], u[5])
      end
    end
    for _, d in ipairs(u[7]) do
      redis.call('ZREM', u[4], d[1])
      redis.call('SREM', d[2], u[5])
    end
  end
end
return 0
"""

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

    async def learn(self, events: Sequence[Event], learnt: Learnt | None = None) -> None:
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
        changes = [c for u in users if (c := self._changes(u, stored[u], model))]

        def queue(pipe: Any) -> None:
            if changes:
                pipe.eval(_WRITE, 0, orjson.dumps(changes))

        await commit(self.client, learnt, queue)

    def _changes(self, user: str, stored: Stored, model: FolloweeItems) -> list[Any] | None:
        """What the script writes for the user (None: nothing changed)."""
        following, latest = stored
        now_following = model.following.get(user, {})
        now_latest = model.latest.get(user, {})
        items: str | bool = False
        if list(now_latest.items()) != list(latest.items()):
            items = encode_items(now_latest).decode() if now_latest else ""
        keys = self.keys
        adds = [
            [f, keys.erased(f), keys.user(f, "fol_followers"), repr(since)]
            for f, since in now_following.items()
            if following.get(f) != since
        ]
        drops = [[f, keys.user(f, "fol_followers")] for f in following if f not in now_following]
        if items is False and not (adds or drops):
            return None
        return [
            keys.erased(user),
            keys.user(user, "fol_items"),
            items,
            keys.user(user, "fol_following"),
            user,
            adds,
            drops,
        ]

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
        pipe = self.client.pipeline(transaction=True)
        for n, user in enumerate(unique):
            following, followers, items = replies[3 * n : 3 * n + 3]
            for followee in map(decoded, following):
                pipe.srem(keys.user(followee, "fol_followers"), user)
            for follower in map(decoded, followers):
                pipe.zrem(keys.user(follower, "fol_following"), user)
            fields = ("fol_items", "fol_following", "fol_followers")
            pipe.delete(*(keys.user(user, f) for f in fields))
            removed[user] = len(following) + len(followers) + len(decode_items(items))
        await pipe.execute()
        return removed
