"""One MF learn call's two round trips: the batch's state in, the changed rows out.

:func:`read_batch_state` is one pipelined read of the batch's user rows, their ledgers, the
batch's item rows and the sampler, imported into the local model (plus one read, rarely, for
popularity-pool items this worker has never seen); :func:`write_back` is one ``MULTI`` of each
changed row, the merged ledgers and the sampler. The caller holds the model's lock throughout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from models.mf import OnlineMF, SamplerState
from streams.keys import Keys, decoded
from streams.sources.mf_rows import (
    decode_sampler,
    encode_sampler,
    items_key,
    merge_ledger,
    raw_row,
    sampler_key,
)
from streams.sources.progress import Learnt, commit


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
    known = set(model.item_ids())
    missing = list(dict.fromkeys(i for i in state.pool if i not in known))
    if missing:
        found = await client.hmget(items_key(keys), missing)
        model.import_rows(
            "item",
            {i: raw_row(raw) for i, raw in zip(missing, found, strict=True) if raw is not None},
        )
        known = set(model.item_ids())
        state = SamplerState(state.steps, tuple(i for i in state.pool if i in known))
    model.set_sampler_state(state)


async def write_back(
    client: aioredis.Redis,
    keys: Keys,
    model: OnlineMF,
    users: Sequence[str],
    stored_ledgers: Mapping[str, Mapping[str, bytes]],
    max_contributions: int,
    learnt: Learnt | None = None,
) -> None:
    """One ``MULTI``: changed user and item rows, merged and capped ledgers, the sampler
    (and the batch's marks)."""
    changed = model.take_changed()

    def queue(pipe: Any) -> None:
        for user_id, raw in model.export_rows("user", changed.users).items():
            pipe.set(keys.user(user_id, "mf"), raw)
        # Row order, so a fresh hash keeps the local order while Redis keeps insertion order.
        item_rows = model.export_rows("item", (i for i in model.item_ids() if i in changed.items))
        if item_rows:
            pipe.hset(items_key(keys), mapping=item_rows)
        for user_id in users:
            key = keys.user(user_id, "mf_contrib")
            put, drop = merge_ledger(
                stored_ledgers.get(user_id, {}),
                model.contributions(user_id),
                max_contributions,
            )
            if put:
                pipe.hset(key, mapping=put)
            if drop:
                pipe.hdel(key, *drop)
            # The user's row and this batch's ledger now live in Redis only.
            model.forget_user(user_id)
        pipe.set(sampler_key(keys), encode_sampler(model.sampler_state()))

    await commit(client, learnt, queue)
