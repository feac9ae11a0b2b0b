"""What online MF keeps in Redis, and how a user's ledger is merged and capped.

- ``{prefix}u:{user}:mf`` (string): the user's factor row, float32 bytes;
- ``{prefix}u:{user}:mf_contrib`` (hash item -> bytes, :func:`models.mf.encode_ledger_row`):
  the summed changes the user's own SGD steps made to that item's row, the ledger erasure
  subtracts;
- ``{prefix}mf_items`` (hash item -> float32 bytes): every item's factor row;
- ``{prefix}mf_steps`` (string, a counter) and ``{prefix}mf_pool`` (list of item ids, oldest
  first, at most the pool's size): the sampler's learning steps and recent positives, which
  the next negatives depend on. A step hands on what it added to them
  (:meth:`models.mf.OnlineMF.take_sampler_news`), so several writers' steps add up and the
  ring is never sent whole.

A user's ledger grows by one entry per distinct item their steps touched, sampled negatives
included; :func:`merge_ledger` caps it, keeping the largest pushes (by L2 norm: the positives
and repeated negatives, the ones that matter for an undo) and dropping the smallest.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from models.mf import (
    decode_ledger_rows,
    encode_ledger_rows,
    ledger_width,
)
from streams.keys import Keys


def raw_row(value: bytes | str) -> bytes:
    """A factor row as Redis returned it: bytes, so the client must not decode responses."""
    if not isinstance(value, bytes):
        raise TypeError("RedisMF needs a Redis client with decode_responses=False")
    return value


def merge_ledger(
    stored: Mapping[str, bytes],
    batch: Mapping[str, npt.NDArray[np.float64]],
    max_contributions: int,
    factors: int,
) -> tuple[dict[str, bytes], list[str]]:
    """(entries to write, stored entries to delete): stored + this batch's deltas (rounded
    once, when written), capped at ``max_contributions`` entries by dropping the smallest
    pushes (L2 norm). Stored rows of an earlier form (int8, float16, float32) are rewritten in
    the current one.

    >>> from models.mf import decode_ledger_row, encode_ledger_row
    >>> before = np.array([0.4, 0.6], dtype="<f4").tobytes()  # a float32 row, as stored before
    >>> push = np.array([1.0, 0.0])
    >>> stored = {"a": before, "b": encode_ledger_row([0.1, 0.0])}
    >>> put, drop = merge_ledger(stored, {"a": push, "c": push}, max_contributions=2, factors=2)
    >>> {i: decode_ledger_row(raw, 2).round(2).tolist() for i, raw in put.items()}, drop
    ({'a': [1.4, 0.6], 'c': [1.0, 0.0]}, ['b'])
    """
    if not batch:
        return {}, []
    width = ledger_width(factors)
    ids = list(stored) + [i for i in batch if i not in stored]
    at = {item: n for n, item in enumerate(ids)}
    matrix = np.zeros((len(ids), factors))
    matrix[: len(stored)] = decode_ledger_rows(list(stored.values()), factors)
    for item, delta in batch.items():
        matrix[at[item]] += delta
    keep = np.arange(len(ids))
    if len(ids) > max_contributions:
        # Ties break by id, the same way in every process.
        by_id = sorted(keep.tolist(), key=ids.__getitem__)
        norms = np.linalg.norm(matrix[by_id], axis=1)
        keep = np.sort(np.asarray(by_id)[np.argsort(-norms, kind="stable")[:max_contributions]])
    kept = set(keep.tolist())
    dropped = [ids[n] for n in range(len(ids)) if n not in kept]
    # Write what is new or changed, or stored in an earlier form.
    changed = [n for n in keep.tolist() if ids[n] in batch or len(stored[ids[n]]) != width]
    put = dict(zip([ids[n] for n in changed], encode_ledger_rows(matrix[changed]), strict=True))
    return put, [i for i in dropped if i in stored]


def items_key(keys: Keys) -> str:
    """The hash of every item's factor row (shared by all workers)."""
    return keys.global_("mf_items")


def steps_key(keys: Keys) -> str:
    """The sampler's step counter (shared by all workers)."""
    return keys.global_("mf_steps")


def pool_key(keys: Keys) -> str:
    """The sampler's recent positives (shared by all workers)."""
    return keys.global_("mf_pool")
