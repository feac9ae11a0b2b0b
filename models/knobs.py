"""The knobs a worker learns from its own stream, held together: one small object the worker
keeps in memory (and persists), and eval replays exactly as the worker would run it.

* :attr:`LearnedKnobs.popularity`: the popularity half-life (and the popular items under it),
  fed every positive-weight item event (:class:`models.halflife.LearnedHalfLife`);
* :attr:`LearnedKnobs.blend`: the blend weights, fed each request's candidates and the item
  the user acted on next (:class:`models.blendlearn.BlendLearner`); the social source's weight
  is one of them;
* the similarity shrinkage lives in the state that owns the norms it is scaled to
  (``StateParams.shrinkage_scale``, :class:`models.shrinkage.ShrinkageEstimator`).

The social proof's half-life follows the learned popularity half-life: both say how long an
action stays news on this stream.

>>> from models.recommend import Source
>>> knobs = LearnedKnobs.start({Source.ITEM_CF: 1.0}, half_life_s=3600.0)
>>> knobs.learn_event("a", 1.0, ts=0.0)
>>> sorted(knobs.values())
['blend_observations', 'blend_weights', 'half_life_s']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from models.blendlearn import BlendLearner
from models.halflife import LearnedHalfLife
from models.recommend import PERSONAL_SOURCES, Scores, Source


@dataclass
class LearnedKnobs:
    popularity: LearnedHalfLife
    blend: BlendLearner

    @classmethod
    def start(cls, weights: Mapping[Source, float], *, half_life_s: float) -> LearnedKnobs:
        """Knobs starting from the configured blend and half-life (every source the blend
        lacks, such as popularity or item-kNN, starts low and may climb)."""
        start = {**dict.fromkeys(PERSONAL_SOURCES, 0.0), **weights}
        return cls(LearnedHalfLife(half_life_s), BlendLearner(start))

    def learn_event(self, item_id: str, weight: float, ts: float) -> None:
        """Every item event, with its weight (non-positive weights are ignored)."""
        self.popularity.update(item_id, weight, ts)

    def learn_choice(self, scores: Scores, item_id: str) -> None:
        """The user's next item event after a request whose candidates were ``scores``."""
        self.blend.observe(scores, item_id)

    def values(self) -> dict[str, object]:
        """What eval prints and a worker logs: the knobs as they stand."""
        blend = self.blend.state()
        return {
            "half_life_s": self.popularity.half_life_s,
            "blend_weights": blend["weights"],
            "blend_observations": blend["observations"],
        }
