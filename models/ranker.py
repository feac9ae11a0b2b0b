"""An online learned ranker over the sources' scores: River logistic regression, pairwise.

The fixed blend (:func:`models.recommend.blend`) weighs every source the same for every user.
The ranker learns from what users do next. Each published list remembers the features of the
best candidates (shown or not); when the user's next item event arrives on one of them, that
item should have ranked above the other candidates. Each such pair is one example for a
logistic regression on the *difference* of their features (RankNet's pairwise loss with a
linear scorer), given in both orders so the intercept stays 0.

Why pairwise: a pointwise "was it acted on" model learns mostly that candidates are ignored
(positives are a few percent), so its weights go negative for every signal and it ranks the
weakest candidates first (measured: AUC 0.20 on the simulator). A difference of two
candidates of the same request cancels everything they share and leaves only what made the
user choose one.

Features per candidate (all in [0, 1] or small): each source's normalised score, whether the
source proposed it, and the score times how much history the user has, so the ranker can learn
that (say) MF deserves more weight for long histories and content for short ones.

The model is kept only if it beats the tuned blend in ``socialrec eval`` (docs/quality.md).

>>> from models.recommend import CandidateFeatures, Source
>>> ranker = OnlineRanker(learning_rate=0.5)
>>> liked = CandidateFeatures("a", {Source.MF: 1.0}, history=5)
>>> ignored = CandidateFeatures("b", {Source.CONTENT: 1.0}, history=5)
>>> for _ in range(50):
...     _ = ranker.learn([liked, ignored], acted_on="a")
>>> a, b = ranker.score([liked, ignored])
>>> a > b
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

    def __init__(
        self, learning_rate: float = 0.05, l2: float = 1e-4, pairs_per_event: int = 20
    ) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2
        self.pairs_per_event = pairs_per_event
        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), l2=l2)
        self.examples = 0

    def score(self, features: Sequence[CandidateFeatures]) -> list[float]:
        """A score per candidate, in order: only the order within one request means anything."""
        predict = self.model.predict_proba_one
        return [
            float(predict(ranker_features(f)).get(True, 0.0))  # type: ignore[no-untyped-call]
            for f in features
        ]

    def learn(self, candidates: Sequence[CandidateFeatures], acted_on: str) -> int:
        """The acted-on candidate against the other remembered candidates; returns how many
        pairs were learnt (0 if the user acted on something no source proposed).

        The losers are every ``stride``-th other candidate across the whole remembered list,
        not the items shown: in an offline replay nobody saw the list, and the shown items
        are by construction the blend's favourites, so "the acted item beat the shown ones"
        would teach the ranker to prefer weaker candidates.
        """
        winner = next((f for f in candidates if f.item_id == acted_on), None)
        if winner is None:
            return 0
        others = [f for f in candidates if f.item_id != acted_on]
        stride = max(1, len(others) // self.pairs_per_event)
        x_win = ranker_features(winner)
        pairs = 0
        for loser in others[::stride]:
            x_lose = ranker_features(loser)
            names = x_win.keys() | x_lose.keys()
            diff = {n: x_win.get(n, 0.0) - x_lose.get(n, 0.0) for n in names}
            self.model.learn_one(diff, True)
            self.model.learn_one({n: -v for n, v in diff.items()}, False)
            pairs += 1
        self.examples += pairs
        return pairs

    def state(self) -> dict[str, Any]:
        """Everything needed to continue elsewhere (JSON-ready: weights by feature name)."""
        return {
            "learning_rate": self.learning_rate,
            "l2": self.l2,
            "pairs_per_event": self.pairs_per_event,
            "weights": dict(self.model.weights),
            "intercept": self.model.intercept,
            "examples": self.examples,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> OnlineRanker:
        ranker = cls(
            float(state["learning_rate"]), float(state["l2"]), int(state["pairs_per_event"])
        )
        for name, weight in dict(state["weights"]).items():
            ranker.model._weights[str(name)] = float(weight)  # River exposes no setter
        ranker.model.intercept = float(state["intercept"])
        ranker.examples = int(state["examples"])
        return ranker
