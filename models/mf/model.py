"""MF's learning and scoring (:class:`OnlineMF`) over its factor rows (:mod:`.rows`), with the
negatives of :mod:`.sampler`, the write-back set and the per-user undo ledger.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
from river import optim

from models.mf.rows import FactorRows, Vector, decode_ledger_row
from models.mf.sampler import NegativeSampler, SamplerState, Sampling
from models.mf.topk import top_k_rows

#: Logits are clipped before the loss so exp() never overflows on a runaway pair.
_MAX_LOGIT: Final = 30.0


class OnlineMF(FactorRows):
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
        super().__init__(factors, init_scale, seed)
        self.learning_rate = learning_rate
        self.regularisation = regularisation
        self.negative_weight = negative_weight
        self.max_confidence = max_confidence
        self.clip_gradient = clip_gradient
        self.track_contributions = track_contributions
        self._sampler = NegativeSampler(negatives, sampling, pool_size, seed)

        # River's pieces: the logistic loss's gradient and one plain SGD per table. SGD keeps no
        # per-row state (unlike AdaGrad or Adam), so a factor row is the whole state of its id:
        # persistence copies rows, and forgetting a user deletes one row.
        self._loss = optim.losses.Log()
        self._user_sgd = optim.SGD(learning_rate)
        self._item_sgd = optim.SGD(learning_rate)

        self._contributions: dict[str, dict[str, npt.NDArray[np.float64]]] = {}

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
            for negative in self._sampler.draw(len(self._item_ids)):
                if negative != row:
                    label, conf = examples.get(negative, (0, 0.0))
                    examples[negative] = (label, conf + self.negative_weight)
            self._sampler.remember(row)
        self._sampler.steps += 1

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
        return self.top_k_many([user_id], k, {user_id: exclude})[user_id]

    def top_k_many(
        self,
        user_ids: Sequence[str],
        k: int,
        exclude: Mapping[str, Collection[str]] | None = None,
    ) -> dict[str, list[tuple[str, float]]]:
        """:meth:`top_k` of each user (``exclude``: per user), their scores by a few matrix
        products (:func:`models.mf.topk.top_k_rows`)."""
        found: dict[str, list[tuple[str, float]]] = {u: [] for u in user_ids}
        count = len(self._item_ids)
        known = [u for u in found if u in self._users]
        if not known or k <= 0 or count == 0:
            return found
        rows, exclude = self._item_rows, exclude or {}
        banned = [[r for r in map(rows.get, exclude.get(u, ())) if r is not None] for u in known]
        users = [self._users[u] for u in known]
        best = top_k_rows(users, self._item_matrix[:count], self._item_ids, k, banned)
        found.update(zip(known, best, strict=True))
        return found

    # ---- explicit state --------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return self._sampler.steps

    @property
    def negatives(self) -> int:
        return self._sampler.negatives

    @property
    def sampling(self) -> Sampling:
        return self._sampler.sampling

    @property
    def pool_size(self) -> int:
        return self._sampler.pool_size

    def sampler_state(self) -> SamplerState:
        ordered = self._sampler.ordered()
        return SamplerState(self._sampler.steps, tuple(self._item_ids[r] for r in ordered))

    def take_sampler_news(self) -> SamplerState:
        """Steps taken and positives remembered since the last call or
        :meth:`set_sampler_state`: what a stored :meth:`sampler_state` follows with
        :meth:`SamplerState.then` (tests/unit/test_mf.py holds the two together)."""
        steps, rows = self._sampler.take_news()
        return SamplerState(steps, tuple(self._item_ids[r] for r in rows))

    def set_sampler_state(self, state: SamplerState) -> None:
        """Restore :meth:`sampler_state` (after the item rows: pool items must be known)."""
        missing = self.unknown_items(state.pool)
        if missing or state.steps < 0:
            raise ValueError(f"{len(missing)} pool items are unknown; import item rows first")
        self._sampler.restore(state.steps, [self._item_rows[i] for i in state.pool])

    def contributions(self, user_id: str) -> dict[str, npt.NDArray[np.float64]]:
        """The user's undo ledger (``track_contributions``): per item, the sum of the changes
        the user's steps made to its row (unrounded; stored by
        :func:`models.mf.encode_ledger_row`)."""
        return dict(self._contributions.get(user_id, {}))

    def set_contributions(self, user_id: str, rows: Mapping[str, bytes]) -> None:
        self._contributions[user_id] = {
            i: decode_ledger_row(raw, self.factors) for i, raw in rows.items()
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
