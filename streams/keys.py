"""Every Redis key socialrec writes, built in one place.

Per-user keys all start with ``{prefix}{<tag>}u:{user_id}:`` so erasure can find everything a
user left behind (:meth:`Keys.user_keys`); per-item keys with ``{prefix}{<tag>}i:{item_id}:``.
The tag is the Redis Cluster hash tag of the user's partition of ``events`` (Kafka's default
partitioner on the user id), so a user's keys, their erasure mark and the partition's offsets
share one hash slot: an atomic step over one partition's users is one slot (docs/cluster.md).
An item's keys carry the tag of the item's *home*, the partition the same partitioner gives its
id, so a step over one home's items is one slot too. The shared structures written together
carry a tag of their own (:data:`GLOBAL_TAGS`). The state script (streams/lua/state.lua) is
handed each user's key stem; the store contract suite checks that every key in Redis parses
back through :meth:`Keys.parse`.

>>> k = Keys("sr:", partitions=6)
>>> k.user("u1", "history")
'sr:{4.11}u:u1:history'
>>> k.parse("sr:{4.11}u:u1:history")
('user', 'u1', 'history')
>>> k.offsets(4)
'sr:{4.11}offsets'
>>> k.item("phone", "sim")
'sr:{3.10}i:phone:sim'
>>> k.parse(k.item("phone", "sim"))
('item', 'phone', 'sim')
>>> k.parse(k.global_("mf_items"))
('global', '', 'mf_items')
>>> k.parse(k.trending(1796000000, "stream:live-3", 2))
('trending', 'stream:live-3', 'weights')
>>> k.parse(k.merchant_counts(29933400, "m1"))
('trending', 'm1', 'merchant_counts')
>>> k.parse(k.trending_published("category:phones"))
('trending', 'category:phones', 'published')
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any, Final, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from aiokafka.partitioner import murmur2
from redis.crc import REDIS_CLUSTER_HASH_SLOTS as SLOTS
from redis.crc import key_slot

T = TypeVar("T")

#: Per-user structures: history (zset item->last ts), affinity (hash item->a_ui), seen_events
#: (hash, the dedupe window: event id digest -> "ts", or "ts<TAB>weight<TAB>item" for the
#: events that added to popularity, so erasure can subtract them: models/state/seen.py),
#: bought/hidden (sets of items), following/followers (sets of user ids), inbox (zset
#: "sharer<TAB>item" -> ts of shares received), outbox/senders (sets: whom the user shared
#: with / who shared with them, so erasure finds both sides), actions (zset "type<TAB>item"
#: -> ts: recent likes and purchases that followers see), seen_items (zset item -> last ts:
#: everything touched within the seen window, never recommended again), recommendations
#: (latest list, JSON).
USER_FIELDS: Final = (
    "history",
    "affinity",
    "seen_events",
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
    "learnt",  # set: digests of the user's events the sources have learnt (progress.py)
    "learnt_prev",  # set: the generation of learnt digests before (progress.py)
)
#: Per-item structures, item-CF's (the learner writes them, the publish path reads sim): dot
#: (zset co-occurring item -> Σ a_ui·a_uj), sim (zset top-k cosine);
#: meta (hash: the item's catalog record), ucf_users (zset user -> last ts: user-CF's inverted
#: index; erasure walks the user's ucf_row to find them), fbt_pairs (zset co-bought item ->
#: baskets with both), content_sim (zset: nearest items by catalog content).
ITEM_FIELDS: Final = ("dot", "sim", "meta", "ucf_users", "fbt_pairs", "content_sim")
#: Global structures: the recommendation sources' shared tables (none holds a user id).
GLOBAL_FIELDS: Final = (
    "mf_items",  # hash item -> float32 factor row
    "mf_steps",  # string (counter): MF's learning steps, which its negatives depend on
    "mf_pool",  # list: MF's recent positives (item ids), its popularity sampler's pool
    "fbt_items",  # hash item -> retained baskets containing it
    "fbt_total",  # string (counter): retained baskets
    "content_items",  # hash item -> encoded content vector
    "content_changes",  # stream of item ids whose content vector changed (workers follow it)
    "learner",  # hash: the learner's progress (event_ts: the newest broker time it learnt)
    "popularity_learnt",  # hash item -> its popularity under every half-life (learner_state.py)
    "knobs",  # string: the learnt blend (streams/runtime/knobs.py; per-source figures, no user id)
)
#: The hash tag of each global structure that an atomic step writes together with another:
#: they share a slot (:meth:`Keys.global_`). The others hash on their own name.
GLOBAL_TAGS: Final = {
    "learner": "learner",
    "popularity_learnt": "learner",
    "mf_items": "mf",
    "mf_steps": "mf",
    "mf_pool": "mf",
    "fbt_items": "fbt",
    "fbt_total": "fbt",
    "content_items": "content",
    "content_changes": "content",
}

#: Per-partition structures, in the slot of the partition's users (:meth:`Keys.partition`):
#: offsets (hash "topic:partition" -> applied offset, "…:published" -> published offset), relay
#: (list: the partition's steps' changes to users of other partitions, until delivered) and
#: relayed (hash: source partition -> last entry applied here, "seq" -> this one's counter):
#: streams/store/relay.py; popularity (zset, forward-decayed, of the partition's users'
#: events) and landmark (string, its landmark time): readers sum them
#: (models/popularity.py merged_top); trending_changed (set: scopes whose buckets the
#: partition's steps changed since they were last taken). The partition's trending buckets
#: are in its slot too (:meth:`Keys.trending`). learner (hash: "offset:topic:partition" ->
#: the last offset the learner stored, "withdrawn" -> how many popularity_withdrawn entries it
#: has dropped since the list began): streams/runtime/learner_state.py.
PARTITION_FIELDS: Final = (
    "offsets",
    "relay",
    "relayed",
    "popularity",
    "landmark",
    "trending_changed",
    "popularity_withdrawn",  # list: erased events (item, weight, time) for the learner to undo
    "learner",
    "norm2",  # zset: item-CF's Σ a_ui² of the items at home here (streams/sources/itemcf.py)
    "cf_norms",  # hash: their sum and count above zero (a share of the learned shrinkage's)
    "version",  # string: bumped by every step on the partition's users (streams/store/plan.py)
)
#: What the store's layout record (:meth:`Keys.layout`) says: the key layout's version and
#: the partition count the users' tags were computed for. Layout 3: the dedupe window is one
#: hash of digests (it was a sorted set of ids beside a hash ``event_log``); 4: the learner's
#: progress and offsets in the ``{learner}`` slot and each partition's; 5: the sources' marks
#: per partition, their shared tables tagged, the hand-offs (streams/sources/handoff.py); 6:
#: item-CF's rows in their items' homes, its norms per home; 7: every item key in its home;
#: 8: the learner's learnt ids in two generations of sets (they were a sorted set); 9: MF's
#: sampler as a step counter and a list (it was one JSON string).
LAYOUT_VERSION: Final = 9

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
        "mf_steps",
        "mf_pool",
        "fbt_items",
        "fbt_total",
        "content_items",
        "content_changes",
        "pools",
        "learnt",
        "learnt_prev",
        "learner",
        "popularity_learnt",
        "popularity_withdrawn",
        "marks",
        "handoff",
    }
)


def decoded(value: bytes | str) -> str:
    """A Redis reply as text, whether or not the client decodes responses.

    >>> decoded(b"phone"), decoded("phone")
    ('phone', 'phone')
    """
    return value.decode() if isinstance(value, bytes) else value


def best_command(key: str, count: int) -> tuple[str | int, ...]:
    """A read of the ``count`` best members of a sorted set with their scores, to decode with
    :func:`best_pairs`. The command goes as it is, not through redis-py's ``zrevrange``, whose
    reply callback pairs and casts every entry in Python before the caller decodes them
    again: most of the cost of such a read. ``count`` must be at least 1 (``ZRANGE`` of 0
    to -1 would read every member)."""
    if count < 1:
        raise ValueError(f"a read of the best members needs a count of at least 1, not {count}")
    return ("ZRANGE", key, 0, count - 1, "REV", "WITHSCORES")


def queue_best(pipe: Any, key: str, count: int) -> None:
    """Queue :func:`best_command` in a pipeline."""
    pipe.execute_command(*best_command(key, count))


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


Scope = Literal["user", "item", "global", "trending", "partition"]


@cache
def events_partitions() -> int:
    """The partition count of ``events`` in the project's topics.yaml: what every user's tag
    is computed for (the worker refuses a broker or a store that disagrees:
    streams/store/layout.py)."""
    from streams.config import PROJECT_ROOT
    from streams.ops.topics.spec import load_topics

    specs = load_topics(PROJECT_ROOT / "topics.yaml")
    return next(s.partitions for s in specs if s.name == "events")


@lru_cache(maxsize=1 << 17)
def partition_of(user_id: str, partitions: int) -> int:
    """The user's partition of ``events``: Kafka's default partitioner on the user id (the
    record key), as the Java client and aiokafka compute it.

    >>> [partition_of(u, 6) for u in ("u1", "zoe", "alice")]
    [4, 5, 3]
    """
    return int(murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


def tag_partition(tagged: str) -> int:
    """The partition whose hash tag (:func:`partition_tag`) a key or key stem carries.

    >>> tag_partition("sr:{2.2}u:bob:")
    2
    """
    return int(tagged[tagged.index("{") + 1 : tagged.index("}")].partition(".")[0])


@cache
def partition_tag(partition: int, partitions: int) -> str:
    """The hash tag of a partition's slot: the first ``"<partition>.<n>"`` whose slot lies in
    the partition's share of the 16,384 slots, so the partitions spread evenly over masters
    that split the slots evenly (plain ``"0"`` … ``"5"`` put three of six on one master).

    >>> [partition_tag(p, 6) for p in range(3)]
    ['0.1', '1.3', '2.2']
    >>> [key_slot(partition_tag(p, 6).encode()) * 6 // 16384 for p in range(6)]
    [0, 1, 2, 3, 4, 5]
    """
    n = 0
    while key_slot(f"{partition}.{n}".encode()) * partitions // SLOTS != partition:
        n += 1
    return f"{partition}.{n}"


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
    #: The partition count of ``events`` the users' tags are computed for.
    partitions: int = field(default_factory=events_partitions)

    def partition_of(self, user_id: str) -> int:
        """The user's partition of ``events``."""
        return partition_of(user_id, self.partitions)

    def by_partition(self, user_ids: Iterable[str]) -> dict[int, list[str]]:
        """The users by partition, each partition's in the order given.

        >>> Keys("sr:", partitions=6).by_partition(["u1", "zoe", "alice"])
        {4: ['u1'], 5: ['zoe'], 3: ['alice']}
        """
        found: dict[int, list[str]] = {}
        for user_id in user_ids:
            found.setdefault(self.partition_of(user_id), []).append(user_id)
        return found

    def tag(self, user_id: str) -> str:
        """The hash tag of the user's partition."""
        return partition_tag(partition_of(user_id, self.partitions), self.partitions)

    def user_stem(self, user_id: str) -> str:
        """What every key of the user starts with (the state script appends the field)."""
        return f"{self.prefix}{{{self.tag(user_id)}}}u:{user_id}:"

    def user(self, user_id: str, field: str) -> str:
        assert field in USER_FIELDS, field
        return f"{self.user_stem(user_id)}{field}"

    def users_matching(self, field: str) -> str:
        """A ``SCAN`` pattern for ``field`` of every user.

        >>> Keys("sr:", partitions=6).users_matching("mf")
        'sr:{*}u:*:mf'
        """
        assert field in USER_FIELDS, field
        return f"{self.prefix}{{*}}u:*:{field}"

    def partition_stem(self, partition: int) -> str:
        """What every key of one partition's own starts with (the state script appends the
        field)."""
        return f"{self.prefix}{{{partition_tag(partition, self.partitions)}}}"

    def partition(self, partition: int, field: str) -> str:
        """A structure of one partition, in its users' slot."""
        assert field in PARTITION_FIELDS, field
        return f"{self.partition_stem(partition)}{field}"

    def offsets(self, partition: int) -> str:
        """The partition's applied and published offsets (streams/store/offsets.py)."""
        return self.partition(partition, "offsets")

    def layout(self) -> str:
        """The store's layout record (hash: version, partitions): streams/store/layout.py."""
        return f"{self.prefix}layout"

    def home(self, item_id: str) -> int:
        """The partition whose slot holds the item's keys: Kafka's partitioner on the item id,
        so items spread over the partitions' slots as users do.

        >>> Keys("sr:", partitions=6).home("phone")
        3
        """
        return partition_of(item_id, self.partitions)

    def item(self, item_id: str, field: str) -> str:
        """A structure of the item, in the slot of its home."""
        assert field in ITEM_FIELDS, field
        return f"{self.partition_stem(self.home(item_id))}i:{item_id}:{field}"

    def global_(self, field: str) -> str:
        """A structure shared by every partition; in its tag's slot if it has one.

        >>> Keys("sr:", partitions=6).global_("learner"), Keys("sr:").global_("knobs")
        ('sr:{learner}learner', 'sr:knobs')
        """
        assert field in GLOBAL_FIELDS, field
        tag = GLOBAL_TAGS.get(field)
        return f"{self.prefix}{field}" if tag is None else f"{self.prefix}{{{tag}}}{field}"

    def trending(self, bucket: int, scope: str, partition: int, *, counts: bool = False) -> str:
        """A partition's share of a trending bucket of a scope: item -> weighted count (or ->
        event count), in the partition's slot; readers sum the partitions'.

        Anonymous by design (no user ids); each lives two windows, then expires.
        """
        return f"{self.partition_stem(partition)}{'tn' if counts else 't'}:{bucket}:{scope}"

    def trending_versions(self, bucket: int, partition: int) -> str:
        """The versions of a partition's shares of one bucket, by scope (each the counts
        hash's "" field), so a reader checks a bucket's scopes in one command. Anonymous and
        expiring with the shares.

        >>> Keys("sr:", partitions=6).trending_versions(7, 2)
        'sr:{2.2}tv:7'
        """
        return f"{self.partition_stem(partition)}tv:{bucket}"

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

    def marks(self, source: str, partition: int) -> str:
        """How far ``source`` has learnt the events of one partition's users (hash
        "topic:partition" of their records -> offset; streams/sources/progress.py), in their
        slot. Offsets only, no user data.

        >>> Keys("sr:", partitions=6).marks("mf", 2)
        'sr:{2.2}lm:mf'
        """
        return f"{self.partition_stem(partition)}lm:{source}"

    def handoffs(self, stem: str, name: str) -> tuple[str, str, str]:
        """A slot's hand-offs of one kind of step (streams/sources/handoff.py): the list of
        its entries for other slots, its counters (name -> last entry's number) and what it
        has applied (``name:tag`` of a source slot -> the last entry applied from there).

        >>> Keys("sr:").handoffs("sr:{2.2}", "fbt")
        ('sr:{2.2}ho:fbt', 'sr:{2.2}ho_seq', 'sr:{2.2}ho_applied')
        """
        return f"{stem}ho:{name}", f"{stem}ho_seq", f"{stem}ho_applied"

    def stem_of(self, key: str) -> str:
        """What every key of ``key``'s slot starts with: the prefix and its hash tag.

        >>> Keys("sr:").stem_of("sr:{2.2}u:bob:mf"), Keys("sr:").stem_of("sr:{mf}mf_items")
        ('sr:{2.2}', 'sr:{mf}')
        """
        return key[: key.index("}", len(self.prefix)) + 1]

    def erased(self, user_id: str) -> str:
        """The anonymous mark of a recent erasure: a digest of the user id, never the id.

        Lets the worker drop the user's events that were already in flight when the request
        was honoured; it lasts as long as a topic may hold the user's events
        (``streams.ops.topics.erasure_mark_ttl_s``).

        >>> Keys("sr:", partitions=6).erased("zoe")
        'sr:{5.0}x:ca6c4699561f3b2b206ebf27cbdb2cf5'
        """
        return f"{self.prefix}{{{self.tag(user_id)}}}x:{erasure_digest(user_id)}"

    def user_keys(self, user_id: str) -> list[str]:
        """Every key that can hold state about ``user_id`` (what erasure deletes)."""
        return [self.user(user_id, field) for field in USER_FIELDS]

    def parse(self, key: str) -> tuple[Scope, str, str]:
        """(scope, id, field) of a socialrec key; ValueError for a key we do not own."""
        if not key.startswith(self.prefix):
            raise ValueError("not a socialrec key")
        rest = key[len(self.prefix) :]
        if rest.startswith("{"):  # a partition's slot: its users, their marks, its own
            return self._parse_tagged(*rest[1:].split("}", 1))
        if rest == "layout" or rest in GLOBAL_FIELDS:
            return "global", "", rest
        kind, _, tail = rest.partition(":")
        if kind == "tp" and tail:
            return "trending", tail, "published"
        if kind == "m":
            # Merchant counters are time-bucketed anonymous counts like trending buckets.
            bucket, _, merchant = tail.partition(":")
            if bucket.lstrip("-").isdigit():
                return "trending", merchant, "merchant_counts"
        raise ValueError(f"unknown socialrec key shape ({kind!r})")

    def _parse_tagged(self, tag: str, rest: str = "") -> tuple[Scope, str, str]:
        """:meth:`parse` of a key behind a hash tag; a user's key must carry their own."""
        if rest in GLOBAL_FIELDS and GLOBAL_TAGS.get(rest) == tag:
            return "global", "", rest
        if rest in ("ho_seq", "ho_applied") or rest.startswith("ho:"):
            return "global", tag, "handoff"  # emptied once delivered
        partition = tag.partition(".")[0]
        if rest in PARTITION_FIELDS and partition.isdigit():
            if tag != partition_tag(int(partition), self.partitions):
                raise ValueError("a partition's key outside its slot")
            return "partition", partition, rest
        kind, _, tail = rest.partition(":")
        if kind == "x" and tail:
            return "trending", "", "erased"  # anonymous and expiring, like trending buckets
        if kind == "tv" and tail.lstrip("-").isdigit():
            return "trending", "", "versions"
        if kind in ("t", "tn"):
            bucket, _, scope = tail.partition(":")
            if bucket.lstrip("-").isdigit() and scope:
                return "trending", scope, "counts" if kind == "tn" else "weights"
        entity, _, field = tail.rpartition(":")
        if kind == "u" and field in USER_FIELDS and entity:
            if tag != self.tag(entity):
                raise ValueError("a user key outside the slot of the user's partition")
            return "user", entity, field
        if kind == "i" and field in ITEM_FIELDS and entity:
            if tag != partition_tag(self.home(entity), self.partitions):
                raise ValueError("an item key outside the slot of the item's home")
            return "item", entity, field
        if kind == "lm" and tail and partition.isdigit():
            return "partition", partition, "marks"
        raise ValueError(f"unknown socialrec key shape (field {field!r})")
