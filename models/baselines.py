"""The popularity baselines eval always reports beside the hybrid.

* decayed popularity (:class:`LearnedPopularityRecommender`): every user gets the most popular
  items under the half-life learned from the stream (:class:`models.halflife.LearnedHalfLife`,
  the same estimator the hybrid's popular source uses);
* plain popularity: :class:`models.evaluation.PopularityRecommender` with no decay
  (``half_life_s=math.inf``: every event counts its weight forever).

>>> from models.events import Event, EventType
>>> model = LearnedPopularityRecommender()
>>> for n, item in enumerate(["a", "b", "b"]):
...     model.learn(Event(f"e{n}", EventType.VIEW, "u1", 1e9 + n, item_id=item))
>>> [s.item_id for s in model.recommend("u2", 5, {"a"}, now=1e9 + 3)]
['b']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet

from models.evaluation import Scored
from models.events import DEFAULT_WEIGHTS, ITEM_TYPES, Event, EventType
from models.halflife import LearnedHalfLife


class LearnedPopularityRecommender:
    """Decayed popularity with the learned half-life, as a
    :class:`~models.evaluation.Recommender`."""

    def __init__(
        self,
        weights: Mapping[EventType, float] | None = None,
        *,
        start_half_life_s: float = 6 * 3600.0,
        name: str = "popularity",
    ) -> None:
        self.weights = dict(weights or DEFAULT_WEIGHTS)
        self.popularity = LearnedHalfLife(start_half_life_s)
        self.name = name

    def learn(self, event: Event) -> None:
        if event.item_id is None or event.type not in ITEM_TYPES:
            return
        weight = self.weights.get(event.type, DEFAULT_WEIGHTS[event.type])
        self.popularity.update(event.item_id, weight, event.ts)

    def recommend(
        self, user_id: str, k: int, exclude: AbstractSet[str], now: float
    ) -> list[Scored]:
        chosen = []
        for item in self.popularity.ranked():
            if item not in exclude:
                chosen.append(Scored(item, self.popularity.score(item, now), "popular"))
                if len(chosen) >= k:
                    break
        return chosen

    def candidate_scores(self, user_id: str, item_ids: Sequence[str], now: float) -> list[float]:
        return [self.popularity.score(item, now) for item in item_ids]
