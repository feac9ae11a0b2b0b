"""What user-CF's candidates read from Redis, kept in the learner for a few seconds
(:class:`KeptReads`).

A refreshed user's candidates read the indexes of their items, then the rows of the users
those indexes name (streams/sources/usercf.py). At the soak's scale that was most of the
learner's time per user, and the next batches read mostly the same: popular items' indexes,
active users' rows. So the reads are kept ``ttl_s`` (up to ``size`` of each).

What may be stale: a learner's own writes drop what they change (:meth:`KeptReads.changed`),
so one learner reads what it wrote; another learner's writes (other partitions) show within
``ttl_s``. The index is a hint anyway (who might be similar); the rows give the scores.
An erased user leaves this process with the write that erases them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from streams.runtime.itemcache import ItemCache

#: A row entry: (affinity, time of the user's last event on the item).
Entry = tuple[float, float]
Row = dict[str, Entry]
#: An item's index as read: (members as Redis sent them, their last event times).
Index = tuple[Sequence[Any], npt.NDArray[np.float64]]


class KeptReads:
    """Rows and indexes read through two :class:`ItemCache`.

    >>> import asyncio
    >>> async def read_rows(users): return [{"tea": (2.0, 1.0)} for _ in users]
    >>> async def read_indexes(items): return [([b"ann"], np.array([1.0])) for _ in items]
    >>> kept = KeptReads(read_rows, read_indexes, ttl_s=10.0, size=100)
    >>> asyncio.run(kept.rows.get(["ann"])), kept.holds("ann")
    ({'ann': {'tea': (2.0, 1.0)}}, True)
    >>> kept.changed(["ann"], ["tea"]); kept.holds("ann")
    False
    """

    def __init__(
        self,
        read_rows: Callable[[Sequence[str]], Awaitable[Sequence[Row]]],
        read_indexes: Callable[[Sequence[str]], Awaitable[Sequence[Index]]],
        *,
        ttl_s: float,
        size: int,
        clock: Callable[[], float] | None = None,
    ) -> None:
        timing: dict[str, Any] = {} if clock is None else {"clock": clock}
        ttl_s = max(ttl_s, 0.0)  # 0: nothing is kept past the call that read it
        self.rows = ItemCache(read_rows, size=size, ttl_s=ttl_s, **timing)
        self.indexes = ItemCache(read_indexes, size=size, ttl_s=ttl_s, **timing)

    def holds(self, user_id: str) -> bool:
        """Whether this process keeps anything of the user's."""
        return self.rows.current(user_id) is not None

    def users(self) -> list[str]:
        """Every user whose row this process keeps (erasure looks for its users here)."""
        return self.rows.ids()

    def changed(self, user_ids: Iterable[str], item_ids: Iterable[str]) -> None:
        """Forget the rows and indexes a write of this process changed (or erased)."""
        self.rows.drop(list(user_ids))
        self.indexes.drop(list(item_ids))
