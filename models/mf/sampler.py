"""MF's negative sampler: which items each learning step treats as negatives, a pure function of
the seed, the step and the sampling pool (the known items in row order, or the item rows of
recent positives), so a restored sampler draws what the original would have.

A store keeps the sampler as a step count and a list of recent positives, and follows it with
what the sampler learnt since it last asked (:meth:`NegativeSampler.take_news`, applied by
:meth:`SamplerState.then`): a count to add and positives to append, not the whole ring again.

>>> sampler = NegativeSampler(negatives=3, sampling="popularity", pool_size=2, seed=7)
>>> for row in (4, 5, 6):
...     sampler.remember(row)
>>> sampler.ordered(), len(sampler.draw(item_count=10))
([5, 6], 3)
>>> sampler.steps += 3
>>> sampler.take_news(), sampler.take_news()
((3, [5, 6]), (0, []))
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

Sampling = Literal["uniform", "popularity"]


@dataclass(frozen=True, slots=True)
class SamplerState:
    """Everything besides the factor rows that the next negatives depend on.

    ``steps`` counts learning steps (the n in "negatives are a function of (seed, n)");
    ``pool`` holds the item ids of recent positives, oldest first (popularity sampling only).
    """

    steps: int
    pool: tuple[str, ...]

    def then(self, news: SamplerState, pool_size: int) -> SamplerState:
        """This state followed by ``news`` (steps taken and positives remembered since): the
        counts add up and the ring keeps the newest ``pool_size`` positives.

        >>> SamplerState(5, ("a", "b")).then(SamplerState(2, ("c",)), pool_size=2)
        SamplerState(steps=7, pool=('b', 'c'))
        """
        return SamplerState(self.steps + news.steps, (self.pool + news.pool)[-pool_size:])


class NegativeSampler:
    """``negatives`` item rows per learning step, drawn uniformly from the known items or, with
    ``sampling="popularity"``, from a ring of the last ``pool_size`` positives' rows (uniform
    while the ring is empty)."""

    def __init__(self, negatives: int, sampling: Sampling, pool_size: int, seed: int) -> None:
        self.negatives = negatives
        self.sampling: Sampling = sampling
        self.pool_size = pool_size
        self.seed = seed
        self.steps = 0
        self.pool: list[int] = []  # ring buffer of item rows of recent positives
        self.pool_next = 0  # where the next positive goes once the ring is full
        self._taken = 0  # steps at the last take_news or restore
        self._news: deque[int] = deque(maxlen=pool_size)  # rows remembered since then

    def draw(self, item_count: int) -> list[int]:
        """``negatives`` item rows, a pure function of (seed, steps, the pool or item count)."""
        popular = self.sampling == "popularity" and bool(self.pool)
        size = len(self.pool) if popular else item_count
        if self.negatives == 0 or size == 0:
            return []
        draws: list[int] = []
        block = 0
        while len(draws) < self.negatives:
            key = f"{self.seed}\x1f{self.steps}\x1f{block}".encode()
            digest = hashlib.blake2b(key, digest_size=64).digest()
            draws.extend(int(v) % size for v in np.frombuffer(digest, dtype="<u8").tolist())
            block += 1
        draws = draws[: self.negatives]
        if not popular:
            return draws
        # Positions count from the oldest entry, so a restored (rotated) ring draws the same.
        return [self.pool[(self.pool_next + d) % size] for d in draws]

    def remember(self, row: int) -> None:
        self._news.append(row)
        if len(self.pool) < self.pool_size:
            self.pool.append(row)
        else:
            self.pool[self.pool_next] = row
            self.pool_next = (self.pool_next + 1) % self.pool_size

    def ordered(self) -> list[int]:
        """The ring's rows, oldest first."""
        return self.pool[self.pool_next :] + self.pool[: self.pool_next]

    def take_news(self) -> tuple[int, list[int]]:
        """(steps taken, rows remembered, the newest ``pool_size``) since the last call or
        :meth:`restore`; then forgets them."""
        news = (self.steps - self._taken, list(self._news))
        self._taken = self.steps
        self._news.clear()
        return news

    def restore(self, steps: int, rows: list[int]) -> None:
        """Continue from ``steps`` with the rows of :meth:`ordered` (the newest ``pool_size``),
        with no news."""
        self.steps = steps
        self.pool = rows[-self.pool_size :]
        self.pool_next = 0
        self._taken = steps
        self._news.clear()
