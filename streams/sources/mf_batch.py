"""One MF step's round trips: the state of a run of one partition's events in, its rows out.

:func:`read_batch_state` is one pipelined read of the run's user rows, their ledgers, its item
rows and the sampler, imported into the local model (plus one read, rarely, for
popularity-pool items this worker has never seen); :func:`write_back` is one step in the
users' slot: their rows and merged ledgers with the source's marks, handing the changed item
rows and the sampler to the ``{mf}`` slot (streams/sources/handoff.py), applied there before it
returns. The caller holds the model's lock throughout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis

from models.mf import OnlineMF, SamplerState
from streams.keys import Keys, decoded
from streams.sources.handoff import Handoffs
from streams.sources.mf_rows import (
    decode_sampler,
    encode_sampler,
    items_key,
    merge_ledger,
    raw_row,
    sampler_key,
)
from streams.sources.writes import Step, Writes


async def read_batch_state(
    client: aioredis.Redis, keys: Keys, model: OnlineMF, users: Sequence[str], items: Sequence[str]
) -> dict[str, dict[str, bytes]]:
    """Import the batch's rows and the sampler; returns the users' stored ledgers."""
    pipe = client.pipeline(transaction=False)
    for user_id in users:
        pipe.get(keys.user(user_id, "mf"))
    for user_id in users:
        pipe.hgetall(keys.user(user_id, "mf_contrib"))
    pipe.hmget(items_key(keys), items)
    pipe.get(sampler_key(keys))
    replies = await pipe.execute()
    rows, ledgers = replies[: len(users)], replies[len(users) : 2 * len(users)]
    item_rows, sampler_raw = replies[-2], replies[-1]

    for user_id, raw in zip(users, rows, strict=True):
        if raw is None:
            # New (or erased) user: start again from the deterministic initial row.
            model.forget_user(user_id)
        else:
            model.import_rows("user", {user_id: raw_row(raw)})
    model.import_rows(
        "item", {i: raw for i, raw in zip(items, item_rows, strict=True) if raw is not None}
    )
    if sampler_raw is not None:
        await _restore_sampler(client, keys, model, decode_sampler(sampler_raw))
    return {
        user_id: {decoded(k): v for k, v in ledger.items()}
        for user_id, ledger in zip(users, ledgers, strict=True)
    }


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


#: Item rows per ``HSET`` handed off: well inside Lua's limit on a call's arguments.
_ROWS_PER_HSET = 500


def hand_item_rows(writes: Writes, keys: Keys, rows: Mapping[str, bytes]) -> None:
    """Hand changed item rows to the ``{mf}`` slot (in order, so a fresh hash keeps it)."""
    flat = [x for item, row in rows.items() for x in (item, row)]
    for start in range(0, len(flat), 2 * _ROWS_PER_HSET):
        writes.add("HSET", items_key(keys), *flat[start : start + 2 * _ROWS_PER_HSET])


async def write_back(
    handoffs: Handoffs,
    model: OnlineMF,
    users: Sequence[str],
    stored_ledgers: Mapping[str, Mapping[str, bytes]],
    max_contributions: int,
    step: Step,
) -> None:
    """One step (``step``: the users' partition's writes and marks): changed user rows,
    merged and capped ledgers, and, handed off, the changed item rows and the sampler."""
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
    writes.add("SET", sampler_key(keys), encode_sampler(model.sampler_state()))
    await handoffs.run([step])
