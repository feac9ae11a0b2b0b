"""Every Redis key socialrec writes, built in one place.

Per-user keys all start with ``{prefix}u:{user_id}:`` so erasure can find everything a user
left behind (:func:`user_keys`); per-item keys start with ``{prefix}i:{item_id}:``. The Lua
script (streams/lua/state.lua) builds the same names from the prefix it is given; the store
contract suite checks that every key in Redis parses back through :func:`parse_key`.

>>> k = Keys("sr:")
>>> k.user("u1", "history")
'sr:u:u1:history'
>>> k.parse("sr:i:phone:sim")
('item', 'phone', 'sim')
>>> k.parse("sr:popularity")
('global', '', 'popularity')
>>> k.parse(k.trending(1796000000, "stream:live-3"))
('trending', 'stream:live-3', 'weights')
>>> k.parse(k.merchant_counts(29933400, "m1"))
('trending', 'm1', 'merchant_counts')
>>> k.parse(k.trending_published("category:phones"))
('trending', 'category:phones', 'published')
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import numpy as np
import numpy.typing as npt

T = TypeVar("T")

#: Per-user structures: history (zset item->last ts), affinity (hash item->a_ui), seen_events
#: (zset event_id->ts, dedupe window), event_log (hash event_id -> "weight<TAB>item" of the
#: events that added to popularity, so erasure can subtract them), bought/hidden (sets of
#: items), following/followers (sets of user ids), inbox (zset "sharer<TAB>item" -> ts of
#: shares received), outbox/senders (sets: whom the user shared with / who shared with them,
#: so erasure finds both sides), actions (zset "type<TAB>item" -> ts: recent likes and
#: purchases that followers see), seen_items (zset item -> last ts: everything touched within
#: the seen window, never recommended again), recommendations (latest list, JSON).
USER_FIELDS: Final = (
    "history",
    "affinity",
    "seen_events",
    "event_log",
    "trend_log",
    "bought",
    "hidden",
    "following",
    "followers",
    "inbox",
    "outbox",
    "senders",
    "actions",
    "seen_items",
    "recommendations",
    # Recommendation sources beside the core state (streams/sources/*): each erases its own.
    "mf",  # string: the user's MF factor row (float32 bytes)
    "mf_contrib",  # hash item -> float32 bytes: this user's summed updates to that item's row
    "content_profile",  # string: the user's decayed content profile (models.content export)
    "ucf_row",  # string: JSON item -> [affinity, time], the user's row in user-user CF
    "fbt_baskets",  # string: JSON of the user's retained baskets (frequently bought together)
    "cf_window",  # string: JSON of the user's item-CF window (streams/sources/itemcf.py)
    # The followees source (streams/sources/followees.py): per user, bounded but for the index.
    "fol_items",  # string: JSON [[item, last ts], …] oldest first, the user's latest items
    "fol_following",  # zset followee -> since: whom the user follows (the latest kept)
    "fol_followers",  # set: who keeps the user in fol_following (so erasure finds them)
    # The learner (streams/runtime/learner.py): erased with the user by LearnerState.erase.
    "pools",  # string: JSON, the sources' latest candidates for the user (streams/runtime/pools.py)
    "learnt",  # zset event_id -> ts: the user's events the sources have learnt (dedupe window)
)
#: Per-item structures, item-CF's (the learner writes them, the publish path reads sim): dot
#: (zset co-occurring item -> Σ a_ui·a_uj), sim (zset top-k cosine);
#: meta (hash: the item's catalog record), ucf_users (zset user -> last ts: user-CF's inverted
#: index; erasure walks the user's ucf_row to find them), fbt_pairs (zset co-bought item ->
#: baskets with both), content_sim (zset: nearest items by catalog content).
ITEM_FIELDS: Final = ("dot", "sim", "meta", "ucf_users", "fbt_pairs", "content_sim")
#: Global structures: norm2 (zset item -> Σ a_ui²), popularity (zset, forward-decayed),
#: landmark (string, the popularity landmark time), trending_changed (set of scopes to publish),
#: and the recommendation sources' shared tables (none of them holds a user id).
GLOBAL_FIELDS: Final = (
    "norm2",
    "cf_norms",  # hash: sum and count of the items' norm2 (item-CF's learned shrinkage)
    "popularity",
    "landmark",
    "trending_changed",
    "mf_items",  # hash item -> float32 factor row
    "mf_sampler",  # string: MF's sampler state (steps, recent positives)
    "fbt_items",  # hash item -> retained baskets containing it
    "fbt_total",  # string (counter): retained baskets
    "content_items",  # hash item -> encoded content vector
    "content_changes",  # stream of item ids whose content vector changed (workers follow it)
    "learner",  # hash: the learner's progress (event_ts: the newest broker time it learnt)
    "popularity_learnt",  # hash item -> its popularity under every half-life (learner_state.py)
    "popularity_withdrawn",  # list: erased events (item, weight, time) for the learner to undo
    "offsets",  # hash "topic:partition" -> applied offset, "…:published" -> published offset
    "knobs",  # string: the learnt blend (streams/runtime/knobs.py; per-source figures, no user id)
)

#: Every field the recommendation sources own (streams/sources): each source's own contract
#: tests compare them with its pure model, so the core state's snapshot leaves them out.
SOURCE_FIELDS: Final = frozenset(
    {
        "dot",
        "sim",
        "norm2",
        "cf_norms",
        "cf_window",
        "mf",
        "mf_contrib",
        "content_profile",
        "ucf_row",
        "fbt_baskets",
        "fol_items",
        "fol_following",
        "fol_followers",
        "ucf_users",
        "fbt_pairs",
        "content_sim",
        "mf_items",
        "mf_sampler",
        "fbt_items",
        "fbt_total",
        "content_items",
        "content_changes",
        "pools",
        "learnt",
        "learner",
        "popularity_learnt",
        "popularity_withdrawn",
        "marks",
    }
)


def decoded(value: bytes | str) -> str:
    """A Redis reply as text, whether or not the client decodes responses.

    >>> decoded(b"phone"), decoded("phone")
    ('phone', 'phone')
    """
    return value.decode() if isinstance(value, bytes) else value


def queue_best(pipe: Any, key: str, count: int) -> None:
    """Queue a read of the ``count`` best members of a sorted set with their scores, to
    decode with :func:`best_pairs`. The command goes as it is, not through redis-py's
    ``zrevrange``, whose reply callback pairs and casts every entry in Python before the
    caller decodes them again: most of the cost of such a read."""
    pipe.execute_command("ZRANGE", key, 0, count - 1, "REV", "WITHSCORES")


def best_pairs(reply: Sequence[Any]) -> list[tuple[str, float]]:
    """(member, score) pairs of a :func:`queue_best` reply: RESP3 sends pairs, RESP2 one
    flat list.

    >>> best_pairs([b"a", b"0.5", b"b", b"0.25"]) == best_pairs([[b"a", 0.5], [b"b", 0.25]])
    True
    """
    if reply and isinstance(reply[0], (bytes, str)):
        flat = iter(reply)
        return [(decoded(m), float(s)) for m, s in zip(flat, flat, strict=True)]
    return [(decoded(m), float(s)) for m, s in reply]


def best_arrays(reply: Sequence[Any]) -> tuple[Sequence[Any], npt.NDArray[np.float64]]:
    """A :func:`queue_best` reply as (members as Redis sent them, scores as an array): for
    readers of many entries that decode only the few they keep.

    >>> members, scores = best_arrays([b"a", b"0.5", b"b", b"0.25"])
    >>> members, scores.tolist()
    ([b'a', b'b'], [0.5, 0.25])
    >>> best_arrays([[b"a", 0.5]])[1].tolist()
    [0.5]
    """
    if reply and not isinstance(reply[0], (bytes, str)):  # RESP3: pairs
        return [m for m, _ in reply], np.array([s for _, s in reply], dtype=np.float64)
    return reply[0::2], np.array(reply[1::2]).astype(np.float64)


async def user_strings(
    client: Any,
    keys: Keys,
    user_ids: Sequence[str],
    field: str,
    decode: Callable[[Any], T],
) -> dict[str, T]:
    """Each user's string ``field``, decoded (``decode(None)`` for a user without one): one
    ``MGET`` for all, none for no user."""
    if not user_ids:
        return {}
    raw = await client.mget([keys.user(u, field) for u in user_ids])
    return {u: decode(r) for u, r in zip(user_ids, raw, strict=True)}


#: How long an erasure's anonymous mark lives: events of the user appended to Kafka before the
#: request and consumed after it are dropped for this long (far beyond any consumer lag).

Scope = Literal["user", "item", "global", "trending"]


def erasure_digest(user_id: str) -> str:
    """The anonymous name of an erased user: what the erasure mark (:meth:`Keys.erased`) and
    the workers' forget broadcast (streams/runtime/forgetting.py) carry instead of the user id.

    >>> erasure_digest("zoe")
    'ca6c4699561f3b2b206ebf27cbdb2cf5'
    """
    return hashlib.blake2b(user_id.encode(), digest_size=16, person=b"socialrec-erase").hexdigest()


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "sr:"

    def user(self, user_id: str, field: str) -> str:
        assert field in USER_FIELDS, field
        return f"{self.prefix}u:{user_id}:{field}"

    def item(self, item_id: str, field: str) -> str:
        assert field in ITEM_FIELDS, field
        return f"{self.prefix}i:{item_id}:{field}"

    def global_(self, field: str) -> str:
        assert field in GLOBAL_FIELDS, field
        return f"{self.prefix}{field}"

    def trending(self, bucket: int, scope: str, *, counts: bool = False) -> str:
        """A trending bucket of a scope: item -> weighted count (or -> event count).

        Anonymous by design (no user ids); each lives two windows, then expires.
        """
        return f"{self.prefix}{'tn' if counts else 't'}:{bucket}:{scope}"

    def trending_published(self, scope: str) -> str:
        """The scope's list as last published on ``trending`` (its wire JSON, deeper: the
        HTTP API's ``k`` reaches past the topic's length). Anonymous, and it expires with the
        buckets it was counted from. One key per scope, so scopes spread over a cluster's
        slots."""
        return f"{self.prefix}tp:{scope}"

    def merchant_counts(self, bucket: int, merchant_id: str) -> str:
        """A merchant's event and exposure counts in one time bucket (type -> count).

        Anonymous like trending buckets (no user ids) and expiring; ``merchant_id`` "" holds
        the totals over every merchant (all published recommendation slots).
        """
        return f"{self.prefix}m:{bucket}:{merchant_id}"

    def marks(self, source: str) -> str:
        """How far ``source`` has learnt each partition of ``events`` (hash "topic:partition"
        -> offset; streams/sources/progress.py). Offsets only, no user data.

        >>> Keys("sr:").marks("mf")
        'sr:lm:mf'
        """
        return f"{self.prefix}lm:{source}"

    def erased(self, user_id: str) -> str:
        """The anonymous mark of a recent erasure: a digest of the user id, never the id.

        Lets the worker drop the user's events that were already in flight when the request
        was honoured; it lasts as long as a topic may hold the user's events
        (``streams.ops.topics.erasure_mark_ttl_s``).

        >>> Keys("sr:").erased("zoe")
        'sr:x:ca6c4699561f3b2b206ebf27cbdb2cf5'
        """
        return f"{self.prefix}x:{erasure_digest(user_id)}"

    def user_keys(self, user_id: str) -> list[str]:
        """Every key that can hold state about ``user_id`` (what erasure deletes)."""
        return [self.user(user_id, field) for field in USER_FIELDS]

    def parse(self, key: str) -> tuple[Scope, str, str]:
        """(scope, id, field) of a socialrec key; ValueError for a key we do not own."""
        if not key.startswith(self.prefix):
            raise ValueError("not a socialrec key")
        rest = key[len(self.prefix) :]
        if rest in GLOBAL_FIELDS:
            return "global", "", rest
        kind, _, tail = rest.partition(":")
        if kind in ("t", "tn"):
            bucket, _, scope = tail.partition(":")
            if bucket.lstrip("-").isdigit() and scope:
                return "trending", scope, "counts" if kind == "tn" else "weights"
        if kind == "tp" and tail:
            return "trending", tail, "published"
        if kind == "lm" and tail:
            return "global", tail, "marks"
        if kind == "x" and tail:
            return "trending", "", "erased"  # anonymous and expiring, like trending buckets
        if kind == "m":
            # Merchant counters are time-bucketed anonymous counts like trending buckets.
            bucket, _, merchant = tail.partition(":")
            if bucket.lstrip("-").isdigit():
                return "trending", merchant, "merchant_counts"
        # Ids may contain ':' themselves, so the field is taken from the right.
        entity, _, field = tail.rpartition(":")
        if kind == "u" and field in USER_FIELDS and entity:
            return "user", entity, field
        if kind == "i" and field in ITEM_FIELDS and entity:
            return "item", entity, field
        raise ValueError(f"unknown socialrec key shape (field {field!r})")
