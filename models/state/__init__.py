"""The publish path's state machine: how one event changes a user's own state (history,
affinities, seen, bought, hidden, social inbox and actions), popularity and the follow graph.

:class:`MemoryState` is the pure reference implementation. ``streams.store.RedisStore`` runs
the same transitions atomically inside Redis (one Lua script per batch); the store contract
suite (tests/integration/test_store_contract.py) feeds both the same events and requires
identical snapshots. Item co-occurrence and similarity are learnt apart, off the publish path
(:mod:`models.cooccurrence`).

Orderings copy Redis sorted sets exactly (score, then member bytes), so trimming evicts the
same members in both implementations.

>>> from models.events import Event, EventType
>>> state = MemoryState(StateParams())
>>> ev = Event("e1", EventType.VIEW, "u1", 1_700_000_000.0, item_id="a")
>>> state.apply(ev), state.apply(ev)
(<Outcome.APPLIED: 'applied'>, <Outcome.DUPLICATE: 'duplicate'>)
>>> _ = state.apply(Event("e2", EventType.CART, "u1", 1_700_000_001.0, item_id="b"))
>>> [item for item, _ in state.user_view("u1", recent_items=5, neighbours=5).recent]
['b', 'a']
"""

from __future__ import annotations

from models.state.memory import MemoryState
from models.state.views import (
    ACTIONS_READ,
    COOCCURRENCE_CAP,
    COOCCURRENCE_WINDOW,
    NEIGHBOURS_READ,
    POPULAR_READ,
    RECENT_READ,
    ErasureReport,
    Outcome,
    PopularView,
    Similar,
    SocialProof,
    StateParams,
    UserView,
)

__all__ = [
    "ACTIONS_READ",
    "COOCCURRENCE_CAP",
    "COOCCURRENCE_WINDOW",
    "NEIGHBOURS_READ",
    "POPULAR_READ",
    "RECENT_READ",
    "ErasureReport",
    "MemoryState",
    "Outcome",
    "PopularView",
    "Similar",
    "SocialProof",
    "StateParams",
    "UserView",
]
