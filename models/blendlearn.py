"""Blend weights learned online from what users act on next.

The assembly ranks a warm user's candidates by ``Σ_s w_s · (score_s / best_s)`` over the
sources (:func:`models.recommend.blend_pools`). Which source deserves how much differs from
one shop to the next (item-CF on a dense stream, popularity on a sparse one, friends where
people follow each other), so the weights are learned where they run.

Each observation is one request's candidates and the item the user acted on next. The loss is
pairwise and logistic, as in BPR: the acted-on item against each of the ``k`` candidates the
blend ranks best (the ones that hold the slots it should have had), a pair counting by
``σ((s_j − s_t)/τ)``, so the pairs the item loses count most and pairs it wins by far count
little. Each source's log-weight takes a gradient step: it rises when the source scores the
acted-on item above its competitors. ``τ`` is a tenth of the request's best total, so the
step does not depend on how many sources or how large the weights are. A request whose item
no source proposed teaches nothing (the weights only reorder candidates). Only ratios
matter, so the largest weight is kept at 1; none goes below 2^-10 (a source can always come
back).

>>> from models.recommend import Source, blend_pools
>>> learner = BlendLearner({Source.ITEM_CF: 1.0, Source.POPULAR: 0.1})
>>> pools = {Source.ITEM_CF: {"a": (1.0, ()), "b": (0.9, ())},
...          Source.POPULAR: {"b": (5.0, ()), "c": (4.0, ())}}
>>> for _ in range(200):   # users keep choosing the popular item over item-CF's best
...     _ = learner.observe(blend_pools(pools, learner.weights), "c")
>>> learner.weights[Source.POPULAR] > 0.5 > learner.weights[Source.ITEM_CF]
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from models.recommend import Blended, Source

#: Learning rate on the log2 weights, per observation (a step is at most RATE·w_s/τ).
RATE = 0.01
#: τ over the request's best total: how soft the pairwise comparison is.
TEMPERATURE = 0.1
#: Bounds of a log2 weight: the largest is 0 (weight 1), none below 2^-10.
FLOOR = -10.0
#: Where a source with no starting weight starts (2^-4): low, but able to climb.
START_FLOOR = -4.0


class BlendLearner:
    """Log2 weights per source, moved by a pairwise logistic gradient against the top ``k``.

    ``observe(blended, item_id)`` after the user's next item event (``blended``: the
    candidates of the last list shown to them); ``weights`` is the blend to use.
    """

    def __init__(self, initial: Mapping[Source, float], *, k: int = 10) -> None:
        self.k = k
        self.log_weights: dict[Source, float] = {
            source: max(START_FLOOR, math.log2(w)) if w > 0 else START_FLOOR
            for source, w in initial.items()
        }
        self.observations = 0  # requests that taught something
        self._recentre()

    @property
    def weights(self) -> dict[Source, float]:
        return self._weights

    def _recentre(self) -> None:
        top = max(self.log_weights.values(), default=0.0)
        self.log_weights = {s: max(FLOOR, v - top) for s, v in self.log_weights.items()}
        self._weights = {s: 2.0**v for s, v in self.log_weights.items()}

    def observe(self, blended: Blended, item_id: str) -> bool:
        """Learn from one request's candidates and the item acted on; False if no source had
        proposed it (nothing to learn)."""
        if item_id not in blended.totals:
            return False
        sources = [s for s in blended.best if s in self.log_weights]
        if not sources:
            return False
        candidates = list(blended.totals)
        row = {item: n for n, item in enumerate(candidates)}
        features = np.zeros((len(candidates), len(sources)))
        for col, source in enumerate(sources):
            best = blended.best[source]
            pool = blended.pools[source]
            rows = [row[item] for item, (raw, _) in pool.items() if raw > 0.0]
            raws = [raw for raw, _ in pool.values() if raw > 0.0]
            features[rows, col] = np.asarray(raws) / best
        weights = np.array([self._weights[s] for s in sources])
        totals = features @ weights
        target = row[item_id]
        # The k best other candidates: the slots the acted-on item competes for.
        order = np.argsort(-totals, kind="stable")
        rivals = order[order != target][: self.k]
        if not len(rivals):
            return True
        tau = TEMPERATURE * max(float(totals[order[0]]), 1e-12)
        pull = 1.0 / (1.0 + np.exp(-(totals[rivals] - totals[target]) / tau))
        # d(s_t − s_j)/d log2 w_s is ln2·w_s·(f_s(t) − f_s(j)); ln2 folds into the rate.
        advantage = (pull[:, None] * (features[target] - features[rivals])).mean(axis=0)
        step = RATE * weights * advantage / tau
        self.observations += 1
        for source, g in zip(sources, step.tolist(), strict=True):
            self.log_weights[source] += g
        self._recentre()
        return True

    def state(self) -> dict[str, object]:
        """What a worker persists (and eval prints): the weights and how much taught them."""
        return {
            "weights": {str(s): round(w, 4) for s, w in sorted(self._weights.items())},
            "observations": self.observations,
        }

    @classmethod
    def restore(cls, state: Mapping[str, object], *, k: int = 10) -> BlendLearner:
        """The learner :meth:`state` describes (weights only: the slopes are not kept)."""
        weights = state["weights"]
        assert isinstance(weights, Mapping)
        learner = cls({Source(s): float(w) for s, w in weights.items()}, k=k)
        observations = state.get("observations", 0)
        learner.observations = int(observations) if isinstance(observations, int) else 0
        return learner
