"""Online matrix factorisation for implicit feedback, learnt by River one event at a time.

A user ``u`` and an item ``i`` each have ``factors`` latent numbers; ``p_u · q_i`` is the logit of
"u interacts with i". Every event ``(u, i, w)`` becomes a few weighted logistic examples:

- ``w > 0``: ``i`` is a positive with confidence ``min(w, max_confidence)``, and ``negatives``
  items drawn from the known items (uniformly, or in proportion to recent popularity) are
  negatives with confidence ``negative_weight``. Without them the model only ever sees ones and
  learns to say "yes" to everything;
- ``w < 0`` (a hide): ``i`` is an explicit negative with confidence ``min(-w, max_confidence)``;
- ``w == 0`` (follow, unfollow): nothing to learn.

River does the learning: :class:`river.optim.losses.Log` gives the gradient of the loss with
respect to each logit, and :class:`river.optim.SGD` applies the L2-regularised updates to the
user's and the items' factor rows. This module only keeps the factors in a layout that makes
scoring one matrix-vector product and persistence a row copy.

Determinism: a new id's initial factors are a pure function of ``(seed, id)``, and the negatives
of the n-th learning step a pure function of ``(seed, n)`` and the sampling pool (the known items
in row order, or the recent positives). The same seed and the same events in the same order give
bit-identical factors in any process, and so does a model restored from
:meth:`OnlineMF.export_rows` (float32 in memory and on the wire, so nothing is rounded on the
way) plus :meth:`OnlineMF.sampler_state`, with item rows imported in their exported order.

>>> mf = OnlineMF(factors=8, negatives=2, seed=7)
>>> for _ in range(30):
...     mf.learn("ann", "phone", 8.0)
...     mf.learn("ann", "case", 5.0)
...     mf.learn("bob", "novel", 8.0)
...     mf.learn("bob", "bookmark", 5.0)
>>> [item for item, _ in mf.top_k("ann", 2)]
['phone', 'case']
>>> phone, novel, unknown = mf.score("ann", ["phone", "novel", "never-seen"])
>>> bool(phone > 0 > novel), float(unknown)
(True, 0.0)
>>> mf.top_k("nobody", 3)  # a cold user: MF has nothing to say, the caller falls back
[]
>>> rows = mf.export_rows("user")  # {user_id: float32 bytes}, ready for a Redis hash
>>> restored = OnlineMF(factors=8, negatives=2, seed=7)
>>> restored.import_rows("user", rows)
>>> restored.import_rows("item", mf.export_rows("item"))
>>> bool((restored.score("bob", ["novel"]) == mf.score("bob", ["novel"])).all())
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from river import optim

Vector = npt.NDArray[np.float32]
Table = Literal["user", "item"]
Sampling = Literal["uniform", "popularity"]

#: Wire format of one factor row: float32, little-endian, ``factors`` values, nothing else.
WIRE_DTYPE: Final = np.dtype("<f4")

#: Logits are clipped before the loss so exp() never overflows on a runaway pair.
_MAX_LOGIT: Final = 30.0
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


@dataclass(frozen=True, slots=True)
class Changed:
    """Rows changed since the last :meth:`OnlineMF.take_changed`: what to write back."""

    users: frozenset[str]
    items: frozenset[str]


@dataclass(frozen=True, slots=True)
class SamplerState:
    """Everything besides the factor rows that the next negatives depend on.

    ``steps`` counts learning steps (the n in "negatives are a function of (seed, n)");
    ``pool`` holds the item ids of recent positives, oldest first (popularity sampling only).
    """

    steps: int
    pool: tuple[str, ...]


class OnlineMF:
    """Implicit-feedback matrix factorisation with sampled negatives, updated per event.

    ``sampling="uniform"`` draws negatives uniformly from the known items;
    ``"popularity"`` draws them from the item ids of the last ``pool_size`` positive events, so
    an item is drawn in proportion to its recent popularity: popular items then also collect
    more negatives, which counteracts the popularity bias uniform sampling leaves in the
    ranking. It falls back to uniform while the pool is empty.

    ``max_confidence`` caps how much one event counts (a purchase, weight 8, is an example
    with eight times the gradient of a view); ``negative_weight`` is each sampled negative's.
    ``clip_gradient`` clamps each gradient component, as River's own MF models do.

    ``track_contributions=True`` keeps, per user, the sum of the changes that user's own
    updates made to each item row (``factors`` floats per distinct item the user touched,
    including sampled negatives), so :meth:`forget_user` can offer an approximate undo.
    """

    def __init__(
        self,
        factors: int = 32,
        learning_rate: float = 0.05,
        regularisation: float = 0.01,
        negatives: int = 4,
        *,
        negative_weight: float = 1.0,
        max_confidence: float = 10.0,
        clip_gradient: float = 5.0,
        init_scale: float = 0.1,
        sampling: Sampling = "uniform",
        pool_size: int = 10_000,
        track_contributions: bool = False,
        seed: int = 0,
    ) -> None:
        if factors < 1 or negatives < 0 or pool_size < 1:
            raise ValueError("factors and pool_size must be >= 1, negatives >= 0")
        if not (learning_rate > 0 and max_confidence > 0 and clip_gradient > 0):
            raise ValueError("learning_rate, max_confidence and clip_gradient must be > 0")
        if not regularisation >= 0:
            raise ValueError("regularisation must be >= 0")
        if sampling not in ("uniform", "popularity"):
            raise ValueError(f"sampling must be 'uniform' or 'popularity', not {sampling!r}")
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularisation = regularisation
        self.negatives = negatives
        self.negative_weight = negative_weight
        self.max_confidence = max_confidence
        self.clip_gradient = clip_gradient
        self.init_scale = init_scale
        self.sampling: Sampling = sampling
        self.pool_size = pool_size
        self.track_contributions = track_contributions
        self.seed = seed

        # River's pieces: the logistic loss's gradient and one plain SGD per table. SGD keeps no
        # per-row state (unlike AdaGrad or Adam), so a factor row is the whole state of its id:
        # persistence copies rows, and forgetting a user deletes one row.
        self._loss = optim.losses.Log()
        self._user_sgd = optim.SGD(learning_rate)
        self._item_sgd = optim.SGD(learning_rate)

        self._users: dict[str, Vector] = {}
        # Item rows live in one contiguous matrix (rows 0..n-1 in insertion order) so scoring
        # every item is a single matrix-vector product; SGD updates rows in place through views.
        self._item_matrix: Vector = np.zeros((_INITIAL_ITEM_CAPACITY, factors), dtype=np.float32)
        self._item_ids: list[str] = []
        self._item_rows: dict[str, int] = {}

        self._steps = 0
        self._pool: list[int] = []  # ring buffer of item rows of recent positives
        self._pool_next = 0  # where the next positive goes once the ring is full
        self._contributions: dict[str, dict[str, npt.NDArray[np.float64]]] = {}
        self._changed_users: set[str] = set()
        self._changed_items: set[str] = set()

    # ---- learning --------------------------------------------------------------------------
    def learn(self, user_id: str, item_id: str, weight: float) -> None:
        """Learn from one event of ``weight`` (see :data:`models.events.DEFAULT_WEIGHTS`)."""
        if not math.isfinite(weight):
            raise ValueError("weight must be finite")
        if weight == 0.0:
            return
        user = self._user_vector(user_id)
        row = self._item_row(item_id)
        confidence = min(abs(weight), self.max_confidence)
        # Gradients are summed per distinct row so a negative drawn twice is one update.
        examples: dict[int, tuple[int, float]] = {row: (1 if weight > 0 else 0, confidence)}
        if weight > 0:
            for negative in self._draw_negatives():
                if negative != row:
                    label, conf = examples.get(negative, (0, 0.0))
                    examples[negative] = (label, conf + self.negative_weight)
            self._remember_positive(row)
        self._steps += 1

        row_list = list(examples)
        rows = np.array(row_list, dtype=np.intp)
        labels = np.array([examples[r][0] for r in row_list], dtype=np.int64)
        weights = np.array([examples[r][1] for r in row_list], dtype=np.float64)
        items = self._item_matrix[rows].astype(np.float64)  # a copy: the pre-update values
        logits = np.clip(items @ user, -_MAX_LOGIT, _MAX_LOGIT)
        g = weights * self._loss.gradient(labels, logits)  # d loss / d logit, per example

        # Clamping each gradient component (River's ``clip_gradient``) bounds every step, so
        # conflicting feedback at a high learning rate cannot blow factors up to inf or NaN.
        l2, clip = self.regularisation, self.clip_gradient
        user_grad = np.clip(g @ items + l2 * user, -clip, clip)
        item_grads = np.clip(np.outer(g, user) + l2 * items, -clip, clip)

        self._user_sgd.step({user_id: user}, {user_id: user_grad})
        item_ids = [self._item_ids[r] for r in row_list]
        # Views into the matrix: River's in-place `w[key] -= lr * g` writes straight into it.
        views: dict[Hashable, Vector] = {
            item: self._item_matrix[r] for item, r in zip(item_ids, row_list, strict=True)
        }
        grads: dict[Hashable, npt.NDArray[np.float64]] = dict(
            zip(item_ids, item_grads, strict=True)
        )
        self._item_sgd.step(views, grads)

        self._changed_users.add(user_id)
        self._changed_items.update(item_ids)
        if self.track_contributions:
            ledger = self._contributions.setdefault(user_id, {})
            deltas = self._item_matrix[rows].astype(np.float64) - items
            for item, delta in zip(item_ids, deltas, strict=True):
                previous = ledger.get(item)
                ledger[item] = delta if previous is None else previous + delta

    # ---- scoring ---------------------------------------------------------------------------
    def score(self, user_id: str, item_ids: Sequence[str]) -> npt.NDArray[np.float64]:
        """Logits ``p_u · q_i`` for ``item_ids``, in order; 0 for an unknown user or item.

        One gather and one matrix-vector product however many candidates there are.
        """
        scores = np.zeros(len(item_ids), dtype=np.float64)
        user = self._users.get(user_id)
        if user is None or not item_ids:
            return scores
        rows = np.array([self._item_rows.get(i, -1) for i in item_ids], dtype=np.intp)
        known = rows >= 0
        scores[known] = self._item_matrix[rows[known]] @ user
        return scores

    def top_k(self, user_id: str, k: int, exclude: Collection[str] = ()) -> list[tuple[str, float]]:
        """The ``k`` best known items for the user, best first, none from ``exclude``.

        A cold user gets ``[]``: random initial factors are noise, not a recommendation.
        Equal scores are ordered by item id.
        """
        user = self._users.get(user_id)
        count = len(self._item_ids)
        if user is None or k <= 0 or count == 0:
            return []
        scores = (self._item_matrix[:count] @ user).astype(np.float64)
        banned = [r for r in (self._item_rows.get(i) for i in exclude) if r is not None]
        scores[banned] = -np.inf
        candidates = np.flatnonzero(np.isfinite(scores))
        if len(candidates) > k:
            # Keep everything tied with the k-th best so the id tie-break below is honest.
            cut = len(candidates) - k
            threshold = np.partition(scores[candidates], cut)[cut]
            candidates = candidates[scores[candidates] >= threshold]
        # (−score, id) pairs sort in C: best first, ties by id.
        ids = self._item_ids
        ranked = sorted(
            zip((-scores[candidates]).tolist(), [ids[r] for r in candidates.tolist()], strict=True)
        )
        return [(item, -negative) for negative, item in ranked[:k]]

    # ---- explicit state --------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return self._steps

    def user_ids(self) -> tuple[str, ...]:
        return tuple(self._users)

    def item_ids(self) -> tuple[str, ...]:
        """Known items in row order (the order uniform sampling indexes into)."""
        return tuple(self._item_ids)

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

    def sampler_state(self) -> SamplerState:
        ordered = self._pool[self._pool_next :] + self._pool[: self._pool_next]
        return SamplerState(self._steps, tuple(self._item_ids[r] for r in ordered))

    def set_sampler_state(self, state: SamplerState) -> None:
        """Restore :meth:`sampler_state` (after the item rows: pool items must be known)."""
        missing = [i for i in state.pool if i not in self._item_rows]
        if missing or state.steps < 0:
            raise ValueError(f"{len(missing)} pool items are unknown; import item rows first")
        self._steps = state.steps
        self._pool = [self._item_rows[i] for i in state.pool[-self.pool_size :]]
        self._pool_next = 0

    def take_changed(self) -> Changed:
        """Ids whose rows changed since the last call (then forgets them): the write-back set."""
        changed = Changed(frozenset(self._changed_users), frozenset(self._changed_items))
        self._changed_users.clear()
        self._changed_items.clear()
        return changed

    def contributions(self, user_id: str) -> dict[str, bytes]:
        """The user's undo ledger (``track_contributions``) as ``{item: float32 LE bytes}``."""
        return {i: encode_vector(d) for i, d in self._contributions.get(user_id, {}).items()}

    def set_contributions(self, user_id: str, rows: Mapping[str, bytes]) -> None:
        self._contributions[user_id] = {
            i: decode_vector(raw, self.factors).astype(np.float64) for i, raw in rows.items()
        }

    def forget_user(self, user_id: str, *, revert_items: bool = False) -> bool:
        """Remove every trace of the user from the user state; True if there was any.

        Deleted: the user's factor row, its undo ledger and its pending write-back entry.
        Not deleted: what item factors learnt from the user. Each of the user's events moved
        the item rows it touched (the item, and the sampled negatives), and other users' later
        updates built on those moved rows; the learning steps counter and the popularity pool
        (item ids only, no user id) also count the user's events. Those parts are not personal
        data on their own, but they are shaped by the user.

        ``revert_items=True`` (needs ``track_contributions``) is an approximate undo: it
        subtracts from each item row exactly the sum of the changes this user's own SGD steps
        made to it (gradient and L2 shrinkage included). If the user was the only one to touch
        those items it restores them to what they were (up to float rounding); otherwise it
        removes the user's direct pushes but not their knock-on effects on other users' factors
        or on later updates computed from the pushed rows. The reverted rows are reported by the
        next :meth:`take_changed` so they get written back.
        """
        if revert_items and not self.track_contributions:
            raise ValueError("revert_items needs OnlineMF(track_contributions=True)")
        ledger = self._contributions.pop(user_id, None)
        known = self._users.pop(user_id, None) is not None
        self._changed_users.discard(user_id)
        if revert_items and ledger:
            for item, delta in ledger.items():
                row = self._item_rows.get(item)
                if row is not None:
                    self._item_matrix[row] -= delta.astype(np.float32)
                    self._changed_items.add(item)
        return known or ledger is not None

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

    def _draw_negatives(self) -> list[int]:
        """``negatives`` item rows, a pure function of (seed, steps, the pool or item count)."""
        popular = self.sampling == "popularity" and bool(self._pool)
        size = len(self._pool) if popular else len(self._item_ids)
        if self.negatives == 0 or size == 0:
            return []
        draws: list[int] = []
        block = 0
        while len(draws) < self.negatives:
            key = f"{self.seed}\x1f{self._steps}\x1f{block}".encode()
            digest = hashlib.blake2b(key, digest_size=64).digest()
            draws.extend(int(v) % size for v in np.frombuffer(digest, dtype="<u8").tolist())
            block += 1
        draws = draws[: self.negatives]
        if not popular:
            return draws
        # Positions count from the oldest entry, so a restored (rotated) ring draws the same.
        return [self._pool[(self._pool_next + d) % size] for d in draws]

    def _remember_positive(self, row: int) -> None:
        if len(self._pool) < self.pool_size:
            self._pool.append(row)
        else:
            self._pool[self._pool_next] = row
            self._pool_next = (self._pool_next + 1) % self.pool_size
