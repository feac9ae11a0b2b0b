"""One item-CF step: windows and learnt ids in the users' slot, the counts in each item's home.

:func:`count_writes` is the step in the slot of one partition's users: their windows and the
events it learns (refused whole if one was learnt already, or a user was erased meanwhile),
handing each item's home its share of the increments (streams/lua/itemcf.lua: its norms in
one op, each row's side of its changed pairs in one, the caps; Redis spends more on a
script's calls than on the commands, so a row's removals are one call). So a crash never
leaves counts and windows disagreeing, nor counts an event twice: the hand-offs are in the
step, and each is applied once. What the ops report becomes the :class:`Sums`
(:func:`sums`), read back for what they did not report (a hand-off applied by an earlier
attempt). :func:`neighbour_writes` are the neighbour lists Python scored, one plain step per
home: a crash before them leaves those pairs' lists one step old until the pairs change again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from models.cooccurrence import Deltas, Window
from models.events import Event
from models.state import StateParams
from streams.keys import Keys, decoded
from streams.sources.progress import learnt_generation, learnt_keys, learnt_member
from streams.sources.writes import Writes
from streams.store.lua import Arg

Pair = tuple[str, str]
#: Members of one row an op changes at most (:func:`_chunks`).
OP_MEMBERS = 500


def encode_window(window: Window) -> bytes:
    return orjson.dumps([[item, a, ts] for item, (a, ts) in window.items()])


@dataclass(frozen=True, slots=True)
class Sums:
    """A step's changed pairs' dots (None: gone), the norms of the items in them, and the
    sum and count of all norms above zero (over every home)."""

    dots: dict[Pair, float | None]
    norm2: dict[str, float]
    total: float
    count: int


def _home(keys: Keys, item: str) -> str:
    return keys.partition_stem(keys.home(item))


def count_writes(
    keys: Keys,
    params: StateParams,
    part: int,
    windows: Mapping[str, Window],
    deltas: Deltas,
    learnt: Mapping[str, Sequence[Event]],
) -> Writes:
    """The step of partition ``part``'s users: their ``windows`` and the ``learnt`` events,
    handing ``deltas`` to the items' homes (for each home: norms, pairs, caps, in order)."""
    writes = Writes(keys, keys.partition_stem(part))
    for user, window in windows.items():
        key = keys.user(user, "cf_window")
        writes.add(*(("SET", key, encode_window(window)) if window else ("DEL", key)))
        ids = [learnt_member(e.event_id) for e in learnt.get(user, ())]
        if ids:
            generation = learnt_generation(params.dedupe_window)
            writes.add("!learnt", *learnt_keys(keys, user), generation, *ids)
    pairs = [(pair, amount) for pair, amount in deltas.pairs.items() if amount != 0.0]
    asked = dict.fromkeys([*deltas.norms, *(i for (a, b), _ in pairs for i in (a, b))])
    homes: dict[str, list[Arg]] = {}
    for item in asked:
        homes.setdefault(_home(keys, item), []).extend((item, deltas.norms.get(item, 0.0)))
    for home, changes in homes.items():
        for ops in _chunks(changes):
            writes.to(home, ["!norms", *ops])
    rows: dict[str, list[Arg]] = {}
    grown: set[str] = set()
    for (a, b), amount in pairs:
        for x, y in ((a, b), (b, a)):
            rows.setdefault(x, []).extend((y, amount))
            if amount > 0.0:
                grown.add(x)
    for x, changes in rows.items():
        for ops in _chunks(changes):
            writes.to(_home(keys, x), ["!row", x, *ops])
    for x in sorted(grown):  # only a row that took a new pair can be past its cap
        writes.to(_home(keys, x), ["!cap", x, params.cooccurrence_cap])
    return writes


def _pair(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


async def sums(client: aioredis.Redis, keys: Keys, deltas: Deltas, reported: Sequence[Any]) -> Sums:
    """The step's sums from what its ops reported, reading what they did not (hand-offs
    applied by an earlier attempt) and every home's share of the norms' sum and count."""
    dots: dict[Pair, float | None] = {}
    norms: dict[str, float] = {}
    gone: set[Pair] = set()
    for kind, *rest in reported:
        kind = decoded(kind)
        if kind == "norm":
            norms[decoded(rest[0])] = float(rest[1])
        elif kind == "row":
            a = decoded(rest[0])
            for b, dot in zip(rest[1::2], rest[2::2], strict=True):
                dots[_pair(a, decoded(b))] = None if dot is None else float(dot)
        else:  # a cap's dropped pairs
            a = decoded(rest[0])
            gone.update(_pair(a, decoded(b)) for b in rest[1])
    changed = [pair for pair, amount in deltas.pairs.items() if amount != 0.0]
    items = list(dict.fromkeys([*deltas.norms, *(i for pair in changed for i in pair)]))
    unread = [pair for pair in changed if pair not in dots]
    unknown = [item for item in items if item not in norms]
    async with client.pipeline(transaction=False) as pipe:
        for a, b in unread:
            pipe.zscore(keys.item(a, "dot"), b)
        for item in unknown:
            pipe.zscore(keys.partition(keys.home(item), "norm2"), item)
        for p in range(keys.partitions):
            pipe.hmget(keys.partition(p, "cf_norms"), "total", "count")
        replies = await pipe.execute()
    for pair, dot in zip(unread, replies, strict=False):
        dots[pair] = None if dot is None else float(dot)
    for item, norm in zip(unknown, replies[len(unread) :], strict=False):
        norms[item] = 0.0 if norm is None else float(norm)
    shares = replies[len(unread) + len(unknown) :]
    return Sums(
        dots={pair: None if pair in gone else dots[pair] for pair in changed},
        norm2={item: norms[item] for item in items},
        total=sum(float(t or 0) for t, _ in shares),
        count=sum(int(c or 0) for _, c in shares),
    )


def neighbour_writes(keys: Keys, params: StateParams, scored: Mapping[Pair, float]) -> list[Writes]:
    """The neighbour lists' changes, a :class:`Writes` per home: each list's pairs in one
    ``ZADD`` (and one ``ZREM`` for those at 0: out of the list), then each list that grew
    trimmed to its size (as Cooccurrence.apply)."""
    added: dict[str, list[Arg]] = {}
    removed: dict[str, list[Arg]] = {}
    for (a, b), s in scored.items():
        for x, y in ((a, b), (b, a)):
            if s > 0.0:
                added.setdefault(x, []).extend((s, y))
            else:
                removed.setdefault(x, []).append(y)
    per: dict[str, Writes] = {}
    for x in dict.fromkeys([*added, *removed]):
        stem = _home(keys, x)
        writes = per.setdefault(stem, Writes(keys, stem))
        for members in _chunks(added.get(x, [])):
            writes.to(stem, ["ZADD", keys.item(x, "sim"), *members])
        for members in _chunks(removed.get(x, []), 1):
            writes.to(stem, ["ZREM", keys.item(x, "sim"), *members])
    for x in sorted(added):
        per[_home(keys, x)].add("ZREMRANGEBYRANK", keys.item(x, "sim"), 0, -params.neighbours - 1)
    return list(per.values())


def _chunks(args: list[Arg], width: int = 2) -> list[list[Arg]]:
    """A row's members (``width`` arguments each) in ops of at most :data:`OP_MEMBERS`: Lua
    passes an op's arguments on the C stack (``unpack``), which holds about 8,000.

    >>> len(_chunks(["b", 1.0] * 1001)), len(_chunks(["b"] * 1001, 1))
    (3, 3)
    """
    size = OP_MEMBERS * width
    return [args[n : n + size] for n in range(0, len(args), size)]
