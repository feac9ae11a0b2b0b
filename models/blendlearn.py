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

Then a paired check of the blend itself refines the weights: the item's NDCG@k is computed
with each source's weight doubled and halved on the same request, and the source's log2
correction moves towards the better side (bounded, so the record keeps setting the scale). A
source with a good record whose candidates crowd out better ones from other sources is turned
down this way; each source's record alone cannot see that.

A joint fit of the weights (a pairwise logistic loss on the blended score) was tried first
and collapsed: every source whose top items hold the list loses weight whenever the chosen
item is not its first, so the rarest source ended with all the weight.

>>> from models.recommend import Source, blend_pools
>>> learner = BlendLearner({Source.ITEM_CF: 1.0, Source.POPULAR: 0.1})
>>> pools = {Source.ITEM_CF: {"a": (1.0, ()), "b": (0.9, ())},
...          Source.POPULAR: {"b": (5.0, ()), "c": (4.0, ())}}
>>> for _ in range(200):   # users keep choosing the popular item over item-CF's best
...     _ = learner.observe(blend_pools(pools, learner.weights).scores(), "c")
>>> learner.weights[Source.POPULAR] > 0.5 > learner.weights[Source.ITEM_CF]
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from models.recommend import Scores, Source

#: Requests a source's running mean covers (a plain mean until then).
WINDOW = 5000
#: Requests a source must have proposed candidates for before its weight is learned.
MIN_REQUESTS = 50
#: Step of a source's log2 correction per paired check that moved the item's NDCG@k.
REFINE_RATE = 0.05
#: A correction stays within ±this (log2): the record sets the scale, the check adjusts it.
CORRECTION_BOUND = 4.0
#: No weight goes below 2^FLOOR (a source whose record is all misses still breaks ties).
FLOOR = -10.0
#: Where a source with no starting weight starts (2^-4), until it has a record.
START_FLOOR = -4.0


#: A candidate outranks the item in a source only by more than this share of the source's best
#: score: the variants' sums are rounded, and a lead far below the other sources' terms (a
#: score of 1e-38 against 1e-280 next to 0.25) vanishes in them. At weights of 2^-11 or more
#: the lead stays some 1e5 times the rounding of sums of a few terms near 1.
_MARGIN = 1e-6


def outranked(scores: Scores, item_id: str, sources: Sequence[Source], k: int) -> bool:
    """Whether ``k`` candidates outrank the item under any positive weights of ``sources``:
    at least its score in each, above it in one. Then no doubled or halved weight brings it
    into the top ``k``, every variant's gain is 0, and the paired check has nothing to learn
    (most acted-on items rank far down: this one pass over a pool spares the matrix).

    >>> from models.recommend import blend_pools
    >>> pools = {Source.ITEM_CF: {"a": (3.0, ()), "b": (2.0, ()), "c": (1.0, ())},
    ...          Source.MF: {"c": (1.0, ())}}
    >>> b = blend_pools(pools, {Source.ITEM_CF: 1.0, Source.MF: 1.0}).scores()
    >>> outranked(b, "c", [Source.ITEM_CF, Source.MF], 2), outranked(b, "b", [Source.ITEM_CF], 2)
    (False, False)
    >>> outranked(b, "c", [Source.ITEM_CF], 2)
    True
    """
    own = []
    for source in sources:
        mine = scores.pools[source].get(item_id, 0.0)
        if mine > 0.0:
            own.append((scores.pools[source], mine, _MARGIN * scores.best[source]))
    if not own:  # the item scores 0 here: every candidate with a score outranks it
        scored = {c for s in sources for c, raw in scores.pools[s].items() if raw > 0.0}
        return len(scored - {item_id}) >= k
    own.sort(key=lambda pool_raw: len(pool_raw[0]))
    (first, mine, lead), rest = own[0], own[1:]
    found = 0
    for candidate, raw in first.items():
        if raw < mine or candidate == item_id:
            continue
        above = raw - mine > lead
        for pool, theirs, lead_there in rest:
            other = pool.get(candidate, 0.0)
            if other < theirs:
                break
            above = above or other - theirs > lead_there
        else:
            if above:
                found += 1
                if found >= k:
                    return True
    return False


