"""Each user's candidate pools, computed by the learner and read by the publish path.

The learner (streams/learner.py) teaches the sources (MF, content, user-CF, FBT) and then asks
them for each user's candidates; it keeps them in ``u:{user}:pools``, one JSON string per user.
The worker reads them for the users of a batch in one ``MGET`` instead of computing them: a list
uses the sources' latest learnt state, and learning never delays a publish.

The wire form is compact and keeps every reason (the worker explains from it):

>>> from models.recommend import Candidate, Reason, Source
>>> pools = {Source.FBT: [Candidate("case", 0.5, (Reason("phone", 0.123456789),))]}
>>> encode_pools(pools)
b'{"v":2,"pools":{"fbt":[["case"],[0.5],[[["phone",0.1235,null,null]]]]}}'
>>> decode_pools(encode_pools(pools))[Source.FBT][0].reasons[0].contribution
0.1235
>>> decode_pools(b'{"fbt":[["case",0.5,[]]]}')  # an older form: ignored, not an error
{}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import starmap
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from models.recommend import Candidate, Reason, Source
from streams.keys import Keys

log = logging.getLogger(__name__)

Pools = dict[Source, list[Candidate]]

#: The form of a stored pool; a learner writing another form makes readers ignore it.
POOLS_VERSION = 2
#: Significant digits kept of a score or a contribution: the assembly only ranks and blends
#: them, and full floats were over half of a stored pool's bytes.
SCORE_DIGITS = 4
#: How long a user's pools are kept after the learner last wrote them. They are a cache of
#: the sources' state, rewritten at the user's next event, so Redis holds them only for
#: users active lately (about 8 kB each) instead of for everyone who ever shopped.
POOLS_TTL_S = 86_400

#: Writes a user's pools unless the user was erased meanwhile (the erasure's mark is set
#: before anything is deleted, so a learner batch racing an erasure cannot bring them back).
#: KEYS: pools key, erased-mark key; ARGV: JSON, seconds to keep it.
_SET_UNLESS_ERASED = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


def encode_pools(pools: Mapping[Source, Sequence[Candidate]]) -> bytes:
    """Per source: the item ids, the scores, and each candidate's reasons, or 0 where they
    are the previous candidate's (MF and user-CF give every candidate the same one)."""
    body = {}
    for source, found in pools.items():
        if not found:
            continue
        reasons: list[Any] = []
        previous: tuple[Reason, ...] | None = None
        for c in found:
            same = c.reasons == previous
            reasons.append(0 if same else [[r.item_id, _short(r.contribution), r.user_id, r.action]
                                           for r in c.reasons])  # fmt: skip
            previous = c.reasons
        body[source.value] = [[c.item_id for c in found], [_short(c.score) for c in found], reasons]
    return orjson.dumps({"v": POOLS_VERSION, "pools": body})


def _short(value: float) -> float:
    """``value`` to :data:`SCORE_DIGITS` significant digits (``repr`` then prints few)."""
    return float(f"{value:.{SCORE_DIGITS}g}")


def decode_pools(raw: bytes | str) -> Pools:
    """The pools, or none if ``raw`` is not this version's form (written by an older learner,
    or damaged): the learner rewrites them at the user's next event, and a list goes out
    without them meanwhile rather than not at all."""
    try:
        return _decode(orjson.loads(raw))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, KeyError):
        log.warning(
            "a user's candidate pools are unreadable; ignored until the learner rewrites them"
        )
        return {}


def _decode(document: Any) -> Pools:
    if document.get("v") != POOLS_VERSION:
        return {}
    pools: Pools = {}
    for source, (items, scores, reasons) in document["pools"].items():
        candidates = []
        current: tuple[Reason, ...] = ()
        for item, score, why in zip(items, scores, reasons, strict=True):
            if why != 0:
                current = tuple(starmap(Reason, why))
            candidates.append(Candidate(item, score, current))
        pools[Source(source)] = candidates
    return pools


class PoolStore:
    """``u:{user}:pools`` in Redis: written by the learner, read by the worker."""

    def __init__(self, client: aioredis.Redis, keys: Keys | None = None) -> None:
        self.client = client
        self.keys = keys or Keys()
        self._set = client.register_script(_SET_UNLESS_ERASED)

    async def read(self, user_ids: Sequence[str]) -> dict[str, bytes | None]:
        """The users' stored pools as they are (one ``MGET``): what :meth:`candidates` decodes.
        The publish path reads them beside its state update (streams/pipeline.py)."""
        if not user_ids:
            return {}
        raw = await self.client.mget([self.keys.user(u, "pools") for u in user_ids])
        return {u: cast(bytes | None, value) for u, value in zip(user_ids, raw, strict=True)}

    async def candidates(
        self,
        exclude: Mapping[str, frozenset[str]],
        now: float,
        read: Mapping[str, bytes | None] | None = None,
    ) -> dict[str, Pools]:
        """Per user in ``exclude``: the learner's latest pools without the excluded items
        (the same answer as ``SourceSet.candidates``, from what was computed ahead); ``read``
        holds what :meth:`read` already returned for some of them."""
        known = dict(read or {})
        missing = [u for u in exclude if u not in known]
        known.update(await self.read(missing))
        found: dict[str, Pools] = {}
        for user in exclude:
            value = known[user]
            if value is None:
                continue
            excluded = exclude[user]
            pools = {
                source: kept
                for source, candidates in decode_pools(value).items()
                if (kept := [c for c in candidates if c.item_id not in excluded])
            }
            if pools:
                found[user] = pools
        return found

    async def put(self, pools: Mapping[str, Mapping[Source, Sequence[Candidate]]]) -> None:
        """Keep each user's pools (one round trip; skipped for users erased meanwhile)."""
        if not pools:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for user, by_source in pools.items():
                keys = [self.keys.user(user, "pools"), self.keys.erased(user)]
                args: list[bytes | int] = [encode_pools(by_source), POOLS_TTL_S]
                await self._set(keys=keys, args=args, client=pipe)
            await pipe.execute()

    async def erase(self, user_ids: Sequence[str]) -> int:
        if not user_ids:
            return 0
        return int(await self.client.delete(*(self.keys.user(u, "pools") for u in user_ids)))
