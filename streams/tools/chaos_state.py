"""The chaos run's checks of what the servers hold at the end, against a clean replay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from models.events import Event
from models.state import StateParams
from streams.config import Settings
from streams.security import redis_client_for
from streams.tools.replay import applied_once

if TYPE_CHECKING:
    from streams.sources.followees import RedisFollowees


async def state_checks(settings: Settings, events: Sequence[Event]) -> list[dict[str, Any]]:
    """Dead letters, the worker's state, item-CF's counts and MF (see streams/tools/replay.py)."""
    from streams.keys import Keys
    from streams.runtime.worker import state_params
    from streams.sources.itemcf import RedisItemCF
    from streams.store import MemoryStore, RedisStore
    from streams.tools.bench.readback import TopicReader, partitions_of
    from streams.tools.chaos_mf import compare_mf
    from streams.tools.replay import cf_counts, cf_reference, differences, order_independent

    async with TopicReader(settings, "events.dlq") as dlq:
        dead = await dlq.count()
    params = state_params(settings)
    reference = MemoryStore(params)
    await reference.process_batch(list(events))
    client = redis_client_for(settings)
    try:
        actual = await RedisStore(client, params).snapshot()
        state = differences(
            order_independent(actual), order_independent(await reference.snapshot())
        )
        learnt = await RedisItemCF(client, Keys(), params).snapshot()
        counts = differences(cf_counts(learnt), cf_reference(params, events))
        mf = await compare_mf(client, params, events, partitions_of(settings, "events"))
        learner = await _basket_and_neighbour_checks(client, settings, events)
    finally:
        await client.aclose()
    users = len(actual["users"])
    return [
        check("dead letters", dead == 0, f"{dead} records in events.dlq"),
        check("worker state", not state, _outcome(f"{users} users, exact", state)),
        check("item-CF counts", not counts, _outcome("dot, norm2, windows, exact", counts)),
        check("MF", mf.passed, mf.detail()),
        *learner,
    ]


#: Share of users whose user-CF row may differ from the clean replay's (see below).
USERCF_TOLERANCE = 0.02


async def _basket_and_neighbour_checks(
    client: aioredis.Redis, settings: Settings, events: Sequence[Event]
) -> list[dict[str, Any]]:
    """FBT's counts and baskets against its pure model fed each event once: exact. User-CF's
    rows: the same users have one, exactly; their contents within a tolerance, because a full
    row drops first the entry its item's index (the 50 latest users) dropped, and which
    entries the index dropped depends on the order the learner met the users in."""
    from streams.keys import Keys
    from streams.metrics import WorkerMetrics
    from streams.runtime.worker import state_params
    from streams.sources.factory import build_sources
    from streams.sources.fbt import RedisFBT
    from streams.sources.followees import RedisFollowees
    from streams.sources.snapshots import fbt_state, tracker_state, usercf_state
    from streams.sources.usercf import RedisUserCF
    from streams.tools.replay import differences

    params = state_params(settings)
    sources, _ = build_sources(client, settings, params, WorkerMetrics())
    checks = []
    for model in sources.models:
        if isinstance(model, RedisFBT):
            tracker = model.new_tracker()
            for e in _item_events(params, events):
                tracker.add(e.user_id, e.item_id or "", e.ts, e.type)
            found = differences(await fbt_state(client, Keys()), tracker_state(tracker))
            checks.append(check("FBT counts", not found, _outcome("baskets, pairs, exact", found)))
        elif isinstance(model, RedisUserCF):
            cf = model.new_model(model.items_per_user)  # what its learn step computes
            for e in _item_events(params, events):
                cf.add(e.user_id, e.item_id or "", e.type, e.ts)
            reference = {u: r for u, r in cf.items.items() if r}
            run = (await usercf_state(client, Keys()))["items"]
            differ = [u for u in reference if differences(run.get(u), reference[u])]
            same_users = set(run) == set(reference)
            passed = same_users and len(differ) <= USERCF_TOLERANCE * len(reference)
            detail = (
                f"users with a row: {'the same' if same_users else 'differ'}; rows that differ: "
                f"{len(differ)} of {len(reference)} (tolerance {USERCF_TOLERANCE:.0%})"
            )
            checks.append(check("user-CF rows", passed, detail))
        elif isinstance(model, RedisFollowees):
            checks.append(await _followees_check(client, model, applied_once(params, events)))
    return checks


async def _followees_check(
    client: aioredis.Redis, source: RedisFollowees, events: Sequence[Event]
) -> dict[str, Any]:
    """The followees source against its pure model fed each event once, exactly: each user's
    edges and latest items follow from the user's own events, and trust is computed from the
    latest items when scoring (nothing learnt per pair, so nothing depends on learning order).
    The reverse index is checked against the edges when read (:func:`followees_state`)."""
    from streams.keys import Keys
    from streams.sources.snapshots import followees_model_state, followees_state
    from streams.tools.replay import differences

    model = source.new_model()
    for e in events:
        model.learn(e)
    found = differences(await followees_state(client, Keys()), followees_model_state(model))
    return check("followees", not found, _outcome("edges, latest items, exact", found))


def _item_events(params: StateParams, events: Sequence[Event]) -> list[Event]:
    """The events applied once each, those about an item."""
    return [e for e in applied_once(params, events) if e.item_id is not None]


def _outcome(what: str, found: list[str]) -> str:
    return f"{what}: " + ("equal" if not found else "; ".join(found))


def check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    """One row of the checks table."""
    return {"check": name, "passed": passed, "detail": detail}
