"""A user's taste: the time-decayed, weight-summed mix of the vectors of the items they acted on.

A hide's negative weight pushes the profile away from the item. Each action's weight halves
every half-life; a profile stores its values at the time of the latest event seen, so decaying
it to any later moment is one multiplication. :func:`pack` and :func:`unpack` are its exact
wire format in Redis.

>>> profile = Profile(ts=0.0, mass=0.0)
>>> item = SparseVector(np.array([3, 9], dtype=np.int32), np.array([0.6, 0.8], dtype=np.float32))
>>> mix(profile, item, weight=2.0, ts=0.0, half_life_s=10.0, size=256)
>>> mix(profile, item, weight=2.0, ts=10.0, half_life_s=10.0, size=256)  # the first has halved
>>> profile.mass, [round(float(v), 2) for v in profile.values]
(3.0, [1.8, 2.4])
>>> raw = pack(profile, dim=16)
>>> pack(unpack(raw, dim=16), dim=16) == raw
True
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from models.content.vectors import Indices, SparseVector, Values

#: Profile wire format: magic, hashing dim, reference time, mass, entry count, then the entries.
_PROFILE_MAGIC: Final = b"SRP1"
_PROFILE_HEADER: Final = struct.Struct("<4sIddI")


@dataclass(slots=True)
class Profile:
    """Sparse profile entries (slots ascending) as of ``ts``."""

    ts: float  # the time the stored values refer to (latest event seen)
    mass: float  # Σ |weight| decayed to ts: how much evidence is left
    indices: Indices = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    values: Values = field(default_factory=lambda: np.zeros(0, dtype=np.float32))


def decay(elapsed_s: float, half_life_s: float) -> float:
    """The share of a weight left after ``elapsed_s``: it halves every ``half_life_s``."""
    return math.pow(2.0, -elapsed_s / half_life_s)


def mix(
    profile: Profile, vector: SparseVector, weight: float, ts: float, half_life_s: float, size: int
) -> None:
    """Add ``weight`` × ``vector`` at time ``ts`` to ``profile``, keeping its ``size`` largest.

    A late event (``ts`` before the profile's time) is decayed to the profile's time instead of
    moving the profile back.
    """
    if ts >= profile.ts:
        keep = decay(ts - profile.ts, half_life_s)
        scale = weight
        profile.ts = ts
    else:
        keep = 1.0
        scale = weight * decay(profile.ts - ts, half_life_s)
    profile.mass = profile.mass * keep + abs(scale)

    # Both slot lists are ascending and unique: the item's slots already in the profile
    # add to their entry, the others are merged in, and the result is sorted again.
    slots, summed = profile.indices, profile.values.astype(np.float64) * keep
    added, amounts = vector.indices, vector.values.astype(np.float64) * scale
    at = np.searchsorted(slots, added)
    shared = at < len(slots)
    shared[shared] = slots[at[shared]] == added[shared]
    summed[at[shared]] += amounts[shared]
    if not shared.all():
        slots = np.concatenate([slots, added[~shared]])
        summed = np.concatenate([summed, amounts[~shared]])
        order = np.argsort(slots, kind="stable")
        slots, summed = slots[order], summed[order]
    nonzero = summed != 0.0  # exact cancellations and values decayed to nothing
    slots, summed = slots[nonzero], summed[nonzero]
    if len(slots) > size:
        keep_at = np.sort(np.argpartition(-np.abs(summed), size - 1))
        slots, summed = slots[keep_at[:size]], summed[keep_at[:size]]
    profile.indices = slots.astype(np.int32)
    profile.values = summed.astype(np.float32)


def pack(profile: Profile, dim: int) -> bytes:
    """The profile as bytes for Redis; :func:`unpack` gives it back exactly."""
    header = _PROFILE_HEADER.pack(
        _PROFILE_MAGIC, dim, profile.ts, profile.mass, len(profile.indices)
    )
    return header + profile.indices.astype("<i4").tobytes() + profile.values.astype("<f4").tobytes()


def unpack(raw: bytes, dim: int) -> Profile:
    """A profile from :func:`pack`; rejects one hashed into another ``dim`` or a bad blob."""
    if len(raw) < _PROFILE_HEADER.size:
        raise ValueError("profile blob is truncated")
    magic, packed_dim, ts, mass, n = _PROFILE_HEADER.unpack_from(raw)
    if magic != _PROFILE_MAGIC:
        raise ValueError("not a content profile blob")
    if packed_dim != dim:
        raise ValueError(f"profile was hashed into {packed_dim} slots, this model uses {dim}")
    if len(raw) != _PROFILE_HEADER.size + 8 * n:
        raise ValueError("profile blob has the wrong length")
    start = _PROFILE_HEADER.size
    indices = np.frombuffer(raw, dtype="<i4", count=n, offset=start).astype(np.int32)
    values = np.frombuffer(raw, dtype="<f4", count=n, offset=start + 4 * n).astype(np.float32)
    if not (math.isfinite(ts) and math.isfinite(mass) and np.all(np.isfinite(values))):
        raise ValueError("profile blob contains NaN or infinity")
    if n and (indices.min() < 0 or indices.max() >= dim or np.any(np.diff(indices) <= 0)):
        raise ValueError("profile slots must be ascending and within dim")
    return Profile(ts, mass, indices, values)
