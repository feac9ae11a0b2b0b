"""MF after a run under faults, compared with clean replays of the same events.

Online SGD is not order-free: every step moves shared item rows, and the negatives it samples
depend on the positives seen before. The learner meets the users' events in whatever order
its consumer reads the partitions, so even a run without faults does not reproduce a replay
in production order bit for bit. The comparison therefore has two parts:

- exact: MF has a row for every user and item the reference has one for, and no other
  (a lost event can leave a user or item without one; nothing may invent one);
- within a tolerance: each user's top :data:`TOP_K` items by MF score, against the reference
  in production order. The tolerance is not a constant: a second clean replay, in another
  order Kafka could deliver (the same partitions, read in other slices), measures how far two
  correct runs drift apart, and the run may drift at most :data:`SLACK` further.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from models.events import Event
from models.mf import OnlineMF
from models.state import StateParams
from streams.keys import Keys
from streams.replay import applied_once
from streams.sources.factory import mf_source

#: How many of a user's best items are compared.
TOP_K = 10
#: How much lower than the clean-to-clean agreement the run's agreement may be.
SLACK = 0.1


@dataclass(frozen=True)
class MFComparison:
    """The run's MF against the clean replay in production order."""

    missing_users: int
    extra_users: int
    missing_items: int
    extra_items: int
    agreement: float  # mean share of a user's top-k the run and the reference both have
    clean_agreement: float  # the same between two clean replays in two orders

    @property
    def passed(self) -> bool:
        rows = (self.missing_users, self.extra_users, self.missing_items, self.extra_items)
        return not any(rows) and self.agreement >= self.clean_agreement - SLACK

    def detail(self) -> str:
        return (
            f"top-{TOP_K} agreement {self.agreement:.3f} (two clean orders: "
            f"{self.clean_agreement:.3f}, slack {SLACK}); rows missing/extra: users "
            f"{self.missing_users}/{self.extra_users}, "
            f"items {self.missing_items}/{self.extra_items}"
        )


def kafka_order(events: Sequence[Event], partitions: int, seed: int) -> list[Event]:
    """Another order a consumer could read ``events`` in: each partition's (so each user's)
    events in order, the partitions taken in random slices of 1-200 events."""
    from aiokafka.partitioner import DefaultPartitioner

    partitioner = DefaultPartitioner()
    everything = list(range(partitions))
    queues: list[list[Event]] = [[] for _ in everything]
    for event in events:
        queues[partitioner(event.user_id.encode(), everything, everything)].append(event)
    rng = random.Random(seed)
    ordered: list[Event] = []
    heads = [0] * partitions
    while len(ordered) < len(events):
        p = rng.choice([q for q in everything if heads[q] < len(queues[q])])
        take = rng.randint(1, 200)
        ordered += queues[p][heads[p] : heads[p] + take]
        heads[p] += take
    return ordered


def replay_mf(client: aioredis.Redis, params: StateParams, events: Sequence[Event]) -> OnlineMF:
    """MF, configured as the learner runs it, taught ``events`` in this order (no Redis)."""
    source = mf_source(client, Keys(), params)
    for user_id, item_id, weight in source.steps(applied_once(params, events)):
        source.model.learn(user_id, item_id, weight)
    return source.model


async def stored_mf(client: aioredis.Redis, params: StateParams) -> OnlineMF:
    """The MF rows the learner left in Redis, in a model that can score them."""
    source = mf_source(client, Keys(), params)
    await source.load()  # the item rows
    keys = Keys()
    users = [
        keys.parse(raw.decode())[1]
        async for raw in client.scan_iter(match=keys.user("*", "mf"), count=1000)
    ]
    rows = await client.mget([keys.user(u, "mf") for u in users]) if users else []
    found = {u: r for u, r in zip(users, rows, strict=True) if isinstance(r, bytes)}
    source.model.import_rows("user", found)
    return source.model


def agreement(a: OnlineMF, b: OnlineMF) -> float:
    """Mean share of each user's top-k (by score) the two models have in common."""
    users = sorted(set(a.user_ids()) & set(b.user_ids()))
    if not users:
        return 1.0
    shared = 0
    for user in users:
        top_a = {item for item, _ in a.top_k(user, TOP_K)}
        top_b = {item for item, _ in b.top_k(user, TOP_K)}
        shared += len(top_a & top_b)
    return shared / (TOP_K * len(users))


async def compare_mf(
    client: aioredis.Redis, params: StateParams, events: Sequence[Event], partitions: int
) -> MFComparison:
    """The run's MF (in Redis) against clean replays of ``events`` (production order)."""
    reference = replay_mf(client, params, events)
    other = replay_mf(client, params, kafka_order(events, partitions, seed=1))
    run = await stored_mf(client, params)
    ref_users, run_users = set(reference.user_ids()), set(run.user_ids())
    ref_items, run_items = set(reference.item_ids()), set(run.item_ids())
    return MFComparison(
        missing_users=len(ref_users - run_users),
        extra_users=len(run_users - ref_users),
        missing_items=len(ref_items - run_items),
        extra_items=len(run_items - ref_items),
        agreement=agreement(run, reference),
        clean_agreement=agreement(other, reference),
    )
