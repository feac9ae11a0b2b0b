"""What the state is made of and what it hands out: its sizes and weights
(:class:`StateParams`), the outcome of one event, one user's stored state, and the views a read
returns (a user's, the popular items', an erasure's receipt). Both store implementations,
:class:`models.state.MemoryState` and ``streams.store.RedisStore``, use the same values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from models.events import DEFAULT_WEIGHTS, EventType
from models.sortedset import SortedSet
from models.state.seen import SeenEvents

#: Social signals kept per user: shares received (inbox) and own likes/purchases that people
#: who follow the user see (actions). Bounded: the most recent ones are what persuade.
INBOX_SIZE = 50
ACTIONS_SIZE = 20
FOLLOWEES_READ = 50  # followees whose actions one read looks at
ACTIONS_READ = 5  # latest actions read per followee
SOCIAL_ACTION_TYPES = frozenset({EventType.LIKE, EventType.PURCHASE})

#: What a list reads of a user's state (streams.store.ReadParams, eval's replay): the latest
#: recent items, each one's best neighbours, and the popular fallback. Bounded, so a list's
#: cost is (recent × neighbours pairs at most). 10 recent items score as well as 20 on the
#: simulator, Ciao and Taobao (docs/quality.md) for half the pairs and neighbour lists.
RECENT_READ = 10
NEIGHBOURS_READ = 20
POPULAR_READ = 100

#: Events that also lift an earlier "hide": the user has clearly changed their mind.
UNHIDING_TYPES = frozenset({EventType.LIKE, EventType.SHARE, EventType.CART, EventType.PURCHASE})


#: Sums at or below this are zero: every contribution has been taken back out. (With the
#: default integer weights the sums are exact; the margin covers fractional weights.)
ZERO = 1e-9


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    #: Refused by a store whose stored data for the event is corrupt (only Redis can be).
    REJECTED = "rejected"
    #: Dropped by a store: its user was erased after the event reached Kafka
    #: (streams/store/erasure.py ``in_flight``). Nothing of it is written.
    ERASED = "erased"


#: Co-occurring items kept per item. At most 128, Redis keeps a row in its compact encoding
#: (``zset-max-listpack-entries``): at 500 rows were a skiplist, several times the memory.
COOCCURRENCE_CAP = 128
#: Item-CF pairs each event with this many of the user's latest items (models.cooccurrence):
#: the learner's Redis time per event grows with it (10 costs a third less than 15, for 0.7 %
#: of HR@10 on the simulator and Ciao: docs/quality.md).
COOCCURRENCE_WINDOW = 10


@dataclass(frozen=True, slots=True)
class StateParams:
    """Sizes and weights of the state. Both store implementations take the same values."""

    weights: Mapping[EventType, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    history_size: int = 30
    neighbours: int = 50
    cooccurrence_cap: int = COOCCURRENCE_CAP
    cooccurrence_window: int = COOCCURRENCE_WINDOW
    dedupe_window: int = 10_000
    affinity_cap: float = 15.0
    half_life_s: float = 6 * 3600.0
    popularity_cap: int = 10_000
    seen_window_s: float = 30 * 86400.0  # items touched this recently are never recommended
    seen_cap: int = 500  # ... up to this many of them per user
    shrinkage: float = 1000.0  # λ in s = dot / (‖i‖·‖j‖ + λ): see models.similarity.cosine
    # > 0: λ is learned instead, this many times the mean ‖i‖² (models.shrinkage); 0: fixed λ.
    shrinkage_scale: float = 0.0

    def weight(self, event_type: EventType) -> float:
        return float(self.weights.get(event_type, DEFAULT_WEIGHTS[event_type]))


@dataclass(frozen=True, slots=True)
class SocialProof:
    """Someone the user knows acted on an item: shared it with them, or (a followee) bought
    or liked it."""

    item_id: str
    user_id: str
    action: str  # "share" (to this user), "purchase" or "like" (by someone they follow)
    ts: float


@dataclass(frozen=True, slots=True)
class UserView:
    """Everything scoring needs about one user, read in the same round trip as the update."""

    user_id: str
    recent: tuple[tuple[str, float], ...]  # (item, affinity), most recent first
    neighbours: Mapping[str, tuple[tuple[str, float], ...]]  # recent item -> [(item, s)]
    seen: frozenset[str]
    bought: frozenset[str]
    hidden: frozenset[str]
    social: tuple[SocialProof, ...] = ()  # sorted by (item, user, action)


#: ``similar(item, k)``: the item's ``k`` nearest neighbours with their similarity, best first.
Similar = Callable[[str, int], tuple[tuple[str, float], ...]]


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What an erasure removed (counts only: the receipt must not repeat the user's data)."""

    history_items: int
    logged_events: int
    follow_edges: int


@dataclass(frozen=True, slots=True)
class PopularView:
    """The most popular items (stored forward-decayed scores) and the landmark they use."""

    items: tuple[tuple[str, float], ...]
    landmark: float


@dataclass
class UserState:
    history: SortedSet = field(default_factory=SortedSet)  # item -> last event time
    affinity: dict[str, float] = field(default_factory=dict)  # item -> a_ui (> 0 only)
    # The dedupe window, with each logged event's weight and item for erasure (seen.py).
    seen_events: SeenEvents = field(default_factory=SeenEvents)
    bought: set[str] = field(default_factory=set)
    hidden: set[str] = field(default_factory=set)
    following: set[str] = field(default_factory=set)
    followers: set[str] = field(default_factory=set)
    inbox: SortedSet = field(default_factory=SortedSet)  # "sharer<TAB>item" shared -> ts
    outbox: set[str] = field(default_factory=set)  # users this user shared with (for erasure)
    senders: set[str] = field(default_factory=set)  # users who shared with this user (ditto)
    actions: SortedSet = field(default_factory=SortedSet)  # "type<TAB>item" -> ts
    seen_items: SortedSet = field(default_factory=SortedSet)  # item touched -> last ts

    def is_empty(self) -> bool:
        return not (
            self.history.scores
            or self.affinity
            or self.seen_events.entries
            or self.bought
            or self.hidden
            or self.following
            or self.followers
            or self.inbox.scores
            or self.outbox
            or self.senders
            or self.actions.scores
            or self.seen_items.scores
        )

    def plain(self) -> dict[str, object]:
        """This user's state as plain data: one user's entry in a store's snapshot."""
        return {
            "history": dict(self.history.scores),
            "affinity": dict(self.affinity),
            "seen_events": dict(self.seen_events.entries),
            "bought": set(self.bought),
            "hidden": set(self.hidden),
            "following": set(self.following),
            "followers": set(self.followers),
            "inbox": dict(self.inbox.scores),
            "outbox": set(self.outbox),
            "senders": set(self.senders),
            "actions": dict(self.actions.scores),
            "seen_items": dict(self.seen_items.scores),
        }
