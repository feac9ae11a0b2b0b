"""What a store is: its read and trending parameters, a batch's result, and the protocol.

Two implementations: :class:`streams.store.redis_store.RedisStore` (production) and
:class:`streams.store.memory.MemoryStore` (the pure reference behind the same async
interface); tests/integration/test_store_contract.py runs the same checks against both.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from models.content import CatalogRecord
from models.events import Event
from models.state import (
    NEIGHBOURS_READ,
    POPULAR_READ,
    RECENT_READ,
    ErasureReport,
    Outcome,
    PopularView,
    UserView,
)
from models.trending import TrendingList
from streams.store.offsets import OffsetRange, Position


@dataclass(frozen=True, slots=True)
class ReadParams:
    """How much to read back per affected user (bounded so scoring cost is bounded)."""

    recent_items: int = RECENT_READ
    neighbours: int = NEIGHBOURS_READ
    popular: int = POPULAR_READ


#: What the learner reads of a user: only what excludes items from their candidates.
EXCLUSIONS_ONLY = ReadParams(recent_items=0, neighbours=0, popular=0)


@dataclass(frozen=True, slots=True)
class TrendingParams:
    """Trending windows: counts over ``window_s`` in buckets of ``bucket_s`` (by arrival)."""

    window_s: float = 60.0
    bucket_s: float = 1.0

    @property
    def span(self) -> int:
        return round(self.window_s / self.bucket_s)


@dataclass(frozen=True, slots=True)
class BatchResult:
    outcomes: list[Outcome]  # one per event, in order
    views: dict[str, UserView]  # users whose item events were applied, first-seen order
    popular: PopularView
    #: Partitions whose stored state is behind what the consumer expected (the store lost
    #: writes: a Redis restart without its last second). Nothing was applied; the consumer
    #: goes back to each one's published offset + 1.
    rewinds: dict[str, Position] = field(default_factory=dict)


class Store(Protocol):
    async def process_batch(
        self,
        events: Sequence[Event],
        arrivals: Sequence[float] | None = None,
        offsets: Sequence[OffsetRange] = (),
        views: bool = True,
    ) -> BatchResult:
        """Apply events (``arrivals``: broker timestamps, default the event times) and record
        ``offsets`` in the same atomic step; if the stored offsets are behind what the
        consumer expected, apply nothing and say so in ``rewinds``. ``views=False`` reads no
        user's view (a batch applied in rounds reads its users once, after the last)."""
        ...

    async def positions(self, partitions: Sequence[str]) -> dict[str, Position]:
        """The stored position of each partition that has one."""
        ...

    async def mark_published(self, published: Mapping[str, int]) -> None:
        """Record that the lists of ``published`` (partition -> offset) are out, for
        partitions this consumer stops owning: a batch's own step records only the batch
        before it, and the next owner starts after the stored offset (never moving back)."""
        ...

    async def put_items(self, records: Sequence[CatalogRecord]) -> None:
        """Store catalog records (trending scopes read category and merchant from them)."""
        ...

    async def delete_items(self, item_ids: Sequence[str]) -> None: ...

    async def item_categories(self, item_ids: Collection[str]) -> dict[str, str]:
        """Category of each item ("" when the catalog does not know it)."""
        ...

    async def trending(self, scopes: Sequence[str], now: float, k: int) -> list[TrendingList]:
        """Each scope's top ``k`` items over the current window at ``now``."""
        ...

    async def take_changed_scopes(self, limit: int) -> list[str]:
        """Scopes changed since they were last taken (each is handed out once)."""
        ...

    async def mark_changed(self, scopes: Sequence[str]) -> None:
        """Hand these scopes out again (their windows are still sliding)."""
        ...

    async def keep_published(self, lists: Mapping[str, bytes], ttl_s: float) -> None:
        """Keep each scope's list as published (wire JSON) for readers, for ``ttl_s``."""
        ...

    async def published(self, scopes: Sequence[str]) -> list[bytes | None]:
        """Each scope's list as last kept by :meth:`keep_published` (None: none kept)."""
        ...

    async def read_users(self, user_ids: Sequence[str]) -> BatchResult: ...

    async def snapshot(self) -> dict[str, Any]: ...

    async def cache_recommendations(self, lists: Mapping[str, bytes]) -> None:
        """Keep each user's latest published list (for pull APIs; erased with the user)."""
        ...

    async def cached_recommendations(self, user_id: str) -> bytes | None:
        """The user's list as :meth:`cache_recommendations` kept it (None: none kept)."""
        ...

    async def erase_users(self, user_ids: Sequence[str]) -> list[ErasureReport]:
        """Remove each user from every derived state, atomically per call."""
        ...

    async def audience(self, user_ids: Sequence[str]) -> set[str]:
        """Users whose lists can name these users as social proof: their followers and the
        people they shared with (erasure re-publishes those lists without them)."""
        ...

    async def mark_erased(self, erased_at: Mapping[str, float]) -> None:
        """Remember, anonymously and for as long as topics keep events, that each user was
        erased at the given time (their request's broker time)."""
        ...

    async def erased_at(self, user_ids: Sequence[str]) -> dict[str, float]:
        """For users erased recently: when (events appended before that are dropped)."""
        ...

    async def save_knobs(self, body: bytes) -> None:
        """Keep the learnt blend (streams/runtime/knobs.py): one key, the last writer's."""
        ...

    async def load_knobs(self) -> bytes | None:
        """The learnt blend last saved, if any."""
        ...
