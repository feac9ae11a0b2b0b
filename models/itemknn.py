"""A plain incremental item-kNN, the baseline any recommender should beat.

Each user's last ``window`` distinct items; when a user touches an item that is not in their
window, it co-occurs once with every item in it (counts never withdrawn), and the item's user
count ``n_i`` goes up. A request scores every item ``c`` by ``Σ_j C_jc / sqrt(n_j · n_c)``
over the user's window: the cosine of binary co-occurrence counts, summed. No weights, no
shrinkage, no decay, no fill-in: what a first attempt at a recommender would be.

Rows are kept as growing arrays (codes and counts) so a request is one ``bincount`` over the
rows of the user's window, not a Python loop over every co-occurring pair.

>>> from models.events import Event, EventType
>>> knn = ItemKNN()
>>> for n, (user, item) in enumerate([("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"),
...                                   ("c", "x"), ("c", "z"), ("d", "x")]):
...     knn.learn(Event(f"e{n}", EventType.VIEW, user, 1e9 + n, item_id=item))
>>> [s.item_id for s in knn.recommend("d", 5, {"x"}, now=1e9 + 9)]
['y', 'z']
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet

import numpy as np
import numpy.typing as npt

from models.evaluation import Scored
from models.events import DEFAULT_WEIGHTS, ITEM_TYPES, Event, EventType

#: The user's items a request starts from, and pairs are formed within.
WINDOW = 20


class _Row:
    __slots__ = ("codes", "counts", "slot")

    def __init__(self) -> None:
        self.codes = array("q")
        self.counts = array("d")
        self.slot: dict[int, int] = {}

    def add(self, code: int) -> None:
        at = self.slot.get(code)
        if at is None:
            self.slot[code] = len(self.codes)
            self.codes.append(code)
            self.counts.append(1.0)
        else:
            self.counts[at] += 1.0


class ItemKNN:
    """The baseline, behind the evaluation's :class:`~models.evaluation.Recommender`
    protocol. Learns every item event of positive weight (``weights``: the state's)."""

    def __init__(
        self,
        weights: Mapping[EventType, float] | None = None,
        *,
        window: int = WINDOW,
        name: str = "itemknn",
    ) -> None:
        self.weights = dict(weights or DEFAULT_WEIGHTS)
        self.window = window
        self.name = name
        self._code: dict[str, int] = {}
        self._ids: list[str] = []
        self._users_of = array("d")  # n_i
        self._rows: list[_Row] = []
        self._history: dict[str, list[int]] = {}  # user -> codes, oldest first
        self._last: tuple[str, float, npt.NDArray[np.float64]] | None = None

    def learn(self, event: Event) -> None:
        item = event.item_id
        if item is None or event.type not in ITEM_TYPES:
            return
        if self.weights.get(event.type, DEFAULT_WEIGHTS[event.type]) <= 0.0:
            return
        self._last = None
        code = self._code.get(item)
        if code is None:
            code = self._code[item] = len(self._ids)
            self._ids.append(item)
            self._users_of.append(0.0)
            self._rows.append(_Row())
        history = self._history.setdefault(event.user_id, [])
        if code in history:  # already in the window: only its place changes
            history.remove(code)
            history.append(code)
            return
        row = self._rows[code]
        for other in history:
            row.add(other)
            self._rows[other].add(code)
        self._users_of[code] += 1.0
        history.append(code)
        if len(history) > self.window:
            del history[0]

    def _scores(self, user_id: str, now: float) -> npt.NDArray[np.float64]:
        last = self._last
        if last is not None and last[0] == user_id and last[1] == now:
            return last[2]
        count = len(self._ids)
        history = self._history.get(user_id, [])
        users = np.frombuffer(self._users_of, dtype=np.float64)[:count]
        scores: npt.NDArray[np.float64] = np.zeros(count)
        if history and count:
            rows = [self._rows[j] for j in history]
            codes = np.concatenate([np.frombuffer(r.codes, dtype=np.int64) for r in rows])
            counts = np.concatenate(
                [
                    np.frombuffer(r.counts, dtype=np.float64) / math.sqrt(users[j])
                    for r, j in zip(rows, history, strict=True)
                ]
            )
            if len(codes):
                scores = np.bincount(codes, weights=counts, minlength=count).astype(np.float64)
                scores /= np.sqrt(np.maximum(users, 1.0))
        self._last = (user_id, now, scores)
        return scores

    def top_k(
        self, user_id: str, k: int, exclude: AbstractSet[str], now: float = 0.0
    ) -> list[tuple[str, float]]:
        """The ``k`` best items for the user, best first (ties by id), none excluded, only
        scores above 0: the hybrid's ``item_knn`` source."""
        if k <= 0:
            return []
        scores = self._scores(user_id, now).copy()
        banned = [c for c in (self._code.get(i) for i in exclude) if c is not None]
        scores[banned] = 0.0
        positive = np.flatnonzero(scores > 0.0)
        if len(positive) > k:
            positive = positive[np.argpartition(-scores[positive], k - 1)[:k]]
        ids = self._ids
        ranked = sorted(positive.tolist(), key=lambda c: (-scores[c], ids[c]))
        return [(ids[c], float(scores[c])) for c in ranked[:k]]

    def recommend(
        self, user_id: str, k: int, exclude: AbstractSet[str], now: float
    ) -> list[Scored]:
        return [Scored(i, s, "item_cf") for i, s in self.top_k(user_id, k, exclude, now)]

    def candidate_scores(self, user_id: str, item_ids: Sequence[str], now: float) -> list[float]:
        scores = self._scores(user_id, now)
        code = self._code
        return [float(scores[code[i]]) if i in code else 0.0 for i in item_ids]
