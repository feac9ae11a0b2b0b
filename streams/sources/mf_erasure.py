"""Erasing users from online MF: their rows and ledgers go, their pushes leave the item rows.

Each ledger is subtracted from the current shared item rows
(``OnlineMF.forget_user(revert_items=True)``). That undo is approximate: it removes the
user's own pushes, not what other users' later steps learnt from the pushed rows.
tests/integration/test_source_mf.py measures how close the item rows come to a run in which
the user never existed. Nothing that remains names the user: item rows and the sampler hold
item ids only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from models.mf import OnlineMF
from streams.keys import Keys, decoded
from streams.sources.mf_rows import items_key, raw_row


async def erase_users(
    client: aioredis.Redis, keys: Keys, model: OnlineMF, users: Sequence[str]
) -> dict[str, int]:
    """Delete the users' rows and ledgers and subtract each ledger from the item rows as
    Redis has them now, through ``model`` (the caller holds its lock). Three round trips;
    returns per user the stored entries removed (a row counts one, each ledger entry one)."""
    pipe = client.pipeline(transaction=False)
    for user_id in users:
        pipe.exists(keys.user(user_id, "mf"))
        pipe.hgetall(keys.user(user_id, "mf_contrib"))
    replies = await pipe.execute()
    ledgers: dict[str, dict[str, bytes]] = {}
    removed: dict[str, int] = {}
    for n, user_id in enumerate(users):
        ledger: dict[Any, bytes] = replies[2 * n + 1]
        ledgers[user_id] = {decoded(k): v for k, v in ledger.items()}
        removed[user_id] = int(replies[2 * n]) + len(ledger)
    items = list(dict.fromkeys(i for ledger in ledgers.values() for i in ledger))
    current = await client.hmget(items_key(keys), items) if items else []
    stored = {i: raw_row(r) for i, r in zip(items, current, strict=True) if r is not None}
    # Subtract from the rows as Redis has them now, not from a possibly stale cache.
    model.import_rows("item", stored)
    for user_id, ledger in ledgers.items():
        model.set_contributions(user_id, {i: d for i, d in ledger.items() if i in stored})
        model.forget_user(user_id, revert_items=True)
    changed = model.take_changed()
    pipe = client.pipeline(transaction=False)
    for user_id in users:
        pipe.delete(keys.user(user_id, "mf"), keys.user(user_id, "mf_contrib"))
    reverted = model.export_rows("item", sorted(changed.items))
    if reverted:
        pipe.hset(items_key(keys), mapping=reverted)  # type: ignore[arg-type]
    await pipe.execute()
    return removed
