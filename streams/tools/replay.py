"""The clean reference a run under faults is compared with, and the comparison.

The reference applies the same events once each, in the order they were produced, with the
pure models the live path mirrors. What is compared, and how closely:

- the worker's state of every user (history, affinities, follows, dedupe window, …):
  exactly, against :class:`streams.store.MemoryStore`. Lists are left out: each names the
  moment it was made.
- item-CF's counts (``dot``, ``norm2`` and the users' windows): exactly (floats to 1e-9),
  against :class:`models.cooccurrence.Cooccurrence`. Sums do not depend on the order the
  learner met the users in, as long as no row reached ``SOCIALREC_COOCCURRENCE_CAP`` (which
  pair is evicted then depends on that order). The similarity lists are not compared: each
  ``s_ij`` is refreshed with the norms current at that moment.
- MF: its SGD steps, and the negatives it samples, depend on how users' events interleave,
  so two clean replays in two orders Kafka could deliver already differ. See
  :mod:`streams.tools.chaos_mf`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis

from models.cooccurrence import Cooccurrence
from models.events import Event
from models.state import MemoryState, Outcome, StateParams
from models.state.seen import FLOOR
from streams.config import Settings
from streams.keys import Keys
from streams.security import kafka_client_kwargs

#: How far two floats of counts may differ (sums of the same terms in another order).
REL_TOL = 1e-9


def applied_once(params: StateParams, events: Iterable[Event]) -> list[Event]:
    """The events the state applies, in order: each event id once (a redelivery is not)."""
    state = MemoryState(params)
    return [e for e in events if state.apply(e) is Outcome.APPLIED]


def order_independent(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The users' own state from a store snapshot, without their lists."""
    users = {
        uid: {k: v for k, v in u.items() if k != "recommendations"}
        for uid, u in snapshot["users"].items()
    }
    return {"users": users}


def cf_counts(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Item-CF's counts and windows from a ``Cooccurrence`` or ``RedisItemCF`` snapshot."""
    return {k: snapshot[k] for k in ("dot", "norm2", "windows")}


def cf_reference(params: StateParams, events: Sequence[Event]) -> dict[str, Any]:
    """Item-CF's counts after learning every event exactly once."""
    cf = Cooccurrence(params)
    cf.learn(applied_once(params, events))
    return cf_counts(cf.snapshot())


def differences(a: Any, b: Any, path: str = "", limit: int = 5) -> list[str]:
    """Where two nested values differ (at most ``limit`` places; floats to :data:`REL_TOL`).

    >>> differences({"x": 1.0, "y": [1, 2]}, {"x": 1.0 + 1e-12, "y": [1, 2]})
    []
    >>> differences({"x": {"n": 1}}, {"x": {"n": 2}, "z": 0})
    ['/: keys only on one side: z', '/x/n: 1 != 2']
    """
    found: list[str] = []
    if isinstance(a, dict) and isinstance(b, dict):
        only = sorted(set(a) ^ set(b), key=str)
        if only:
            found.append(f"{path or '/'}: keys only on one side: {', '.join(map(str, only[:3]))}")
        for key in sorted(set(a) & set(b), key=str):
            if len(found) >= limit:
                break
            found += differences(a[key], b[key], f"{path}/{key}", limit - len(found))
    elif isinstance(a, float) and isinstance(b, float):
        if not math.isclose(a, b, rel_tol=REL_TOL, abs_tol=REL_TOL):
            found.append(f"{path}: {a} != {b}")
    elif a != b:
        found.append(f"{path}: {a} != {b}")
    return found[:limit]


async def seen_events(client: aioredis.Redis) -> int:
    """Events the worker has applied, summed over the users' dedupe windows (a window's
    floor is not an event: models/state/seen.py)."""
    total = 0
    async for key in client.scan_iter(match=Keys().users_matching("seen_events"), count=1000):
        total += await client.hlen(key) - await client.hexists(key, FLOOR)
    return total


async def group_caught_up(settings: Settings, group: str, logical: str = "events") -> bool:
    """Has consumer group ``group`` committed every record now in the topic?"""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.tools.bench.readback import partitions_of

    topic = settings.topic(logical)
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    consumer = AIOKafkaConsumer(**kafka_client_kwargs(settings))
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        ends = await consumer.end_offsets(
            [TopicPartition(topic, p) for p in range(partitions_of(settings, logical))]
        )
    finally:
        await consumer.stop()
        await admin.close()
    done = {tp: meta.offset for tp, meta in committed.items() if tp.topic == topic}
    return all(done.get(tp, 0 if end == 0 else -1) >= end for tp, end in ends.items())
