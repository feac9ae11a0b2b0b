"""One MF step's round trips: the state of a run of one partition's events in, its rows out.

:func:`read_batch_state` is one pipelined read of the run's user rows, their ledgers, its item
rows and the sampler's step count, imported into the local model; the sampler's pool is read
only when that count is not the model's own (another writer's steps, one of ours not applied,
or a Redis that rolled back), and then with pool items this worker has never seen.
:func:`write_back` is one step in the users' slot: their rows and merged ledgers with the
source's marks, handing the changed item rows and the sampler's news to the ``{mf}`` slot
(streams/sources/handoff.py), applied there before it returns. The caller holds the model's
lock throughout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis

from models.mf import OnlineMF, SamplerState
from streams.keys import Keys, decoded
from streams.sources.handoff import Handoffs
from streams.sources.mf_rows import items_key, merge_ledger, pool_key, raw_row, steps_key
from streams.sources.writes import Step, Writes


async def read_batch_state(
    client: aioredis.Redis, keys: Keys, model: OnlineMF, users: Sequence[str], items: Sequence[str]
) -> dict[str, dict[str, bytes]]:
    """Import the batch's rows and, if it moved, the sampler; returns the users' stored
    ledgers."""
    pipe = client.pipeline(transaction=False)
    for user_id in users:
        pipe.get(keys.user(user_id, "mf"))
    for user_id in users:
        pipe.hgetall(keys.user(user_id, "mf_contrib"))
    pipe.hmget(items_key(keys), items)
    pipe.get(steps_key(keys))
    replies = await pipe.execute()
    rows, ledgers = replies[: len(users)], replies[len(users) : 2 * len(users)]
    item_rows, steps = replies[-2], int(replies[-1] or 0)

    for user_id, raw in zip(users, rows, strict=True):
        if raw is None:
            # New (or erased) user: start again from the deterministic initial row.
            model.forget_user(user_id)
        else:
            model.import_rows("user", {user_id: raw_row(raw)})
    model.import_rows(
        "item", {i: raw for i, raw in zip(items, item_rows, strict=True) if raw is not None}
    )
    if steps != model.steps:
        await _restore_sampler(client, keys, model, await stored_sampler(client, keys))
    return {
        user_id: {decoded(k): v for k, v in ledger.items()}
        for user_id, ledger in zip(users, ledgers, strict=True)
    }


async def stored_sampler(client: aioredis.Redis, keys: Keys) -> SamplerState:
    """The sampler as Redis holds it (its count and pool read together: one slot)."""
    pipe = client.pipeline(transaction=True)
    pipe.get(steps_key(keys))
    pipe.lrange(pool_key(keys), 0, -1)
    steps, pool = await pipe.execute()
    return SamplerState(int(steps or 0), tuple(decoded(i) for i in pool))


async def _restore_sampler(
    client: aioredis.Redis, keys: Keys, model: OnlineMF, state: SamplerState
) -> None:
    """Restore the shared sampler; pool items this worker has not seen are fetched first."""
    missing = model.unknown_items(state.pool)
    if missing:
        found = await client.hmget(items_key(keys), missing)
        model.import_rows(
            "item",
            {i: raw_row(raw) for i, raw in zip(missing, found, strict=True) if raw is not None},
        )
        gone = set(model.unknown_items(missing))
        state = SamplerState(state.steps, tuple(i for i in state.pool if i not in gone))
    model.set_sampler_state(state)


#: Arguments per command handed off: well inside Lua's limit on a call's arguments.
_ARGS_PER_OP = 1000


def hand_item_rows(writes: Writes, keys: Keys, rows: Mapping[str, bytes]) -> None:
    """Hand changed item rows to the ``{mf}`` slot (in order, so a fresh hash keeps it)."""
    flat = [x for item, row in rows.items() for x in (item, row)]
    for start in range(0, len(flat), _ARGS_PER_OP):
        writes.add("HSET", items_key(keys), *flat[start : start + _ARGS_PER_OP])


def hand_sampler_news(writes: Writes, keys: Keys, model: OnlineMF) -> None:
    """Hand the sampler's news to the ``{mf}`` slot: steps added to the count, positives
    appended to the pool and the pool cut to its size (:meth:`SamplerState.then`)."""
    news = model.take_sampler_news()
    if news.steps:
        writes.add("INCRBY", steps_key(keys), news.steps)
    for start in range(0, len(news.pool), _ARGS_PER_OP):
        writes.add("RPUSH", pool_key(keys), *news.pool[start : start + _ARGS_PER_OP])
    if news.pool:
        writes.add("LTRIM", pool_key(keys), -model.pool_size, -1)


async def write_back(
    handoffs: Handoffs,
    model: OnlineMF,
    users: Sequence[str],
    stored_ledgers: Mapping[str, Mapping[str, bytes]],
    max_contributions: int,
    step: Step,
) -> None:
    """One step (``step``: the users' partition's writes and marks): changed user rows,
    merged and capped ledgers, and, handed off, the changed item rows and the sampler's news."""
    keys, writes = handoffs.keys, step.writes
    changed = model.take_changed()
    for user_id, raw in model.export_rows("user", changed.users).items():
        writes.add("SET", keys.user(user_id, "mf"), raw)
    # Row order, so a fresh hash keeps the local order while Redis keeps insertion order.
    hand_item_rows(writes, keys, model.export_rows("item", changed.items))
    for user_id in users:
        key = keys.user(user_id, "mf_contrib")
        put, drop = merge_ledger(
            stored_ledgers.get(user_id, {}),
            model.contributions(user_id),
            max_contributions,
            model.factors,
        )
        if put:
            writes.add("HSET", key, *[x for item, row in put.items() for x in (item, row)])
        if drop:
            writes.add("HDEL", key, *drop)
        # The user's row and this run's ledger now live in Redis only.
        model.forget_user(user_id)
    hand_sampler_news(writes, keys, model)
    await handoffs.run([step])
