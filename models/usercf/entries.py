"""User-CF's storage: the bounded entries (user, item, affinity), each kept on both sides of the
index, their caps and expiry, erasure, and the rows and indexes as arrays over integer codes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from models.events import DEFAULT_WEIGHTS, EventType
from models.similarity import affinity_after
from models.usercf.pools import Codes, FloatArray, IntArray


class UserEntries:
    """Bounded user→item affinities with an item→users index. :class:`~models.usercf.UserCF`
    gives the sizes (with their defaults) and checks them."""

    def __init__(
        self,
        *,
        weights: Mapping[EventType, float] | None,
        affinity_cap: float,
        items_per_user: int,
        users_per_item: int,
        entry_ttl_s: float,
    ) -> None:
        self.weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        self.affinity_cap = affinity_cap
        self.items_per_user = items_per_user
        self.users_per_item = users_per_item
        self.entry_ttl_s = entry_ttl_s
        self.items: dict[str, dict[str, float]] = {}  # user -> item -> affinity (> 0)
        self.index: dict[str, dict[str, float]] = {}  # item -> user -> last event ts
        self.norm2: dict[str, float] = {}  # user -> Σ affinity², recomputed from items[user]
        # The two dicts again as numpy arrays over integer codes, built when first read and
        # dropped when their row or index changes: the per-request sums (overlap counts, the
        # candidates' scores) then run as bincounts in C instead of dict walks. Codes hold
        # ids only (no affinities or times); an id loses its code with its last entry, so an
        # erased user leaves neither a code nor an array behind.
        self._item_codes = Codes()
        self._user_codes = Codes()
        self._row_arrays: dict[str, tuple[IntArray, FloatArray]] = {}  # codes, affinities
        self._index_arrays: dict[str, tuple[IntArray, FloatArray]] = {}  # codes, times

    # ---- updates ---------------------------------------------------------------------------
    def add(self, user_id: str, item_id: str, event_type: EventType, ts: float) -> bool:
        """Apply one event with its configured weight; True if an entry changed."""
        return self.add_weight(user_id, item_id, self.weights.get(event_type, 0.0), ts)

    def add_weight(self, user_id: str, item_id: str, weight: float, ts: float) -> bool:
        """Change ``a_ui`` by ``weight`` (clamped to ``[0, affinity_cap]``); at zero (e.g. after
        a hide) the entry is removed. Then the caps evict the least recent entries."""
        if not (math.isfinite(weight) and math.isfinite(ts)):
            raise ValueError("weight and ts must be finite numbers")
        if weight == 0.0:
            return False
        row = self.items.get(user_id, {})
        old = row.get(item_id, 0.0)
        new = affinity_after(old, weight, cap=self.affinity_cap)
        if new <= 0.0:
            if old > 0.0:
                self._remove_entry(user_id, item_id)
                return True
            return False
        if old == 0.0:  # a new entry: both ids need codes (they lose them with their last)
            self._user_codes.add(user_id)
            self._item_codes.add(item_id)
        row[item_id] = new
        self.items[user_id] = row
        users = self.index.setdefault(item_id, {})
        users[user_id] = max(users.get(user_id, ts), ts)
        self._row_arrays.pop(user_id, None)
        self._index_arrays.pop(item_id, None)
        while len(row) > self.items_per_user:
            oldest = min(row, key=lambda i: (self.index[i][user_id], i))
            self._remove_entry(user_id, oldest)
        while len(users) > self.users_per_item:
            oldest = min(users, key=lambda u: (users[u], u))
            self._remove_entry(oldest, item_id)
        if user_id in self.items:
            self._renorm(user_id)
        return True

    def expire(self, now: float) -> int:
        """Remove entries whose last event is older than ``now − entry_ttl_s``; return how
        many. O(entries): run it periodically. It is what forgets users who went quiet."""
        cutoff = now - self.entry_ttl_s
        stale = [
            (user_id, item_id)
            for item_id, users in self.index.items()
            for user_id, ts in users.items()
            if ts < cutoff
        ]
        for user_id, item_id in stale:
            self._remove_entry(user_id, item_id)
        return len(stale)

    def restore_user(self, user_id: str, entries: Mapping[str, tuple[float, float]]) -> None:
        """Put back a user's entries, item -> (affinity, last event ts), e.g. loaded from
        storage; entries with affinity ≤ 0 are skipped. No cap is applied (a stored row is
        already within its caps), so a model can hold just the users a computation needs.

        >>> from models.usercf import UserCF
        >>> cf = UserCF()
        >>> cf.restore_user("ann", {"phone": (8.0, 1.0), "case": (6.0, 2.0)})
        >>> cf.norm2["ann"], cf.index["case"]
        (100.0, {'ann': 2.0})
        """
        if user_id in self.items:
            raise ValueError("user already present")
        row = {item: float(a) for item, (a, _) in entries.items() if a > 0.0}
        if not row:
            return
        self.items[user_id] = row
        self._user_codes.add(user_id)
        for item_id in row:
            self.index.setdefault(item_id, {})[user_id] = float(entries[item_id][1])
            self._index_arrays.pop(item_id, None)
            self._item_codes.add(item_id)
        self._renorm(user_id)

    def forget_user(self, user_id: str) -> None:
        """Remove every entry of the user from both sides of the index."""
        for item_id in list(self.items.get(user_id, ())):
            self._remove_entry(user_id, item_id)

    # ---- arrays ----------------------------------------------------------------------------
    def _index_array(self, item_id: str) -> tuple[IntArray, FloatArray]:
        """The item's index as (user codes, last event times), cached until it changes."""
        arrays = self._index_arrays.get(item_id)
        if arrays is None:
            users = self.index[item_id]
            arrays = self._index_arrays[item_id] = (
                np.fromiter(map(self._user_codes.code.__getitem__, users), np.intp, len(users)),
                np.fromiter(users.values(), dtype=np.float64, count=len(users)),
            )
        return arrays

    def _row_array(self, user_id: str) -> tuple[IntArray, FloatArray]:
        """The user's row as (item codes, affinities), cached until it changes."""
        arrays = self._row_arrays.get(user_id)
        if arrays is None:
            row = self.items[user_id]
            ordered = sorted(row)  # id order: what makes :meth:`_dots` symmetric
            arrays = self._row_arrays[user_id] = (
                np.fromiter(map(self._item_codes.code.__getitem__, ordered), np.intp, len(row)),
                np.fromiter(map(row.__getitem__, ordered), dtype=np.float64, count=len(row)),
            )
        return arrays

    def snapshot(self) -> dict[str, object]:
        """Every piece of state as plain data."""
        return {
            "items": {u: dict(row) for u, row in self.items.items()},
            "index": {i: dict(users) for i, users in self.index.items()},
            "norm2": dict(self.norm2),
        }

    # ---- internals -------------------------------------------------------------------------
    def _renorm(self, user_id: str) -> None:
        # Recomputed from the user's (bounded) row rather than updated by differences, so it
        # never drifts and vanishes exactly with the user's last entry.
        self.norm2[user_id] = math.fsum(a * a for a in self.items[user_id].values())

    def _remove_entry(self, user_id: str, item_id: str) -> None:
        self._row_arrays.pop(user_id, None)
        self._index_arrays.pop(item_id, None)
        row = self.items.get(user_id)
        if row is not None and row.pop(item_id, None) is not None:
            if row:
                self._renorm(user_id)
            else:
                del self.items[user_id]
                self.norm2.pop(user_id, None)
                self._user_codes.forget(user_id)
        users = self.index.get(item_id)
        if users is not None:
            users.pop(user_id, None)
            if not users:
                del self.index[item_id]
                self._item_codes.forget(item_id)
