"""What a list costs in process, step by step, on the simulator's world rather than a synthetic
one (scripts/ranking-cost.py): the hybrid learns EVENTS simulated events (2,000 users, 5,000
items), then for 424 recent users it times building the ranking (item-CF's pool and the
blend of every source), choosing and explaining the list (category cap 5, one exploration
slot), its JSON, and the blend learner's lesson from it. The best of seven passes,
microseconds per list. No servers; the same code the worker runs.
    usage: .venv/bin/python scripts/list-costs.py [EVENTS=30000]
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from models.blendlearn import BlendLearner
from models.hybrid import build_hybrid
from models.recommend import Ranking, RecommendParams, excluded_items
from models.simulator import generate_events, generate_world
from models.state import StateParams
from streams.pipeline.records import InboundRecord
from streams.pipeline.wire import recommendations_json

PARAMS = RecommendParams(category_cap=5, explore_slots=1)
PASSES = 7


def best_of(step: Callable[[Any], object], inputs: Sequence[Any]) -> float:
    """The fastest of :data:`PASSES` passes of ``step`` over ``inputs``, µs per input."""
    best = float("inf")
    for _ in range(PASSES):
        began = time.perf_counter()
        for one in inputs:
            step(one)
        best = min(best, time.perf_counter() - began)
    return best / len(inputs) * 1e6


def main(events: int) -> None:
    world = generate_world(1, users=2_000, items=5_000)
    stream = list(generate_events(world, seed=1, count=events, start_ts=1_700_000_000.0))
    hybrid = build_hybrid(StateParams(), PARAMS)
    for event in stream:
        hybrid.learn(event)
    now = stream[-1].ts
    users = list(dict.fromkeys(e.user_id for e in reversed(stream)))[:424]
    requests = []
    for user_id in users:
        view = hybrid.base.view_for(user_id, frozenset())
        learnt = hybrid.sources.pools(user_id, excluded_items(view, PARAMS), now)
        requests.append((view, learnt))
    popular = hybrid.base.popular_view()
    categories = {item.item_id: item.category for item in world.items}
    rng = random.Random(1)

    def build(request: tuple[Any, Any]) -> Ranking:
        view, learnt = request
        return Ranking(view, popular, PARAMS, now=now, extra=learnt)

    rankings = [build(r) for r in requests]
    lists = [r.choose(categories) for r in rankings]
    trigger = InboundRecord(b"{}", b"u", "events", 0, 0, now)
    lessons = [
        (r.blended.scores(), rng.choice(list(r.blended.totals)))
        for r in rankings
        if r.blended.totals
    ]
    learner = BlendLearner(dict(PARAMS.source_weights))
    print(f"{len(requests)} lists after {events:,} events, µs per list (best of {PASSES} passes):")
    print(f"  building the ranking       {best_of(build, requests):7.1f}")
    chosen = best_of(lambda ranking: ranking.choose(categories), rankings)
    print(f"  choosing and explaining    {chosen:7.1f}")
    json = best_of(lambda recs: recommendations_json(recs, trigger, "e", "v"), lists)
    print(f"  JSON                       {json:7.1f}")
    lesson = best_of(lambda one: learner.observe(*one), lessons)
    print(f"  blend learner's lesson     {lesson:7.1f}  (a random candidate acted on)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30_000)
