"""Popularity whose half-life is learned from the stream: the decay that best predicts the next
item.

A shop's stream may span hours (the simulator), weeks (Taobao) or a decade (Ciao); a half-life
fixed in hours forgets a slow stream's whole past, one fixed in years never lets a fast one
move on. So this keeps the decayed popularity of every item under a grid of half-lives at
once (a minute to centuries, ×4 apart, and no decay at all) and scores each by how well it
predicted what users actually did next: for every event on an item seen before, the log of
that item's share of the decayed mass just before the event (the predictive log-likelihood
of the next item, a proper score). The half-life with the best running score is the one in
use. An item nobody has touched yet cannot be predicted by any half-life, so it scores none.

Scores are kept as logarithms, so no decay ever underflows: an item's ``log s`` is updated
as ``s ← s·2^(−Δt/h) + w`` with ``logaddexp``. Ranking needs no decay at read time: under one
half-life, ``log s_i + t_i·ln2/h`` (``t_i`` the item's last update) orders items as their
decayed scores do at any common time.

>>> pop = LearnedHalfLife()
>>> for n in range(40):   # "a" is popular early, "b" takes over
...     pop.update("a" if n < 20 else "b", 1.0, ts=n * 3600.0)
>>> [item for item, _ in pop.top(2, now=40 * 3600.0)]
['b', 'a']
>>> pop.update("c", 1.0, ts=41 * 3600.0)   # a new item: no evidence either way
>>> pop.half_life_s < math.inf
True
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

LN2 = math.log(2.0)

#: The half-lives compared: a minute × 4^k up to well over a century, then no decay (plain
#: popularity). ×4 apart: a factor of two either way changes rankings little.
GRID_S: tuple[float, ...] = (*(60.0 * 4.0**k for k in range(15)), math.inf)

#: Weight of one observation in the running scores: about the last 5,000 predictions count,
#: so the choice can follow a stream whose pace changes.
SCORE_DECAY = 2e-4

#: Observations before the choice may leave its starting point (the state's half-life).
MIN_OBSERVATIONS = 100


class LearnedHalfLife:
    """Decayed popularity under every half-life of :data:`GRID_S`, and the best of them.

    ``update(item, weight, ts)`` for every positive-weight item event, in time order;
    ``half_life_s`` is the half-life in use, ``top(n, now)`` the most popular items under it,
    ``score(item, now)`` one item's decayed popularity. ``start_s`` is the half-life used
    until :data:`MIN_OBSERVATIONS` predictions have been scored (the nearest on the grid).
    """

    def __init__(self, start_s: float = 6 * 3600.0, top_size: int = 200) -> None:
        self.grid = np.array(GRID_S, dtype=np.float64)
        self._rate = np.where(np.isinf(self.grid), 0.0, LN2 / self.grid)  # ln2 / h
        self.top_size = top_size
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self._log_s = np.full((64, len(GRID_S)), -np.inf)
        self._last = np.zeros(64)
        self._log_total = np.full(len(GRID_S), -np.inf)
        self._total_ts: float | None = None
        self.scores = np.zeros(len(GRID_S))  # running mean log-likelihood per half-life
        self.observations = 0
        self._choice = (
            len(GRID_S) - 1
            if math.isinf(start_s)
            else int(np.argmin(np.abs(np.log(self.grid[:-1]) - math.log(start_s))))
        )
        self._top: list[tuple[float, str]] = []  # (log key, item) ascending, under the choice
        self._in_top: dict[str, float] = {}
        self._changed: set[str] = set()  # items whose rows changed since take_rows()

    @property
    def half_life_s(self) -> float:
        return float(self.grid[self._choice])

    @property
    def newest_ts(self) -> float | None:
        """The time of the newest update (None before the first)."""
        return self._total_ts

    def update(self, item_id: str, weight: float, ts: float) -> None:
        """Score the half-lives on this event (if the item was seen before), then learn it."""
        if weight <= 0.0:
            return
        row = self._index.get(item_id)
        if self._total_ts is not None:
            log_total = self._log_total - (ts - self._total_ts) * self._rate
        else:
            log_total = self._log_total
        log_w = math.log(weight)
        if row is None:
            row = self._add(item_id)
            log_s = np.full(len(GRID_S), log_w)
        else:
            decayed = self._log_s[row] - (ts - self._last[row]) * self._rate
            if np.isfinite(decayed).all():  # (-inf: every touch was withdrawn, as if unseen)
                self._observe(decayed - log_total)
            log_s = np.logaddexp(decayed, log_w)
        self._log_s[row] = log_s
        self._last[row] = ts
        self._log_total = np.logaddexp(log_total, log_w)
        self._total_ts = ts
        self._changed.add(item_id)
        self._offer(item_id, float(log_s[self._choice] + ts * self._rate[self._choice]))

    def withdraw(self, item_id: str, weight: float, ts: float) -> None:
        """Take back what ``update(item_id, weight, ts)`` added (erasure), under every
        half-life; never below zero, so withdrawing what was never learnt leaves nothing of
        the item rather than a negative count.

        >>> pop = LearnedHalfLife()
        >>> pop.update("a", 2.0, ts=0.0); pop.update("a", 1.0, ts=60.0)
        >>> pop.withdraw("a", 2.0, ts=0.0)
        >>> round(pop.score("a", now=60.0), 9), pop.top(1, now=60.0)[0][0]
        (1.0, 'a')
        >>> pop.withdraw("a", 1.0, ts=60.0); pop.top(1, now=60.0)
        []
        """
        row = self._index.get(item_id)
        if row is None or weight <= 0.0:
            return
        self._log_s[row] = _less(self._log_s[row], self._last[row], weight, ts, self._rate)
        if self._total_ts is not None:
            self._log_total = _less(self._log_total, self._total_ts, weight, ts, self._rate)
        self._changed.add(item_id)
        self._rebuild_top()  # erasures are rare: a lowered item may fall out of the top

    def _observe(self, log_likelihood: npt.NDArray[np.float64]) -> None:
        self.observations += 1
        rate = max(SCORE_DECAY, 1.0 / self.observations)  # a plain mean until the window fills
        self.scores += rate * (log_likelihood - self.scores)
        if self.observations >= MIN_OBSERVATIONS:
            best = int(np.argmax(self.scores))
            if best != self._choice and self.scores[best] > self.scores[self._choice]:
                self._choice = best
                self._rebuild_top()

    def _add(self, item_id: str) -> int:
        row = len(self._ids)
        if row == len(self._last):
            self._log_s = np.concatenate([self._log_s, np.full_like(self._log_s, -np.inf)])
            self._last = np.concatenate([self._last, np.zeros_like(self._last)])
        self._ids.append(item_id)
        self._index[item_id] = row
        return row

    # ---- the ranking under the half-life in use ----------------------------------------------
    def _offer(self, item_id: str, key: float) -> None:
        old = self._in_top.get(item_id)
        if old is not None:
            del self._top[bisect_left(self._top, (old, item_id))]
        elif len(self._top) >= self.top_size:
            if (key, item_id) <= self._top[0]:
                return
            del self._in_top[self._top.pop(0)[1]]
        insort(self._top, (key, item_id))
        self._in_top[item_id] = key

    def _rebuild_top(self) -> None:
        count = len(self._ids)
        keys = self._log_s[:count, self._choice] + self._last[:count] * self._rate[self._choice]
        keep = np.argsort(keys, kind="stable")[-self.top_size :]
        self._top = sorted(
            (float(keys[r]), self._ids[r]) for r in keep.tolist() if keys[r] > -np.inf
        )
        self._in_top = {item: key for key, item in self._top}

    def score(self, item_id: str, now: float) -> float:
        """The item's decayed popularity at ``now`` under the half-life in use (0 if unseen)."""
        row = self._index.get(item_id)
        if row is None:
            return 0.0
        c = self._choice
        return math.exp(self._log_s[row, c] - (now - self._last[row]) * self._rate[c])

    def top(self, n: int, now: float) -> list[tuple[str, float]]:
        """The ``n`` most popular items (at most ``top_size``), best first, with
        :meth:`score`."""
        if n <= 0 or not self._top:
            return []
        items = [item for _, item in reversed(self._top[-n:])]
        rows = [self._index[item] for item in items]
        c = self._choice
        # One vectorised exp for the list: this runs on every request.
        scores = np.exp(self._log_s[rows, c] - (now - self._last[rows]) * self._rate[c])
        return list(zip(items, scores.tolist(), strict=True))

    def ranked(self) -> Iterator[str]:
        """The items of :meth:`top`, best first, without their scores (lazily: callers
        usually stop after a few)."""
        return (item for _, item in reversed(self._top))

    def state(self) -> dict[str, object]:
        """What eval prints and a worker logs: the choice and the running score of each
        half-life."""
        return {
            "half_life_s": self.half_life_s,
            "observations": self.observations,
            "scores": dict(zip(GRID_S, self.scores.tolist(), strict=True)),
        }

    def choice(self) -> dict[str, Any]:
        """What a restarted estimator continues from (:meth:`resume`): the half-life in use
        (its place on the grid) and the running scores, without the items' history.

        >>> pop = LearnedHalfLife(start_s=math.inf)
        >>> LearnedHalfLife.resume(pop.choice()).half_life_s
        inf
        """
        return {
            "choice": self._choice,
            "scores": self.scores.tolist(),
            "observations": self.observations,
        }

    @classmethod
    def resume(cls, data: Mapping[str, Any], top_size: int = 200) -> LearnedHalfLife:
        """A fresh estimator continuing a :meth:`choice`: the items' popularity is learnt
        again from the stream, and the half-life in use does not start over meanwhile."""
        pop = cls(top_size=top_size)
        pop._choice = GRID_S.index(chosen_half_life(data))
        pop.scores = np.asarray(data["scores"], dtype=np.float64)
        pop.observations = int(data["observations"])
        return pop

    # ---- the items' history, kept beside the choice (streams/runtime/learner_state.py) ------
    def take_rows(self) -> dict[str, bytes]:
        """Each item changed since the last call as bytes (its last update time, then its log
        score under each half-life), and under ``""`` the whole stream's; :meth:`put_rows`
        takes them back."""
        index = self._index
        rows = {
            i: np.append(self._last[index[i]], self._log_s[index[i]]).tobytes()
            for i in self._changed
        }
        self._changed.clear()
        if self._total_ts is not None:
            rows[""] = np.append(self._total_ts, self._log_total).tobytes()
        return rows

    def put_rows(self, rows: Mapping[str, bytes]) -> None:
        """Continue from rows :meth:`take_rows` gave (a restarted learner's popularity).

        >>> pop = LearnedHalfLife()
        >>> pop.update("a", 1.0, ts=0.0)
        >>> again = LearnedHalfLife.resume(pop.choice()); again.put_rows(pop.take_rows())
        >>> again.top(1, now=0.0) == pop.top(1, now=0.0)
        True
        """
        for item_id, raw in rows.items():
            values = np.frombuffer(raw, dtype=np.float64)
            if item_id == "":
                self._total_ts, self._log_total = float(values[0]), values[1:].copy()
                continue
            row = self._index.get(item_id)
            row = self._add(item_id) if row is None else row
            self._last[row], self._log_s[row] = values[0], values[1:]
        self._rebuild_top()


def _less(
    log_s: npt.NDArray[np.float64],
    at: float,
    weight: float,
    ts: float,
    rate: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """``log(s − w·2^(−(at−ts)/h))`` per half-life, −inf where nothing is left."""
    gap = math.log(weight) - (at - ts) * rate - log_s  # log of the share withdrawn
    with np.errstate(invalid="ignore", divide="ignore"):
        left = log_s + np.log1p(-np.exp(np.minimum(gap, 0.0)))
    return np.where(gap < math.log1p(-1e-9), left, -np.inf)


def chosen_half_life(choice: Mapping[str, Any]) -> float:
    """The half-life a :meth:`LearnedHalfLife.choice` is using, in seconds.

    >>> chosen_half_life(LearnedHalfLife(start_s=3600.0).choice())
    3840.0
    """
    return GRID_S[int(choice["choice"])]
