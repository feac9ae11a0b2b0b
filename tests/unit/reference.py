"""The publish path's state and item-CF's learner in one object, as unit tests need them.

The worker keeps a user's own state (models.state) and the learner keeps item-CF
(models.cooccurrence); a test that wants lists with item-CF candidates feeds both the same
applied events, as the two processes do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.cooccurrence import Cooccurrence
from models.events import Event
from models.recommend import Candidate, Source
from models.state import MemoryState, Outcome, StateParams, UserView
from streams.sources.progress import Marks


class Reference:
    def __init__(self, params: StateParams | None = None) -> None:
        self.state = MemoryState(params or StateParams())
        self.cf = Cooccurrence(self.state.params)

    def apply_batch(self, events: Sequence[Event]) -> list[Outcome]:
        outcomes = self.state.apply_batch(events)
        self.cf.learn(e for e, o in zip(events, outcomes, strict=True) if o is Outcome.APPLIED)
        return outcomes

    def apply(self, event: Event) -> Outcome:
        return self.apply_batch([event])[0]

    def user_view(self, user_id: str, **read: Any) -> UserView:
        return self.state.user_view(user_id, similar=self.cf.neighbours, **read)

    def erase(self, user_id: str) -> None:
        self.state.erase(user_id)
        self.cf.erase(user_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.state, name)


class MemoryItemCF:
    """Item-CF as a recommendation source (the learner's), its state in memory: the unit
    tests' twin of ``streams.sources.itemcf.RedisItemCF`` (the integration contract test
    checks the Redis one against :class:`Cooccurrence`)."""

    source = Source.ITEM_CF

    def __init__(self, cf: Cooccurrence) -> None:
        self.cf = cf

    async def learn(self, events: Sequence[Event], learnt: Marks | None = None) -> None:
        self.cf.learn(events)

    async def candidates(
        self, user_ids: Sequence[str], exclude: Mapping[str, frozenset[str]], k: int, now: float
    ) -> dict[str, list[Candidate]]:
        return {}

    async def erase(self, user_ids: Sequence[str]) -> dict[str, int]:
        return {u: self.cf.erase(u) for u in dict.fromkeys(user_ids)}
