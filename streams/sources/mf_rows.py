"""What online MF keeps in Redis, and how a user's ledger is merged and capped.

- ``{prefix}u:{user}:mf`` (string): the user's factor row, float32 bytes;
- ``{prefix}u:{user}:mf_contrib`` (hash item -> float16 bytes, :data:`models.mf.LEDGER_DTYPE`):
  the summed changes the user's own SGD steps made to that item's row, the ledger erasure
  subtracts;
- ``{prefix}mf_items`` (hash item -> float32 bytes): every item's factor row;
- ``{prefix}mf_sampler`` (string, JSON): learning steps and recent positives (item ids only),
  which the next negatives depend on.

A user's ledger grows by one entry per distinct item their steps touched, sampled negatives
included; :func:`merge_ledger` caps it, keeping the largest pushes (by L2 norm: the positives
and repeated negatives, the ones that matter for an undo) and dropping the smallest.

>>> state = SamplerState(steps=3, pool=("phone", "case"))
>>> encode_sampler(state)
b'{"steps":3,"pool":["phone","case"]}'
>>> decode_sampler(encode_sampler(state)) == state
True
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import orjson

from models.mf import LEDGER_DTYPE, SamplerState, decode_ledger_row, encode_ledger_row
from streams.keys import Keys


def encode_sampler(state: SamplerState) -> bytes:
    """The sampler state as JSON (item ids and a counter; no user id)."""
    return orjson.dumps({"steps": state.steps, "pool": list(state.pool)})


def decode_sampler(raw: bytes) -> SamplerState:
    """The inverse of :func:`encode_sampler`."""
    body = orjson.loads(raw)
    return SamplerState(int(body["steps"]), tuple(str(i) for i in body["pool"]))


def raw_row(value: bytes | str) -> bytes:
    """A factor row as Redis returned it: bytes, so the client must not decode responses."""
    if not isinstance(value, bytes):
        raise TypeError("RedisMF needs a Redis client with decode_responses=False")
    return value


def merge_ledger(
    stored: Mapping[str, bytes], batch: Mapping[str, bytes], max_contributions: int
) -> tuple[dict[str, bytes], list[str]]:
    """(entries to write, stored entries to delete): stored + this batch's deltas, capped
    at ``max_contributions`` entries by dropping the smallest pushes (L2 norm). Stored rows
    of float32 (ledgers written before float16) are rewritten as float16.

    >>> before = np.array([0.5, 0.5], dtype="<f4").tobytes()  # a float32 row, as stored before
    >>> push = encode_ledger_row([1.0, 0.0])
    >>> stored = {"a": before, "b": encode_ledger_row([0.1, 0.0])}
    >>> put, drop = merge_ledger(stored, {"a": push, "c": push}, max_contributions=2)
    >>> {i: decode_ledger_row(raw, 2).tolist() for i, raw in put.items()}, drop
    ({'a': [1.5, 0.5], 'c': [1.0, 0.0]}, ['b'])
    """
    if not batch:
        return {}, []
    factors = len(next(iter(batch.values()))) // LEDGER_DTYPE.itemsize
    width = factors * LEDGER_DTYPE.itemsize
    merged = {
        i: raw if len(raw) == width else encode_ledger_row(decode_ledger_row(raw, factors))
        for i, raw in stored.items()
    }
    for item, raw in batch.items():
        delta = decode_ledger_row(raw, factors)
        old = merged.get(item)
        if old is not None:
            delta += decode_ledger_row(old, factors)
        merged[item] = encode_ledger_row(delta)
    dropped: list[str] = []
    if len(merged) > max_contributions:
        ids = sorted(merged)  # a fixed order, so ties break the same way in every process
        matrix = np.frombuffer(b"".join(merged[i] for i in ids), dtype=LEDGER_DTYPE)
        norms = np.linalg.norm(matrix.reshape(len(ids), -1).astype(np.float64), axis=1)
        order = np.argsort(-norms, kind="stable")
        dropped = [ids[n] for n in order[max_contributions:].tolist()]
        for item in dropped:
            del merged[item]
    put = {i: raw for i, raw in merged.items() if stored.get(i) != raw}
    return put, [i for i in dropped if i in stored]


def items_key(keys: Keys) -> str:
    """The hash of every item's factor row (shared by all workers)."""
    return keys.global_("mf_items")


def sampler_key(keys: Keys) -> str:
    """The sampler state's string (shared by all workers)."""
    return keys.global_("mf_sampler")