class BlendLearner:
    """Weights per source: each one's mean gain at ranking what users act on next.

    ``observe(scores, item_id)`` after the user's next item event (``scores``: the
    candidates of the last list shown to them, :meth:`models.recommend.Blended.scores`);
    ``weights`` is the blend to use. Until a source has proposed candidates in
    :data:`MIN_REQUESTS` observed requests, its starting weight stands (``initial``, at least
    2^START_FLOOR).
    """

    def __init__(self, initial: Mapping[Source, float], *, k: int = 10) -> None:
        self.k = k
        # log2 corrections from the paired check of the blend (see _refine).
        self.corrections: dict[Source, float] = {}
        floor = 2.0**START_FLOOR
        self._weights = {source: max(floor, w) for source, w in initial.items()}
        self.observations = 0  # requests whose item some source had proposed
        self.gains: dict[Source, float] = {}  # running mean gain of each source's own ranking
        self.counts: dict[Source, int] = {}  # requests where the source proposed something

    @property
    def weights(self) -> dict[Source, float]:
        return self._weights

    def observe(self, scores: Scores, item_id: str) -> bool:
        """Learn from one request's candidates and the item acted on; False if no source had
        proposed it (nothing to learn: the weights only reorder candidates)."""
        if item_id not in scores.totals:
            return False
        for source in scores.best:
            if source not in self._weights:
                continue
            pool = scores.pools[source]
            raw = pool.get(item_id, 0.0)
            gain = 0.0
            if raw > 0.0:
                above = ties = 0
                for other in pool.values():
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
        self._refine(scores, item_id)
        self.observations += 1
        self._reweigh()
        return True

    def _refine(self, scores: Scores, item_id: str) -> None:
        """The paired check of the blend itself: where would the item have ranked with each
        source's weight doubled, and halved? Each source's correction moves towards the
        better of the two (the gain of NDCG@``k``), so a source whose own record is good but
        whose candidates crowd out better ones from others is turned down, and the reverse."""
        sources = [s for s in scores.best if s in self._weights]
        if len(sources) < 2 or outranked(scores, item_id, sources, self.k):
            return
        candidates = list(scores.totals)
        row = {item: n for n, item in enumerate(candidates)}
        features = np.zeros((len(candidates), len(sources)))
        for col, source in enumerate(sources):
            best, pool = scores.best[source], scores.pools[source]
            kept = [(row[i], raw) for i, raw in pool.items() if raw > 0.0]
            if kept:
                rows, raws = zip(*kept, strict=True)
                features[list(rows), col] = np.asarray(raws) / best
        weights = np.array([self._weights[s] for s in sources])
        count = len(sources)
        variants = np.repeat(weights[:, None], 1 + 2 * count, axis=1)
        span = np.arange(count)
        variants[span, 1 + span] *= 2.0
        variants[span, 1 + count + span] *= 0.5
        totals = features @ variants
        target = totals[row[item_id]]
        rank = 1.0 + (totals > target).sum(axis=0)
        gain = np.where(rank <= self.k, 1.0 / np.log2(rank + 1.0), 0.0)
        slope = gain[1 : 1 + count] - gain[1 + count :]
        if not slope.any():
            return
        for source, g in zip(sources, slope.tolist(), strict=True):
            if g:
                value = self.corrections.get(source, 0.0) + REFINE_RATE * g
                self.corrections[source] = min(CORRECTION_BOUND, max(-CORRECTION_BOUND, value))

    def _reweigh(self) -> None:
        learned = {
            s: g * 2.0 ** self.corrections.get(s, 0.0)
            for s, g in self.gains.items()
            if self.counts[s] >= MIN_REQUESTS
        }
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
            "corrections": {str(s): c for s, c in sorted(self.corrections.items())},
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
        corrections = state.get("corrections", {})
        assert isinstance(corrections, Mapping)
        learner.corrections = {Source(s): float(c) for s, c in corrections.items()}
        observations = state.get("observations", 0)
        learner.observations = observations if isinstance(observations, int) else 0
        learner._reweigh()
        return learner
