"""Named features hashed into sparse unit vectors, identical in every process.

Features are hashed into ``dim`` slots with a signed, stable hash (BLAKE2b, never Python's
per-process ``hash()``), so vectors are identical in every worker and across restarts and
need no vocabulary.

>>> v = hash_features({"brand\\x1fikea": 1.0, "tags\\x1feco": 1.0}, dim=2**18, max_features=64)
>>> len(v.indices), round(v.norm(), 6)
(2, 1.0)
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Indices = npt.NDArray[np.int32]
Values = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float64]


@functools.lru_cache(maxsize=1 << 16)  # brands, categories and tags repeat across the catalogue
def hash_feature(name: str, dim: int) -> tuple[int, float]:
    """A feature's slot and sign: BLAKE2b, stable across processes and Python versions.

    The sign makes collisions cancel out on average instead of inflating similarity.

    >>> hash_feature("brand\\x1fhuawei", 2**18) == hash_feature("brand\\x1fhuawei", 2**18)
    True
    """
    h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    return h % dim, (-1.0 if h >> 63 else 1.0)


@dataclass(frozen=True, slots=True)
class SparseVector:
    """Non-zero entries, indices ascending."""

    indices: Indices
    values: Values

    def dot(self, other: SparseVector) -> float:
        common, a, b = np.intersect1d(
            self.indices, other.indices, assume_unique=True, return_indices=True
        )
        if not len(common):
            return 0.0
        return float(self.values[a].astype(np.float64) @ other.values[b].astype(np.float64))

    def norm(self) -> float:
        return float(np.linalg.norm(self.values.astype(np.float64)))


def hash_features(features: Mapping[str, float], dim: int, max_features: int) -> SparseVector:
    """Hash named features into a unit-length sparse vector of at most ``max_features`` slots.

    Colliding features add up; if more than ``max_features`` slots remain, the smallest go
    (title words first, as they carry the least weight each).
    """
    slots: dict[int, float] = {}
    for name, weight in features.items():
        index, sign = hash_feature(name, dim)
        slots[index] = slots.get(index, 0.0) + sign * weight
    kept = sorted(slots.items(), key=lambda iv: (-abs(iv[1]), iv[0]))[:max_features]
    kept = sorted(iv for iv in kept if iv[1] != 0.0)
    indices = np.array([i for i, _ in kept], dtype=np.int32)
    values = np.array([v for _, v in kept], dtype=np.float64)
    norm = float(np.linalg.norm(values))
    if norm > 0.0:
        values /= norm
    return SparseVector(indices, values.astype(np.float32))
