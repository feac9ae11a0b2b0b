"""What one list's ranking costs in process: a synthetic user with 20 recent items of 50
neighbours each (heavier than the worker, which reads 20 of each list), four learnt pools of
50 candidates, 50 popular and 20 trending items, a category cap and an exploration slot;
1,000 users, the median of five passes, microseconds per list. No servers.
    usage: .venv/bin/python scripts/ranking-cost.py
"""

from __future__ import annotations

import random
import statistics
import time

from models.recommend import Ranking, RecommendParams, Source
from models.recommend.candidates import Pool, Reason
from models.state import PopularView, UserView

rng = random.Random(1)
ITEMS = [f"i{n}" for n in range(20_000)]
CATEGORIES = {item: f"c{rng.randrange(200)}" for item in ITEMS}
NEIGHBOURS = {
    item: tuple(sorted(((rng.choice(ITEMS), rng.random()) for _ in range(50)), key=lambda p: -p[1]))
    for item in ITEMS[:5_000]
}
PARAMS = RecommendParams(
    top_n=10,
    category_cap=2,
    explore_slots=1,
    source_weights=tuple(
        (source, weight)
        for source, weight in zip(
            (Source.ITEM_CF, Source.MF, Source.CONTENT, Source.USER_CF, Source.FBT, Source.SOCIAL),
            (1.0, 0.5, 0.3, 0.5, 0.4, 0.5),
            strict=True,
        )
    ),
)
POPULAR = PopularView(tuple((rng.choice(ITEMS), rng.random() * 100) for _ in range(50)), 0.0)
TRENDING = tuple((rng.choice(ITEMS), rng.random() * 10) for _ in range(20))


def user(n: int) -> tuple[UserView, dict[Source, Pool]]:
    recent = tuple((rng.choice(ITEMS[:5_000]), rng.random() * 3) for _ in range(20))
    view = UserView(
        f"u{n}",
        recent,
        {item: NEIGHBOURS[item] for item, _ in recent},
        frozenset(item for item, _ in recent),
        frozenset(),
        frozenset(),
    )
    learnt: dict[Source, Pool] = {
        source: {
            rng.choice(ITEMS): (rng.random(), (Reason(rng.choice(ITEMS), 0.1),)) for _ in range(50)
        }
        for source in (Source.MF, Source.CONTENT, Source.USER_CF, Source.FBT)
    }
    return view, learnt


def one_pass(users: list[tuple[UserView, dict[Source, Pool]]]) -> float:
    began = time.perf_counter()
    for view, learnt in users:
        ranking = Ranking(view, POPULAR, PARAMS, now=0.0, trending=TRENDING, extra=learnt)
        ranking.choose({item: CATEGORIES[item] for item in ranking.capped_items()})
    return (time.perf_counter() - began) / len(users) * 1e6


if __name__ == "__main__":
    users = [user(n) for n in range(1_000)]
    one_pass(users)  # warm
    print(f"{statistics.median(one_pass(users) for _ in range(5)):.0f} µs per list")
