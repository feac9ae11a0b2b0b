"""The catalogue's item vectors, kept so that scoring any number of items is one vectorised pass.

>>> index = ItemIndex(dim=16, max_features=4)
>>> index.put("a", SparseVector(np.array([1, 5], dtype=np.int32), np.array([0.6, 0.8], np.float32)))
>>> index.put("b", SparseVector(np.array([5], dtype=np.int32), np.array([1.0], np.float32)))
>>> probe = index.vector("b")
>>> index.best(index.cosines(probe.indices, probe.values, 1.0), 5, exclude=["b"])
[('a', 0.800000011920929)]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix

from models.content.vectors import Indices, Scores, SparseVector, Values

Rows = npt.NDArray[np.intp]


class ItemIndex:
    """Item id → unit vector of at most ``max_features`` of ``dim`` slots; dots and top-k."""

    def __init__(self, dim: int, max_features: int) -> None:
        self.dim = dim
        # Every item is one row of two padded matrices (slot, value); padding has value 0, so
        # scoring any set of rows is a gather and a row sum, with no Python loop over items.
        self._idx = np.zeros((64, max_features), dtype=np.int32)
        self._val = np.zeros((64, max_features), dtype=np.float32)
        self._width = 0  # most slots any item has used: columns beyond are all padding
        # The catalogue as a sparse items × dim matrix (CSR): scoring every item is one C loop
        # over the non-zero entries, 2.3× faster than gathering the padded block and summing
        # its rows. Rebuilt on the first query after the catalogue changes (rare next to
        # queries).
        self._matrix: csr_matrix | None = None
        # Each row's position in id order, built with the matrix: the id tie-break of best()
        # among thousands of tied items (a catalogue whose only feature is a category) is then
        # a partition of integers instead of a sort of strings.
        self._id_rank: Rows | None = None
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def item_ids(self) -> tuple[str, ...]:
        return tuple(self._ids)

    def put(self, item_id: str, vector: SparseVector) -> None:
        """Add the item, or replace its vector."""
        row = self._rows.get(item_id)
        if row is None:
            row = len(self._ids)
            if row == len(self._idx):
                self._idx = np.concatenate([self._idx, np.zeros_like(self._idx)])
                self._val = np.concatenate([self._val, np.zeros_like(self._val)])
            self._ids.append(item_id)
            self._rows[item_id] = row
        n = len(vector.indices)
        self._width = max(self._width, n)
        self._matrix = None
        self._id_rank = None
        self._idx[row] = 0
        self._val[row] = 0.0
        self._idx[row, :n] = vector.indices
        self._val[row, :n] = vector.values

    def remove(self, item_id: str) -> bool:
        """Forget the item; True if it was known."""
        row = self._rows.pop(item_id, None)
        if row is None:
            return False
        self._matrix = None
        self._id_rank = None
        last = len(self._ids) - 1
        if row != last:  # keep rows contiguous: move the last item into the hole
            moved = self._ids[last]
            self._idx[row] = self._idx[last]
            self._val[row] = self._val[last]
            self._ids[row] = moved
            self._rows[moved] = row
        self._ids.pop()
        self._idx[last] = 0
        self._val[last] = 0.0
        return True

    def vector(self, item_id: str) -> SparseVector | None:
        """The item's unit vector (non-zero slots, ascending), or None if unknown."""
        row = self._rows.get(item_id)
        if row is None:
            return None
        nonzero = self._val[row] != 0.0
        return SparseVector(self._idx[row][nonzero].copy(), self._val[row][nonzero].copy())

    def rows(self, item_ids: Sequence[str]) -> Rows:
        """Each item's row, -1 for an unknown item."""
        return np.array([self._rows.get(i, -1) for i in item_ids], dtype=np.intp)

    def dense(self, indices: Indices, values: Values) -> Values:
        """A sparse vector spread over all ``dim`` slots, ready for :meth:`dots`."""
        # np.zeros is calloc: untouched pages of the scratch vector cost nothing, and they all
        # map to the one zero page, so the gather that reads them stays in cache (a scratch
        # vector kept between calls measured twice as slow).
        dense = np.zeros(self.dim, dtype=np.float32)
        dense[indices] = values
        return dense

    def cosines(self, indices: Indices, values: Values, norm: float) -> Scores:
        """Cosine of a sparse vector of L2 norm ``norm`` with every item, in row order."""
        count = len(self._ids)
        if norm == 0.0:
            return np.zeros(count, dtype=np.float64)
        cosines: Scores = self.dots(self.dense(indices, values), None) / norm
        return np.clip(cosines, -1.0, 1.0, out=cosines)

    def dots(self, dense: Values, rows: Rows | None) -> Scores:
        """Dot products of a dense vector with the items in ``rows`` (None: every item).

        Each row is summed in float32 in slot order, whether all rows or some are asked for,
        so an item's score is the same bits either way; widened to float64 at the end.
        """
        width = self._width
        if rows is not None:
            # A few rows (explanations, candidate scores): from the padded block, a running
            # float32 sum along each row, which is the sparse product's order (padding adds
            # zeros at the end), at a third of the cost of slicing the sparse matrix.
            if width == 0:
                return np.zeros(len(rows), dtype=np.float64)
            products = self._val[rows, :width] * dense[self._idx[rows, :width]]
            running = np.cumsum(products, axis=1, dtype=np.float32)
            return np.asarray(running[:, -1], dtype=np.float64)
        if self._matrix is None:
            count = len(self._ids)
            values = self._val[:count, :width]
            rows_of, columns = np.nonzero(values)  # row-major: each row's slots in order
            self._matrix = csr_matrix(
                (values[rows_of, columns], (rows_of, self._idx[:count, :width][rows_of, columns])),
                shape=(count, self.dim),
                dtype=np.float32,
            )
        dots: Scores = np.asarray(self._matrix @ dense, dtype=np.float64)
        return dots

    def best(self, scores: Scores, k: int, exclude: Iterable[str]) -> list[tuple[str, float]]:
        """Top ``k`` positive scores (one per row), ties by item id, never an excluded item.

        ``scores`` is the caller's scratch: excluded rows are zeroed in place.
        """
        if k <= 0 or not len(scores):
            return []
        banned = [r for r in (self._rows.get(i) for i in exclude) if r is not None]
        scores[banned] = 0.0
        positive = np.flatnonzero(scores > 0.0)
        if len(positive) > k:
            # Keep everything tied with the k-th best so the id tie-break below is honest.
            threshold = np.partition(scores[positive], len(positive) - k)[len(positive) - k]
            above = positive[scores[positive] > threshold]
            tied = positive[scores[positive] == threshold]
            need = k - len(above)
            if len(tied) > need:
                # Only the `need` smallest ids of the tied can be kept: pick them by id rank.
                ranks = self._ranks()[tied]
                tied = tied[np.argpartition(ranks, need - 1)[:need]]
            positive = np.concatenate([above, tied])
        # (−score, id) pairs sort in C: best first, ties by id.
        ids = self._ids
        ranked = sorted(
            zip((-scores[positive]).tolist(), [ids[r] for r in positive.tolist()], strict=True)
        )
        return [(item, -negative) for negative, item in ranked[:k]]

    def _ranks(self) -> Rows:
        if self._id_rank is None or len(self._id_rank) != len(self._ids):
            ids = self._ids
            rank = np.empty(len(ids), dtype=np.intp)
            rank[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
            self._id_rank = rank
        return self._id_rank
