"""MF after a run under faults, compared with clean replays of the same events.

Online SGD is not order-free: every step moves shared item rows, and the negatives it samples
depend on the positives seen before. The learner meets the users' events in whatever order
its consumer reads the partitions (after an outage: a backlog, in large slices per partition),
so even a run without faults does not reproduce a replay in production order bit for bit;
two clean replays in two orders Kafka could deliver already disagree on a third to a half of a
user's top 10. The comparison therefore has two parts:

- exact: MF took one SGD step per weighted event (its stored step counter equals the
  replay's: nothing lost, nothing learnt twice), and it has a row for every user and item the
  replay has, and no other;
- within a tolerance: what it learnt, as the mean over users of the AUC of their own items
  (the chance that an item the user acted on scores above one they did not). The run's may
  differ from the replay's by at most :data:`AUC_TOLERANCE`; the spread of two more clean
  replays in other orders is reported beside it. On a stream too short for MF to learn
  (every clean replay within :data:`AUC_TOLERANCE` of chance) the AUCs are noise around 0.5
  and only reported: the exact part still holds.
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
from streams.sources.factory import mf_source
from streams.tools.replay import applied_once

#: How far the run's mean AUC may be from the clean replay's.
AUC_TOLERANCE = 0.05
#: Seeds of the other orders the clean replay is also run in (their spread is reported).
OTHER_ORDERS = (1, 2)


@dataclass(frozen=True)
class MFComparison:
    """The run's MF against the clean replay in production order."""

    steps: int  # SGD steps the run took (one per weighted event learnt)
    reference_steps: int
    missing_users: int
    extra_users: int
    missing_items: int
    extra_items: int
    auc: float
    reference_auc: float
    other_orders_auc: tuple[float, ...]

    @property
    def auc_judged(self) -> bool:
        return learnt_beyond_chance(self.reference_auc, *self.other_orders_auc)

    @property
    def passed(self) -> bool:
        """Exact steps and rows, and an AUC near the replay's when there is one to judge.

        >>> run = MFComparison(9, 9, 0, 0, 0, 0, 0.60, 0.73, (0.74, 0.72))
        >>> run.passed, run.auc_judged
        (False, True)
        >>> MFComparison(9, 9, 0, 0, 0, 0, 0.50, 0.43, (0.44, 0.43)).passed
        True
        >>> MFComparison(8, 9, 0, 0, 0, 0, 0.50, 0.43, (0.44, 0.43)).passed
        False
        """
        rows = (self.missing_users, self.extra_users, self.missing_items, self.extra_items)
        close = abs(self.auc - self.reference_auc) <= AUC_TOLERANCE or not self.auc_judged
        return self.steps == self.reference_steps and not any(rows) and close

    def detail(self) -> str:
        others = ", ".join(f"{a:.3f}" for a in self.other_orders_auc)
        return (
            f"steps {self.steps} (replay {self.reference_steps}); rows missing/extra: users "
            f"{self.missing_users}/{self.extra_users}, items {self.missing_items}/"
            f"{self.extra_items}; mean AUC {self.auc:.3f} (replay {self.reference_auc:.3f}, "
            f"tolerance {AUC_TOLERANCE}; other clean orders {others})"
            + ("" if self.auc_judged else "; AUC not judged: the replays are at chance")
        )


def learnt_beyond_chance(*replay_aucs: float) -> bool:
    """Whether clean replays learnt something to compare a run's AUC against: each beat
    chance by more than :data:`AUC_TOLERANCE`. Otherwise their AUCs are noise around 0.5.

    >>> learnt_beyond_chance(0.73, 0.74), learnt_beyond_chance(0.73, 0.53)
    (True, False)
    """
    return min(replay_aucs) > 0.5 + AUC_TOLERANCE


def kafka_order(events: Sequence[Event], partitions: int, seed: int) -> list[Event]:
    """Another order a consumer could read ``events`` in: each partition's (so each user's)
    events in order, the partitions taken in random slices of 1-200 events.

    >>> from models.events import EventType
    >>> stream = [Event(f"e{n}", EventType.VIEW, f"u{n % 7}", float(n), "i") for n in range(999)]
    >>> mixed = kafka_order(stream, partitions=6, seed=1)
    >>> sorted(e.event_id for e in mixed) == sorted(e.event_id for e in stream)
    True
    >>> def of(events, user): return [e.event_id for e in events if e.user_id == user]
    >>> all(of(mixed, f"u{u}") == of(stream, f"u{u}") for u in range(7)), mixed != stream
    (True, True)
    """
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
        async for raw in client.scan_iter(match=keys.users_matching("mf"), count=1000)
    ]
    rows = await client.mget([keys.user(u, "mf") for u in users]) if users else []
    found = {u: r for u, r in zip(users, rows, strict=True) if isinstance(r, bytes)}
    source.model.import_rows("user", found)
    return source.model


def mean_auc(model: OnlineMF, params: StateParams, events: Sequence[Event]) -> float:
    """Mean over users of the share of (own item, other item) pairs the model ranks right;
    own items are those of the user's events with a positive weight."""
    import numpy as np

    weights = dict(params.weights)
    own: dict[str, set[str]] = {}
    for e in applied_once(params, events):
        if e.item_id is not None and weights.get(e.type, 0.0) > 0:
            own.setdefault(e.user_id, set()).add(e.item_id)
    items = list(model.item_ids())
    known = set(model.user_ids())
    aucs = []
    for user, theirs in own.items():
        mask = np.array([i in theirs for i in items])
        if user not in known or mask.all() or not mask.any():
            continue
        scores = np.asarray(model.score(user, items))
        aucs.append(float((scores[mask][:, None] > scores[~mask][None, :]).mean()))
    return sum(aucs) / len(aucs) if aucs else 1.0


async def compare_mf(
    client: aioredis.Redis, params: StateParams, events: Sequence[Event], partitions: int
) -> MFComparison:
    """The run's MF (in Redis) against clean replays of ``events``."""
    from streams.sources.mf_batch import stored_sampler

    reference = replay_mf(client, params, events)
    others = [replay_mf(client, params, kafka_order(events, partitions, s)) for s in OTHER_ORDERS]
    run = await stored_mf(client, params)
    sampler = await stored_sampler(client, Keys())
    ref_users, run_users = set(reference.user_ids()), set(run.user_ids())
    ref_items, run_items = set(reference.item_ids()), set(run.item_ids())
    return MFComparison(
        steps=sampler.steps,
        reference_steps=reference.steps,
        missing_users=len(ref_users - run_users),
        extra_users=len(run_users - ref_users),
        missing_items=len(ref_items - run_items),
        extra_items=len(run_items - ref_items),
        auc=mean_auc(run, params, events),
        reference_auc=mean_auc(reference, params, events),
        other_orders_auc=tuple(mean_auc(m, params, events) for m in others),
    )
