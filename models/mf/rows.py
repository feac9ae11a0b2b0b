"""MF's storage: the factor rows of users and items, their initial values, and their encoding on
the wire (float32, little-endian, as a Redis hash stores them), and that of the undo ledger's
rows (4-bit levels and a scale).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
Table = Literal["user", "item"]

#: Wire format of one factor row: float32, little-endian, ``factors`` values, nothing else.
WIRE_DTYPE: Final = np.dtype("<f4")

#: An undo-ledger row (:meth:`OnlineMF.contributions`) is its values in 4-bit levels (-7..7,
#: two a byte, the first in the low half) times one float32 scale (the largest magnitude / 7),
#: little-endian: the scale, then the levels. Its length is even and never twice or four times
#: the factors, so the earlier forms still read: int8 levels (odd lengths), float16, float32.
#: The ledgers are Redis's largest family (up to 64 rows a user, every user): 20 bytes a row of
#: 32 factors, against int8's 37. What an erasure leaves of a user's pushes for it (each row
#: rounded again whenever the user's batch touches it) is 1.2 % of their energy against int8's
#: 0.003 %, and keeping 32 int8 rows instead would leave 11 % against 64 rows' 4.4 %
#: (docs/live-path.md, "MF's ledger in 4-bit rows"); the pushes' knock-on effects on later
#: steps stay either way (models/mf/model.py ``forget_user``).
_LEDGER_SCALE: Final = np.dtype("<f4")
_LEDGER_LEVELS: Final = 7
_LEDGER_MAX: Final = float(np.finfo(_LEDGER_SCALE).max)
#: The forms ledgers were stored in before int8 (an odd length): float16, and float32 before it.
_EARLIER_LEDGER_DTYPES: Final = (np.dtype("<f2"), WIRE_DTYPE)

_INITIAL_ITEM_CAPACITY: Final = 64


def encode_vector(vector: npt.ArrayLike) -> bytes:
    """One factor row as bytes for a Redis hash field (float32 little-endian).

    >>> encode_vector([1.0, -2.0]).hex()
    '0000803f000000c0'
    """
    return np.asarray(vector, dtype=WIRE_DTYPE).tobytes()


def decode_vector(raw: bytes, factors: int) -> Vector:
    """The inverse of :func:`encode_vector`; rejects a wrong length or non-finite values.

    >>> decode_vector(bytes.fromhex("0000803f000000c0"), 2).tolist()
    [1.0, -2.0]
    """
    if len(raw) != factors * WIRE_DTYPE.itemsize:
        raise ValueError(f"expected {factors} float32 values, got {len(raw)} bytes")
    vector = np.frombuffer(raw, dtype=WIRE_DTYPE).astype(np.float32)  # a writable native copy
    if not np.all(np.isfinite(vector)):
        raise ValueError("factor row contains NaN or infinity")
    return vector


def ledger_width(factors: int) -> int:
    """Bytes of one undo-ledger row of ``factors`` values (even, and not an earlier form's).

    >>> ledger_width(32), ledger_width(3), ledger_width(1)
    (20, 8, 6)
    """
    width = _LEDGER_SCALE.itemsize + (factors + 1) // 2
    width += width % 2
    while width in (2 * factors, 4 * factors):
        width += 2
    return width


def encode_ledger_row(vector: npt.ArrayLike) -> bytes:
    """One undo-ledger row as bytes (4-bit levels of one float32 scale; non-finite values
    clipped to float32's range).

    >>> raw = encode_ledger_row([1.0, -2.0, 0.5])
    >>> len(raw), decode_ledger_row(raw, 3).round(2).tolist()
    (8, [0.86, -2.0, 0.57])
    """
    return encode_ledger_rows(np.asarray(vector, dtype=np.float64).reshape(1, -1))[0]


def encode_ledger_rows(matrix: npt.NDArray[np.float64]) -> list[bytes]:
    """:func:`encode_ledger_row` of each row of ``matrix``, in a few array operations."""
    rows, factors = matrix.shape
    array = np.nan_to_num(matrix, posinf=_LEDGER_MAX, neginf=-_LEDGER_MAX)
    peaks = np.minimum(np.abs(array).max(axis=1, initial=0.0), _LEDGER_MAX)
    scales = (peaks / _LEDGER_LEVELS).astype(_LEDGER_SCALE)
    divisors = np.where(scales > 0, scales, 1.0)[:, None]  # zero rows (or below float32) stay 0
    levels = np.clip(np.rint(array / divisors), -_LEDGER_LEVELS, _LEDGER_LEVELS).astype(np.int8)
    nibbles = np.zeros((rows, 2 * ((factors + 1) // 2)), dtype=np.uint8)
    nibbles[:, :factors] = levels.view(np.uint8) & 0x0F
    width, size = ledger_width(factors), _LEDGER_SCALE.itemsize
    table = np.zeros((rows, width), dtype=np.uint8)
    table[:, :size] = scales.reshape(rows, 1).view(np.uint8)
    table[:, size : size + nibbles.shape[1] // 2] = nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)
    raw = table.tobytes()
    return [raw[n * width : (n + 1) * width] for n in range(rows)]


def decode_ledger_row(raw: bytes, factors: int) -> npt.NDArray[np.float64]:
    """The inverse of :func:`encode_ledger_row`, as float64 (what the ledger sums in); rows of
    the earlier forms (int8, float16, float32) read as well.

    >>> decode_ledger_row(encode_ledger_row([0.0, 0.0]), 2).tolist()
    [0.0, 0.0]
    >>> decode_ledger_row(bytes.fromhex("0000803f02fe00"), 2).tolist()  # int8
    [2.0, -2.0]
    >>> decode_ledger_row(bytes.fromhex("003c00c0"), 2).tolist()  # float16
    [1.0, -2.0]
    >>> decode_ledger_row(encode_vector([1.0, -2.0]), 2).tolist()  # float32
    [1.0, -2.0]
    """
    row: npt.NDArray[np.float64] = decode_ledger_rows([raw], factors)[0]
    return row


def decode_ledger_rows(raws: Sequence[bytes], factors: int) -> npt.NDArray[np.float64]:
    """:func:`decode_ledger_row` of each row, as one matrix (a row per ledger entry): the rows
    of the current form in a few array operations, whatever their number.

    >>> decode_ledger_rows([encode_ledger_row([1.0, -2.0])] * 2, 2).round(2).tolist()
    [[0.86, -2.0], [0.86, -2.0]]
    """
    width, size = ledger_width(factors), _LEDGER_SCALE.itemsize
    matrix = np.empty((len(raws), factors))
    current = [n for n, raw in enumerate(raws) if len(raw) == width]
    if current:
        joined = b"".join(raws[n] for n in current)
        table = np.frombuffer(joined, dtype=np.uint8).reshape(len(current), width)
        scales = table[:, :size].copy().view(_LEDGER_SCALE).astype(np.float64)
        packed = table[:, size : size + (factors + 1) // 2]
        nibbles = np.empty((len(current), 2 * packed.shape[1]), dtype=np.int8)
        nibbles[:, 0::2] = packed & 0x0F
        nibbles[:, 1::2] = packed >> 4
        levels = (nibbles ^ 8) - 8  # the 4-bit two's complement, sign-extended
        matrix[current] = levels[:, :factors] * scales
    for n, raw in enumerate(raws):
        if len(raw) != width:
            matrix[n] = _earlier_ledger_row(raw, factors)
    return matrix


def _earlier_ledger_row(raw: bytes, factors: int) -> npt.NDArray[np.float64]:
    size = _LEDGER_SCALE.itemsize
    if len(raw) == (size + factors) | 1:  # int8 levels after the scale (an odd length)
        scale = float(np.frombuffer(raw[:size], dtype=_LEDGER_SCALE)[0])
        return np.frombuffer(raw[size : size + factors], dtype=np.int8).astype(np.float64) * scale
    for dtype in _EARLIER_LEDGER_DTYPES:
        if len(raw) == factors * dtype.itemsize:
            return np.frombuffer(raw, dtype=dtype).astype(np.float64)
    raise ValueError(f"expected a ledger row of {factors} values, got {len(raw)} bytes")


@dataclass(frozen=True, slots=True)
class Changed:
    """Rows changed since the last :meth:`FactorRows.take_changed`: what to write back."""

    users: frozenset[str]
    items: tuple[str, ...]  # in row order: a fresh hash given them in it keeps the local order


class FactorRows:
    """The user rows (a dict) and the item rows (one contiguous matrix, rows in insertion
    order), each id's initial factors a pure function of ``(seed, table, id)``."""

    def __init__(self, factors: int, init_scale: float, seed: int) -> None:
        self.factors = factors
        self.init_scale = init_scale
        self.seed = seed
        self._users: dict[str, Vector] = {}
        # Item rows live in one contiguous matrix (rows 0..n-1 in insertion order) so scoring
        # every item is a single matrix-vector product; SGD updates rows in place through views.
        self._item_matrix: Vector = np.zeros((_INITIAL_ITEM_CAPACITY, factors), dtype=np.float32)
        self._item_ids: list[str] = []
        self._item_rows: dict[str, int] = {}
        self._changed_users: set[str] = set()
        self._changed_items: set[str] = set()

    # ---- explicit state --------------------------------------------------------------------
    def user_ids(self) -> tuple[str, ...]:
        return tuple(self._users)

    def item_ids(self) -> tuple[str, ...]:
        """Known items in row order (the order uniform sampling indexes into)."""
        return tuple(self._item_ids)

    def unknown_items(self, item_ids: Iterable[str]) -> list[str]:
        """Those of ``item_ids`` without a row here, once each, in order."""
        return [i for i in dict.fromkeys(item_ids) if i not in self._item_rows]

    def user_factors(self, user_id: str) -> Vector | None:
        """A copy of the user's factors, or None for an unknown user."""
        vector = self._users.get(user_id)
        return None if vector is None else vector.copy()

    def item_factors(self, item_id: str) -> Vector | None:
        """A copy of the item's factors, or None for an unknown item."""
        row = self._item_rows.get(item_id)
        return None if row is None else self._item_matrix[row].copy()

    def set_user_factors(self, user_id: str, vector: npt.ArrayLike) -> None:
        self._users[user_id] = self._checked(vector)

    def set_item_factors(self, item_id: str, vector: npt.ArrayLike) -> None:
        """Overwrite (or add, at the end of the row order) an item's factors."""
        checked = self._checked(vector)
        row = self._item_row(item_id)  # first: adding a row may reallocate the matrix
        self._item_matrix[row] = checked

    def export_rows(self, table: Table, ids: Iterable[str] | None = None) -> dict[str, bytes]:
        """``{id: float32 LE bytes}`` for ``ids`` (default: all, in row order); unknown ids are
        left out. The mapping can go straight into a Redis ``HSET``."""
        if table == "user":
            chosen = self._users if ids is None else [i for i in ids if i in self._users]
            return {i: encode_vector(self._users[i]) for i in chosen}
        chosen = self._item_ids if ids is None else [i for i in ids if i in self._item_rows]
        return {i: encode_vector(self._item_matrix[self._item_rows[i]]) for i in chosen}

    def import_rows(self, table: Table, rows: Mapping[str, bytes]) -> None:
        """Load rows from :meth:`export_rows`. New items are appended in the mapping's order."""
        decoded = {key: decode_vector(raw, self.factors) for key, raw in rows.items()}
        setter = self.set_user_factors if table == "user" else self.set_item_factors
        for key, vector in decoded.items():
            setter(key, vector)

    def take_changed(self) -> Changed:
        """Ids whose rows changed since the last call (then forgets them): the write-back set."""
        items = tuple(sorted(self._changed_items, key=self._item_rows.__getitem__))
        changed = Changed(frozenset(self._changed_users), items)
        self._changed_users.clear()
        self._changed_items.clear()
        return changed

    # ---- internals -------------------------------------------------------------------------
    def _checked(self, vector: npt.ArrayLike) -> Vector:
        array = np.array(vector, dtype=np.float32)  # always a private copy
        if array.shape != (self.factors,) or not np.all(np.isfinite(array)):
            raise ValueError(f"factors must be {self.factors} finite numbers")
        return array

    def _initial(self, table: Table, key: str) -> Vector:
        """Small random factors that depend only on (seed, table, id), never on arrival order."""
        digest = hashlib.blake2b(f"{self.seed}\x1f{table}\x1f{key}".encode(), digest_size=8)
        rng = np.random.default_rng(int.from_bytes(digest.digest(), "little"))
        scale = self.init_scale / math.sqrt(self.factors)
        return rng.normal(0.0, scale, self.factors).astype(np.float32)

    def _user_vector(self, user_id: str) -> Vector:
        vector = self._users.get(user_id)
        if vector is None:
            vector = self._users[user_id] = self._initial("user", user_id)
        return vector

    def _item_row(self, item_id: str) -> int:
        """The item's row, adding the item (with its initial factors) if it is new."""
        row = self._item_rows.get(item_id)
        if row is not None:
            return row
        row = len(self._item_ids)
        if row == len(self._item_matrix):
            grown = np.zeros((2 * row, self.factors), dtype=np.float32)
            grown[:row] = self._item_matrix
            self._item_matrix = grown
        self._item_matrix[row] = self._initial("item", item_id)
        self._item_ids.append(item_id)
        self._item_rows[item_id] = row
        return row
