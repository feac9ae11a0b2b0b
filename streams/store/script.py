"""The state script's calling convention (streams/lua/state.lua): its arguments and replies.

Every call passes a mode, a header of settings (:func:`script_header`), the number of popular
items to read and the records. The script returns each batch's outcomes, then one JSON payload
(the popular items, the popularity landmark and each affected user's view), then the
partitions found behind if any (:func:`decode_reply`). A view names the user's followees; what
they did lives in their own partitions' slots, read apart (:meth:`Reply.followees`) and joined
by :func:`decode_batch`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.state import Outcome, PopularView, SocialProof, StateParams, UserView
from streams.keys import Keys, decoded
from streams.store.interface import BatchResult, ReadParams, TrendingParams
from streams.store.offsets import Position

_OUTCOMES = {0: Outcome.DUPLICATE, 1: Outcome.APPLIED, 2: Outcome.REJECTED, 3: Outcome.ERASED}


#: A followee's latest actions as the store reads them: ("type<TAB>item", ts), newest first.
Actions = Sequence[tuple[str, float]]


@dataclass(frozen=True, slots=True)
class Reply:
    """The script's reply (``process`` and ``read`` modes), decoded but for the followees'
    actions, which the caller reads from their slots."""

    outcomes: list[Outcome]
    popular: PopularView  # read apart, by the store
    views: list[list[Any]]
    rewinds: dict[str, Position]
    #: The step's relay entries not delivered yet, as stored (streams/store/relay.py).
    pending: list[str] = field(default_factory=list)

    def followees(self) -> set[str]:
        """Every followee a view names (each user's are last in the view)."""
        return {f for view in self.views for f in json_array(view[-1])}

    def recent_items(self) -> set[str]:
        """Every recent item a view names (second in the view)."""
        return {item for view in self.views for item in json_array(view[1])}


def behind(raw: list[Any]) -> bool:
    """Whether a step found a partition's stored offset behind the one expected (it applied
    nothing: the consumer goes back)."""
    return len(raw) > 2 and bool(raw[2])


def decode_reply(raw: list[Any]) -> Reply:
    outcomes_raw, payload = raw[0], raw[1]
    if behind(raw):
        rewinds = {decoded(p): Position(int(a), int(pub)) for p, a, pub in orjson.loads(raw[2])}
        return Reply([], PopularView((), 0.0), [], rewinds)
    views_raw, pending = orjson.loads(payload)
    outcomes = [_OUTCOMES[o] for o in outcomes_raw]
    return Reply(outcomes, PopularView((), 0.0), json_array(views_raw), {}, json_array(pending))


def decode_batch(reply: Reply, actions: Mapping[str, Actions]) -> BatchResult:
    """A batch's result: the reply's views with the followees' ``actions`` as social proof."""
    if reply.rewinds:
        return BatchResult([], {}, reply.popular, reply.rewinds)
    views: dict[str, UserView] = {}
    for view in reply.views:
        user, recent_raw, aff_raw, seen, bought, hidden, inbox, followees = view
        recent = tuple(
            (item, float(aff))
            for item, aff in zip(json_array(recent_raw), json_array(aff_raw), strict=True)
        )
        views[user] = UserView(
            user_id=user,
            recent=recent,
            neighbours={},  # the store reads them apart (streams/runtime/itemcache.py)
            seen=frozenset(json_array(seen)),
            bought=frozenset(json_array(bought)),
            hidden=frozenset(json_array(hidden)),
            social=_social_proof(json_array(inbox), json_array(followees), actions),
        )
    return BatchResult(reply.outcomes, views, reply.popular)


def script_header(
    keys: Keys, p: StateParams, read: ReadParams, trending: TrendingParams
) -> list[str | int | float]:
    """The script's header (ARGV[2..10])."""
    return [
        keys.prefix,
        p.history_size,
        p.dedupe_window,
        p.popularity_cap,
        trending.span,
        read.recent_items,
        repr(float(trending.bucket_s)),
        repr(float(p.seen_window_s)),
        p.seen_cap,
    ]


def _social_proof(
    inbox: list[str], followees: list[str], actions: Mapping[str, Actions]
) -> tuple[SocialProof, ...]:
    """Proofs from the script's flat replies, in MemoryState.user_view's order."""
    proofs = []
    for key, ts in _pairs(inbox):
        sharer, _, item = key.partition("\t")
        proofs.append(SocialProof(item, sharer, "share", ts))
    for followee in followees:
        for key, ts in actions.get(followee, ()):
            action, _, item = key.partition("\t")
            proofs.append(SocialProof(item, followee, action, ts))
    return tuple(sorted(proofs, key=lambda p: (p.item_id, p.user_id, p.action)))


def json_array(value: Any) -> list[Any]:
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
