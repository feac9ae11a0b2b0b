"""Blend weights learned online from what users act on next.

The assembly ranks a warm user's candidates by ``Σ_s w_s · (score_s / best_s)`` over the
sources (:func:`models.recommend.blend_pools`). Which source deserves how much differs from
one shop to the next (item-CF on a dense stream, popularity on a sparse one, friends where
people follow each other), so the weights are learned where they run.

Each observation is one request's candidates and the item the user acted on next. For every
source that proposed anything, the learner scores the source's own ranking: the gain
``1/log2(1 + r)`` of the rank ``r`` the acted-on item had among that source's candidates (0
if the source did not propose it), averaged over the requests where the source proposed
something (a running mean over about the last :data:`WINDOW` of them). A source's weight is
its mean gain over the best source's: the blend leans on each source as far as it has
predicted what this stream's users do. A source that rarely speaks but is right when it does
(items bought together) keeps a high weight; one that always speaks and rarely helps sinks.

A joint fit of the weights (a pairwise logistic loss on the blended score) was tried first
and collapsed: every source whose top items hold the list loses weight whenever the chosen
item is not its first, so the rarest source ended with all the weight.

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

from models.recommend import Blended, Source

#: Requests a source's running mean covers (a plain mean until then).
WINDOW = 5000
#: Requests a source must have proposed candidates for before its weight is learned.
MIN_REQUESTS = 50
#: No weight goes below 2^FLOOR (a source whose record is all misses still breaks ties).
FLOOR = -10.0
#: Where a source with no starting weight starts (2^-4), until it has a record.
START_FLOOR = -4.0


class BlendLearner:
    """Weights per source: each one's mean gain at ranking what users act on next.

    ``observe(blended, item_id)`` after the user's next item event (``blended``: the
    candidates of the last list shown to them); ``weights`` is the blend to use. Until a
    source has proposed candidates in :data:`MIN_REQUESTS` observed requests, its starting
    weight stands (``initial``, at least 2^START_FLOOR).
    """

    def __init__(self, initial: Mapping[Source, float]) -> None:
        floor = 2.0**START_FLOOR
        self._weights = {source: max(floor, w) for source, w in initial.items()}
        self.observations = 0  # requests whose item some source had proposed
        self.gains: dict[Source, float] = {}  # running mean gain of each source's own ranking
        self.counts: dict[Source, int] = {}  # requests where the source proposed something

    @property
    def weights(self) -> dict[Source, float]:
        return self._weights

    def observe(self, blended: Blended, item_id: str) -> bool:
        """Learn from one request's candidates and the item acted on; False if no source had
        proposed it (nothing to learn: the weights only reorder candidates)."""
        if item_id not in blended.totals:
            return False
        for source in blended.best:
            if source not in self._weights:
                continue
            pool = blended.pools[source]
            entry = pool.get(item_id)
            gain = 0.0
            if entry is not None and entry[0] > 0.0:
                raw = entry[0]
                above = ties = 0
                for other, _ in pool.values():
                    if other > raw:
                        above += 1
                    elif other == raw:
                        ties += 1
                # Tied candidates share their ranks: the item counts at their middle.
                gain = 1.0 / math.log2(2.0 + above + 0.5 * (ties - 1))
            seen = self.counts.get(source, 0) + 1
            self.counts[source] = seen
            mean = self.gains.get(source, 0.0)
            self.gains[source] = mean + (gain - mean) / min(seen, WINDOW)
        self.observations += 1
        self._reweigh()
        return True

    def _reweigh(self) -> None:
        learned = {s: g for s, g in self.gains.items() if self.counts[s] >= MIN_REQUESTS}
        best = max(learned.values(), default=0.0)
        if best <= 0.0:
            return
        for source, gain in learned.items():
            self._weights[source] = max(2.0**FLOOR, gain / best)

    def state(self) -> dict[str, object]:
        """What a worker persists (and eval prints): weights, running gains and counts."""
        return {
            "weights": {str(s): round(w, 4) for s, w in sorted(self._weights.items())},
            "gains": {str(s): g for s, g in sorted(self.gains.items())},
            "counts": {str(s): n for s, n in sorted(self.counts.items())},
            "observations": self.observations,
        }

    @classmethod
    def restore(cls, state: Mapping[str, object]) -> BlendLearner:
        """The learner :meth:`state` describes.

        >>> learner = BlendLearner({Source.ITEM_CF: 1.0, Source.MF: 0.5})
        >>> BlendLearner.restore(learner.state()).state() == learner.state()
        True
        """
        weights, gains, counts = state["weights"], state["gains"], state["counts"]
        assert isinstance(weights, Mapping)
        assert isinstance(gains, Mapping)
        assert isinstance(counts, Mapping)
        learner = cls({Source(s): float(w) for s, w in weights.items()})
        learner.gains = {Source(s): float(g) for s, g in gains.items()}
        learner.counts = {Source(s): int(n) for s, n in counts.items()}
        observations = state.get("observations", 0)
        learner.observations = observations if isinstance(observations, int) else 0
        learner._reweigh()
        return learner
