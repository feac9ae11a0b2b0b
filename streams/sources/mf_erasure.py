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

from models.mf import OnlineMF
from streams.keys import decoded
from streams.sources.handoff import Handoffs
from streams.sources.mf_batch import hand_item_rows
from streams.sources.mf_rows import items_key, raw_row
from streams.sources.writes import Step, Writes


async def erase_users(handoffs: Handoffs, model: OnlineMF, users: Sequence[str]) -> dict[str, int]:
    """Delete the users' rows and ledgers and subtract each ledger from the item rows as
    Redis has them now, through ``model`` (the caller holds its lock): a partition's users at
    a time, each in one step that hands the reverted rows to the ``{mf}`` slot, so no ledger
    is deleted without its undo. Returns per user the stored entries removed (a row counts
    one, each ledger entry one)."""
    removed: dict[str, int] = {}
    for part, mine in handoffs.keys.by_partition(users).items():
        removed.update(await _erase_partition(handoffs, model, part, mine))
    return removed


async def _erase_partition(
    handoffs: Handoffs, model: OnlineMF, part: int, users: Sequence[str]
) -> dict[str, int]:
    client, keys = handoffs.client, handoffs.keys
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
    writes = Writes(keys, keys.partition_stem(part))
    for user_id in users:
        writes.add("DEL", keys.user(user_id, "mf"), keys.user(user_id, "mf_contrib"))
    hand_item_rows(writes, keys, model.export_rows("item", sorted(changed.items)))
    await handoffs.run([Step(writes)])
    return removed
