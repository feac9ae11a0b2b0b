"""The blend weights a worker learns from its own stream: the same
:class:`models.knobs.LearnedKnobs` eval replays, fed the same way (each list's candidates, then
the item the user acts on next), plus the per-user memory that needs and its Redis form.

Memory: the candidates' scores (:class:`models.recommend.Scores`) of each user's last
published list, for at most ``users`` users (the least recently shown are dropped first);
:meth:`WorkerKnobs.forget` erases users from it. Scores only, in dicts of floats, because the
collector walks what a worker keeps: 10,000 users' lists with their reasons were some 2
million objects and full passes of 1-2 s with the worker's loop stopped; as ``(score, ())``
pairs, about 100 a list for the young passes to walk (docs/live-path.md). The persisted
state holds per-source figures only, never a user id.

Sharing: every worker restores the one ``knobs`` key at start and writes its own learner
there about once a minute (last writer wins). Partitions are keyed by user, so each worker's
slice is a sample of the same stream and estimates the same weights; a restarted worker
continues from the freshest estimate any worker made.

>>> from models.recommend import Source, blend_pools
>>> start = {Source.ITEM_CF: 1.0, Source.MF: 1.0}
>>> knobs = WorkerKnobs(start, half_life_s=3600.0, users=1)
>>> pools = {Source.ITEM_CF: {"a": (1.0, ())}, Source.MF: {"b": (1.0, ())}}
>>> knobs.shown("ann", blend_pools(pools, knobs.weights))
>>> knobs.acted("ann", "b"), knobs.acted("ann", "b")  # one lesson per list
(True, False)
>>> knobs.shown("ann", blend_pools(pools, knobs.weights)); knobs.forget(["ann"])
1
>>> again = WorkerKnobs.restore(knobs.dump(), start, half_life_s=3600.0, users=1)
>>> again.learner.state() == knobs.learner.state()
True
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

import orjson

from models.blendlearn import BlendLearner
from models.knobs import LearnedKnobs
from models.recommend import Blended, Scores, Source


class WorkerKnobs:
    """The learned knobs and the candidates of each user's last list (bounded, erasable)."""

    def __init__(self, weights: Mapping[Source, float], *, half_life_s: float, users: int) -> None:
        self.knobs = LearnedKnobs.start(weights, half_life_s=half_life_s)
        self.users = users
        self._shown: OrderedDict[str, Scores] = OrderedDict()

    @property
    def learner(self) -> BlendLearner:
        return self.knobs.blend

    @property
    def weights(self) -> dict[Source, float]:
        return self.knobs.blend.weights

    def shown(self, user_id: str, blended: Blended) -> None:
        """A list built from ``blended`` was published to the user."""
        shown = self._shown
        shown[user_id] = blended.scores()
        shown.move_to_end(user_id)
        while len(shown) > self.users:
            shown.popitem(last=False)

    def acted(self, user_id: str, item_id: str) -> bool:
        """The user acted on ``item_id``: the blend learns from their last list (once); True
        if it learnt (some source had proposed the item)."""
        return self.learn(self.lesson(user_id), item_id)

    def lesson(self, user_id: str) -> Scores | None:
        """The candidates of the user's last list, taken (a list teaches once): taken before
        the user's next list replaces them, learnt from by :meth:`learn` when convenient."""
        return self._shown.pop(user_id, None)

    def learn(self, scores: Scores | None, item_id: str) -> bool:
        """Learn from a :meth:`lesson` and the item acted on; True if it learnt."""
        return scores is not None and self.knobs.blend.observe(scores, item_id)

    def forget(self, user_ids: Iterable[str]) -> int:
        """Erase these users' remembered candidates; how many there were."""
        return sum(self._shown.pop(user_id, None) is not None for user_id in user_ids)

    def remembered(self) -> int:
        return len(self._shown)

    def remembered_users(self) -> list[str]:
        """The users whose candidates are held (a copy)."""
        return list(self._shown)

    def dump(self) -> bytes:
        """The learner's state as stored (per-source figures only)."""
        return orjson.dumps(self.knobs.blend.state())

    @classmethod
    def restore(
        cls, body: bytes, weights: Mapping[Source, float], *, half_life_s: float, users: int
    ) -> WorkerKnobs:
        """Knobs continuing from a stored :meth:`dump`; a source the stored state lacks (one
        configured since) starts from ``weights`` as it would have."""
        knobs = cls(weights, half_life_s=half_life_s, users=users)
        state = orjson.loads(body)
        start = {str(s): w for s, w in knobs.weights.items()}
        state["weights"] = {**start, **state["weights"]}
        knobs.knobs.blend = BlendLearner.restore(state)
        return knobs
