"""What user-CF's candidates read from Redis, kept in the learner for a few seconds
(:class:`KeptReads`).

A refreshed user's candidates read the indexes of their items, then the rows of the users
those indexes name (streams/sources/usercf.py). At the soak's scale that was most of the
learner's time per user, and the next batches read mostly the same: popular items' indexes,
active users' rows. So the reads are kept ``ttl_s`` (up to ``size`` of each), and the kept
rows stay restored in one pure model, so a row is parsed, restored and turned into arrays
once while it is kept rather than once per batch.

What may be stale: a learner's own writes drop what they change (:meth:`KeptReads.changed`),
so one learner reads what it wrote; another learner's writes (other partitions) show within
``ttl_s``. The index is a hint anyway (who might be similar); the rows give the scores.
An erased user leaves this process with the write that erases them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from models.usercf import UserCF
from streams.runtime.itemcache import ItemCache

#: A row entry: (affinity, time of the user's last event on the item).
Entry = tuple[float, float]
Row = dict[str, Entry]
#: An item's index as read: (members as Redis sent them, their last event times).
Index = tuple[Sequence[Any], npt.NDArray[np.float64]]


class KeptReads:
    """Rows and indexes read through two :class:`ItemCache`, and a model holding the rows.

    >>> import asyncio
    >>> async def read_rows(users): return [{"tea": (2.0, 1.0)} for _ in users]
    >>> async def read_indexes(items): return [([b"ann"], np.array([1.0])) for _ in items]
    >>> kept = KeptReads(read_rows, read_indexes, UserCF, ttl_s=10.0, size=100)
    >>> rows = asyncio.run(kept.rows.get(["ann"]))
    >>> kept.model_holding(rows).items, kept.holds("ann")
    ({'ann': {'tea': 2.0}}, True)
    >>> kept.changed(["ann"], ["tea"]); kept.holds("ann")
    False
    """

    def __init__(
        self,
        read_rows: Callable[[Sequence[str]], Awaitable[Sequence[Row]]],
        read_indexes: Callable[[Sequence[str]], Awaitable[Sequence[Index]]],
        new_model: Callable[[], UserCF],
        *,
        ttl_s: float,
        size: int,
        clock: Callable[[], float] | None = None,
    ) -> None:
        timing: dict[str, Any] = {} if clock is None else {"clock": clock}
        ttl_s = max(ttl_s, 0.0)  # 0: nothing is kept past the call that read it
        self.rows = ItemCache(read_rows, size=size, ttl_s=ttl_s, **timing)
        self.indexes = ItemCache(read_indexes, size=size, ttl_s=ttl_s, **timing)
        self.new_model = new_model
        self._model = new_model()
        self._held: dict[str, Row] = {}  # user -> the row the model holds for them
        self._swept = float("-inf")

    def holds(self, user_id: str) -> bool:
        """Whether this process keeps anything of the user's."""
        return user_id in self._held or self.rows.current(user_id) is not None

    def users(self) -> list[str]:
        """Every user whose row this process keeps (erasure looks for its users here)."""
        return list(self._held.keys() | set(self.rows.ids()))

    def changed(self, user_ids: Iterable[str], item_ids: Iterable[str]) -> None:
        """Forget the rows and indexes a write of this process changed (or erased)."""
        users = list(user_ids)
        self.rows.drop(users)
        self.indexes.drop(list(item_ids))
        for user_id in users:
            self._forget(user_id)

    def model_holding(self, rows: Mapping[str, Row]) -> UserCF:
        """The model, holding these rows (and others still kept). Rows the cache no longer
        keeps (expired, dropped, pushed out) leave it every ``ttl_s``, or when it holds more
        than ``size`` users."""
        now = self.rows.clock()
        if now >= self._swept + self.rows.ttl_s or len(self._held) > self.rows.size:
            self._swept = now
            stale = [u for u, row in self._held.items() if self.rows.current(u) is not row]
            if len(stale) == len(self._held):  # all of them: a new model is cheaper
                self._model, self._held = self.new_model(), {}
            else:
                for user_id in stale:
                    self._forget(user_id)
        for user_id, row in rows.items():
            if self._held.get(user_id) is not row:
                self._forget(user_id)
                self._model.restore_user(user_id, row)
                self._held[user_id] = row
        return self._model

    def _forget(self, user_id: str) -> None:
        if self._held.pop(user_id, None) is not None:
            self._model.forget_user(user_id)
