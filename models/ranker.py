"""An online learned ranker over the sources' scores: River logistic regression.

The fixed blend (:func:`models.recommend.blend`) weighs every source the same for every user.
The ranker learns from what users do next: each published list is remembered with the
features of its items, and when the user's next item event arrives, every remembered item is
one example, labelled 1 if it is the item the user acted on and 0 otherwise. The label needs
no click tracking: an item the user goes on to view, cart or buy after it was shown is a hit.

Features per candidate (all in [0, 1] or small): each source's normalised score, whether the
source proposed it at all, and the score times how much history the user has, so the ranker
can learn that (say) MF deserves more weight for users with long histories and content for
short ones. The intercept does not change a ranking and is left to River.

The model is kept only if it beats the tuned blend in ``socialrec eval`` (docs/quality.md).

>>> from models.recommend import CandidateFeatures, Source
>>> ranker = OnlineRanker(learning_rate=0.5)
>>> liked = CandidateFeatures("a", {Source.MF: 1.0}, history=5)
>>> ignored = CandidateFeatures("b", {Source.CONTENT: 1.0}, history=5)
>>> for _ in range(50):
...     ranker.learn([liked, ignored], acted_on="a")
>>> a, b = ranker.score([liked, ignored])
>>> a > 0.5 > b
True
>>> restored = OnlineRanker.from_state(ranker.state())
>>> restored.score([liked, ignored]) == ranker.score([liked, ignored])
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from river import linear_model, optim

from models.recommend import CandidateFeatures

#: History length at which the "× history" features saturate (the read window).
HISTORY_SCALE = 30


def ranker_features(candidate: CandidateFeatures) -> dict[str, float]:
    """The ranker's input for one candidate (sparse: absent sources are left out).

    >>> from models.recommend import Source
    >>> ranker_features(CandidateFeatures("x", {Source.ITEM_CF: 0.5}, history=30))
    {'item_cf': 0.5, 'item_cf:on': 1.0, 'item_cf:hist': 0.5, 'sources': 1.0}
    """
    history = math.log1p(min(candidate.history, HISTORY_SCALE)) / math.log1p(HISTORY_SCALE)
    x: dict[str, float] = {}
    for source, value in candidate.normalised.items():
        x[source.value] = value
        x[f"{source.value}:on"] = 1.0
        x[f"{source.value}:hist"] = value * history
    x["sources"] = float(len(candidate.normalised))
    return x


class OnlineRanker:
    """Logistic regression on :func:`ranker_features`, learnt one shown list at a time."""

    def __init__(self, learning_rate: float = 0.05, l2: float = 1e-4) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2
        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), l2=l2)
        self.examples = 0

    def score(self, features: Sequence[CandidateFeatures]) -> list[float]:
        """P(the user acts on the item next), one per candidate, in order."""
        predict = self.model.predict_proba_one
        return [
            float(predict(ranker_features(f)).get(True, 0.0))  # type: ignore[no-untyped-call]
            for f in features
        ]

    def learn(self, shown: Sequence[CandidateFeatures], acted_on: str) -> None:
        """Every shown candidate is an example: 1 if it is what the user acted on next."""
        for f in shown:
            self.model.learn_one(ranker_features(f), f.item_id == acted_on)
            self.examples += 1

    def state(self) -> dict[str, Any]:
        """Everything needed to continue elsewhere (JSON-ready: weights by feature name)."""
        return {
            "learning_rate": self.learning_rate,
            "l2": self.l2,
            "weights": dict(self.model.weights),
            "intercept": self.model.intercept,
            "examples": self.examples,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> OnlineRanker:
        ranker = cls(float(state["learning_rate"]), float(state["l2"]))
        for name, weight in dict(state["weights"]).items():
            ranker.model._weights[str(name)] = float(weight)  # River exposes no setter
        ranker.model.intercept = float(state["intercept"])
        ranker.examples = int(state["examples"])
        return ranker
