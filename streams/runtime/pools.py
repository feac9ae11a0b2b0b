"""Each user's candidate pools, computed by the learner and read by the publish path.

The learner (streams/runtime/learner.py) teaches the sources (MF, content, user-CF, FBT) and then
asks them for each user's candidates; it keeps them in ``u:{user}:pools``, one JSON string per user.
The worker reads them for the users of a batch in one ``MGET`` instead of computing them: a list
uses the sources' latest learnt state, and learning never delays a publish.

The wire form is compact JSON, deflated, and keeps every reason (the worker explains from
it). The scores are the pools' own (:func:`models.recommend.source_pools`: MF's logits through
the sigmoid, only finite positive ones), so a list reads them as they are:

>>> from models.recommend import Reason, Source
>>> pools = {Source.FBT: {"case": (0.5, (Reason("phone", 0.123456789),))}}
>>> pools_json(encode_pools(pools))
b'{"v":4,"pools":{"fbt":[["case"],[0.5],[[["phone",0.1235,null,null]]]]}}'
>>> decode_pools(encode_pools(pools))[Source.FBT]["case"][1][0].contribution
0.1235
>>> decode_pools(encode_pools(pools), excluded=frozenset({"case"}))  # as a list reads them
{}
>>> decode_pools(b'{"v":3,"pools":{}}')  # an older form: ignored, not an error
{}
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from itertools import starmap
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from models.recommend import Pool, Reason, Source
from streams.keys import Keys
from streams.store.lua import Lua, run

log = logging.getLogger(__name__)

#: A user's pools, per source.
Pools = dict[Source, Pool]

#: The form of a stored pool; a learner writing another form makes readers ignore it (2 held
#: the sources' raw scores, MF's logits among them; 3 was the same JSON not deflated).
POOLS_VERSION = 4
#: zlib's fastest level. The pools were Redis's second family (1.7 kB of JSON for each user
#: active in a day): deflated they are a third of that, for 7 us of the worker's time a list
#: to inflate them (as long as parsing the JSON) and 20 us of the learner's to deflate; the
#: slower levels save 6 % more.
_DEFLATE_LEVEL = 1
#: Significant digits kept of a score or a contribution: the assembly only ranks and blends
#: them, and full floats were over half of a stored pool's bytes.
SCORE_DIGITS = 4
#: How long a user's pools are kept after the learner last wrote them. They are a cache of
#: the sources' state, rewritten at the user's next event, so Redis holds them only for
#: users active lately (about 8 kB each) instead of for everyone who ever shopped.
POOLS_TTL_S = 86_400

#: Writes a user's pools unless the user was erased meanwhile (the erasure's mark is set
#: before anything is deleted, so a learner batch racing an erasure cannot bring them back).
#: KEYS[1]: the pools key (the call's route, streams/store/lua.py); ARGV: the erasure mark's
#: key (the user's: the same slot), the pools, seconds to keep them.
_SET_UNLESS_ERASED = Lua("""
if redis.call('EXISTS', ARGV[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
""")


def encode_pools(pools: Mapping[Source, Pool]) -> bytes:
    """Per source: the item ids, the scores, and each candidate's reasons, or 0 where they
    are the previous candidate's (MF and user-CF give every candidate the same one)."""
    body = {}
    for source, pool in pools.items():
        if not pool:
            continue
        reasons: list[Any] = []
        previous: Sequence[Any] | None = None
        for _, why in pool.values():
            same = why == previous
            reasons.append(0 if same else [_reason(r) for r in why])
            previous = why
        body[source.value] = [list(pool), [_short(score) for score, _ in pool.values()], reasons]
    return zlib.compress(orjson.dumps({"v": POOLS_VERSION, "pools": body}), _DEFLATE_LEVEL)


def pools_json(raw: bytes | str) -> bytes | str:
    """The JSON of stored pools: inflated, or as it is if it was stored as JSON (before
    version 4), so that :func:`decode_pools` can tell its version."""
    if isinstance(raw, str) or raw[:1] == b"{":
        return raw
    return zlib.decompress(raw)


def _reason(reason: Reason | tuple[float, str]) -> list[Any]:
    """A reason's fields; item-CF's ``(contribution, item)`` pairs read as reasons of the item."""
    if not isinstance(reason, Reason):
        reason = Reason(reason[1], reason[0])
    return [reason.item_id, _short(reason.contribution), reason.user_id, reason.action]


def _short(value: float) -> float:
    """``value`` to :data:`SCORE_DIGITS` significant digits (``repr`` then prints few)."""
    return float(f"{value:.{SCORE_DIGITS}g}")


def decode_pools(raw: bytes | str, excluded: AbstractSet[str] = frozenset()) -> Pools:
    """The pools without the ``excluded`` items, or none if ``raw`` is not this version's
    form (written by an older learner, or damaged): the learner rewrites them at the user's
    next event, and a list goes out without them meanwhile rather than not at all."""
    try:
        return _decode(orjson.loads(pools_json(raw)), excluded)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, KeyError, zlib.error):
        log.warning(
            "a user's candidate pools are unreadable; ignored until the learner rewrites them"
        )
        return {}


def _decode(document: Any, excluded: AbstractSet[str]) -> Pools:
    # Runs for every list: one pass per source, the reasons built once per run of equal ones.
    if document.get("v") != POOLS_VERSION:
        return {}
    pools: Pools = {}
    for source, (items, scores, reasons) in document["pools"].items():
        pool: Pool = {}
        current: tuple[Reason, ...] = ()
        for item, score, why in zip(items, scores, reasons, strict=True):
            if why != 0:
                current = tuple(starmap(Reason, why))
            if item not in excluded:
                pool[item] = (score, current)
        if pool:
            pools[Source(source)] = pool
    return pools


class PoolStore:
    """``u:{user}:pools`` in Redis: written by the learner, read by the worker."""

    def __init__(self, client: aioredis.Redis, keys: Keys | None = None) -> None:
        self.client = client
        self.keys = keys or Keys()

    async def read(self, user_ids: Sequence[str]) -> dict[str, bytes | None]:
        """The users' stored pools as they are (one ``MGET``): what :meth:`candidates` decodes.
        The publish path reads them beside its state update (streams/pipeline/processor.py)."""
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
        for user, excluded in exclude.items():
            value = known[user]
            if value is not None and (pools := decode_pools(value, excluded)):
                found[user] = pools
        return found

    async def put(self, pools: Mapping[str, Mapping[Source, Pool]]) -> None:
        """Keep each user's pools (one round trip; skipped for users erased meanwhile)."""
        if not pools:
            return
        calls = [
            _SET_UNLESS_ERASED.call(
                self.keys.user(user, "pools"),
                [self.keys.erased(user), encode_pools(by_source), POOLS_TTL_S],
            )
            for user, by_source in pools.items()
        ]
        await run(self.client, calls)

    async def erase(self, user_ids: Sequence[str]) -> int:
        if not user_ids:
            return 0
        return int(await self.client.delete(*(self.keys.user(u, "pools") for u in user_ids)))
