"""The hybrid with one source switched off: does each source earn its place?

An ablation shares everything the hybrid has learnt (the state, every source's model, the
learned popularity) and reads each request's candidates from the hybrid's own read
(:attr:`HybridRecommender.request`), so it costs one assembly per request, not another
replay. Only the blend is its own: with learned knobs it learns its weights, without the
source, from what users act on next, as the hybrid does with it.

>>> from models.events import Event, EventType
>>> from models.hybrid import build_hybrid
>>> from models.state import StateParams
>>> hybrid = build_hybrid(StateParams(), learn_knobs=True)
>>> no_cf = AblatedHybrid(hybrid, Source.ITEM_CF)
>>> for n, (user, item) in enumerate([("a", "phone"), ("a", "case"), ("b", "phone")]):
...     for model in (hybrid, no_cf):
...         model.learn(Event(f"e{n}", EventType.PURCHASE, user, 1e9 + n, item_id=item))
>>> [(s.item_id, s.source) for s in hybrid.recommend("b", 1, {"phone"}, now=1e9 + 3)]
[('case', 'item_cf')]
>>> no_cf.name, [s.source for s in no_cf.recommend("b", 1, {"phone"}, now=1e9 + 3)]
('hybrid-item_cf', ['user_cf'])
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace

from models.blendlearn import BlendLearner
from models.evaluation import Scored
from models.events import ITEM_TYPES, Event
from models.hybrid import HybridRecommender
from models.recommend import Blended, Scores, Source, blend_pools


class AblatedHybrid:
    """``parent`` without ``off``. Replay it after its parent: it reads the parent's request."""

    def __init__(self, parent: HybridRecommender, off: Source) -> None:
        self.parent = parent
        self.off = off
        self.name = f"{parent.name}-{off.value}"
        knobs = parent.knobs
        self.blend = (
            BlendLearner({s: w for s, w in knobs.blend.weights.items() if s is not off})
            if knobs is not None
            else None
        )
        self._fixed = {s: w for s, w in parent.params.source_weights if s is not off}
        self._choices: dict[str, Scores] = {}
        self._last: tuple[str, float, Blended] | None = None

    def learn(self, event: Event) -> None:
        self._last = None
        item = event.item_id
        if self.blend is None or item is None or event.type not in ITEM_TYPES:
            return
        chosen = self._choices.pop(event.user_id, None)
        if chosen is not None and self.parent.base.state.params.weight(event.type) > 0:
            self.blend.observe(chosen, item)

    def _blended(self, user_id: str, now: float) -> Blended:
        last = self._last
        if last is not None and last[0] == user_id and last[1] == now:
            return last[2]
        request = self.parent.request
        if request is None or request.user_id != user_id or request.now != now:
            raise RuntimeError("an ablation must be asked right after its parent hybrid")
        pools = {s: p for s, p in request.pools.items() if s is not self.off}
        weights = self._fixed if self.blend is None else self.blend.weights
        blended = blend_pools(pools, weights, len(request.view.recent))
        self._last = (user_id, now, blended)
        return blended

    def recommend(
        self, user_id: str, k: int, exclude: AbstractSet[str], now: float
    ) -> list[Scored]:
        blended = self._blended(user_id, now)
        request = self.parent.request
        assert request is not None
        if self.blend is not None:
            self._choices[user_id] = blended.scores()
        weights = self._fixed if self.blend is None else self.blend.weights
        params = replace(self.parent.params_for(k), source_weights=tuple(weights.items()))
        pools = dict(blended.pools)
        return self.parent.assemble(request, pools, blended, params)

    def candidate_scores(self, user_id: str, item_ids: Sequence[str], now: float) -> list[float]:
        request = self.parent.request
        assert request is not None
        return self.parent.scores_of(request.view, self._blended(user_id, now), item_ids, now)
