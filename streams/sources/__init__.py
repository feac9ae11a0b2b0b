"""Recommendation sources kept beside the core state: MF, content, user-CF, FBT.

Each wraps a pure model from ``models/`` and keeps its state in Redis, so a restarted or second
worker continues where another stopped. They share one shape (:class:`SourceModel`): learn from
a batch of applied events, propose candidates for some users, erase users.

Who writes what, with several workers: per-user state (``{prefix}u:{user}:…``) is written only
by the worker that owns the user's partition (events are keyed by user id), so a
read-modify-write of it is safe; shared tables are changed only by commutative increments
(counts), or are last-writer-wins where the algorithm tolerates it (MF item rows: concurrent SGD
steps on a shared row, as in Hogwild!).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from models.events import Event
from models.recommend import Candidate, Source


class SourceModel(Protocol):
    """A recommendation source with its state in Redis."""

    @property
    def source(self) -> Source: ...

    async def learn(self, events: Sequence[Event]) -> None:
        """Learn from applied, deduplicated events (in order); one call per batch."""
        ...

    async def candidates(
        self,
        user_ids: Sequence[str],
        exclude: Mapping[str, frozenset[str]],
        k: int,
        now: float,
    ) -> dict[str, list[Candidate]]:
        """Up to ``k`` candidates per user, best first, none in ``exclude[user]``."""
        ...

    async def erase(self, user_ids: Sequence[str]) -> int:
        """Remove the users from this source's state (their rows and their contributions to
        shared tables); returns how many stored entries were removed."""
        ...
