"""What item-CF's pool costs per list by the size of the user's history, summed in a loop
(`looped_pool`) and by numpy (`summed_pool`), and as `item_cf_pool` chooses between them:
200 synthetic users per size (recent items × neighbours per list, coded as the worker's cache
hands them over), the best of five passes, microseconds per list. No servers.
    usage: .venv/bin/python scripts/itemcf-cost.py
"""

from __future__ import annotations

import random
import timeit
from collections.abc import Callable
from typing import Any

from models.codes import Codes
from models.recommend import Pool
from models.recommend.itemcf import NeighbourList, item_cf_pool, looped_pool, summed_pool
from models.state import UserView

rng = random.Random(1)
ITEMS = [f"i{n}" for n in range(2_000)]


def views(recent: int, neighbours: int) -> list[UserView]:
    table = Codes()
    lists = {
        item: NeighbourList(
            sorted(
                ((rng.choice(ITEMS), rng.random()) for _ in range(neighbours)), key=lambda p: -p[1]
            ),
            table,
        )
        for item in ITEMS[:500]
    }
    found = []
    for n in range(200):
        items = tuple((rng.choice(ITEMS[:500]), rng.random() * 3) for _ in range(recent))
        found.append(
            UserView(
                f"u{n}",
                items,
                {i: lists[i] for i, _ in items},
                frozenset(),
                frozenset(),
                frozenset(),
            )
        )
    return found


def cost(pool: Callable[[Any], Pool], inputs: list[Any]) -> float:
    best = min(timeit.repeat(lambda: [pool(i) for i in inputs], number=5, repeat=5))
    return best / 5 / len(inputs) * 1e6


if __name__ == "__main__":
    print("recent × neighbours   looped   summed   item_cf_pool  (µs per list)")
    for recent, neighbours in ((3, 5), (5, 10), (10, 20), (10, 50), (20, 50)):
        users = views(recent, neighbours)
        sources = [[(j, a, u.neighbours[j]) for j, a in u.recent] for u in users]
        looped = cost(lambda s: looped_pool(s, 50), sources)
        summed = cost(lambda s: summed_pool(s, 50), sources)
        chosen = cost(lambda u: item_cf_pool(u, 50), users)
        print(f"{recent:>6} × {neighbours:<3}         {looped:7.0f}  {summed:7.0f}  {chosen:10.0f}")
