"""The synthetic world assembled: the catalogue (:mod:`.catalogue`), users with a few
favourite categories, and a follow graph grown by preferential attachment so a few influencers
gather many followers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from models.simulator.catalogue import (
    by_popularity,
    category_path,
    draw_catalogue,
    draw_merchants,
    draw_popularity,
    merchant_items,
)
from models.simulator.vocabulary import SPECS
from models.simulator.world import Category, SimUser, World, WorldIndex, cumulative, pick


def generate_world(seed: int, users: int, items: int) -> World:
    """Build a world of ``users`` shoppers and ``items`` catalogue entries from ``seed``.

    >>> w = generate_world(seed=3, users=20, items=60)
    >>> w.items[0].item_id, w.users[0].user_id, w.merchants[0].merchant_id
    ('i0', 'u0', 'm0')
    >>> sorted({c.department for c in w.categories})
    ['beauty', 'electronics', 'fashion', 'home', 'sports']
    """
    if users < 2 or items < 1:
        raise ValueError("a world needs at least 2 users and 1 item")
    rng = random.Random(f"socialrec-world-{seed}")
    paths = [f"{s.department}/{s.slug}" for s in SPECS]
    by_path = {p: i for i, p in enumerate(paths)}
    categories = tuple(
        Category(paths[i], s.name, s.department, tuple(map(category_path, s.complements)))
        for i, s in enumerate(SPECS)
    )
    merchants = draw_merchants(rng, max(len(SPECS), items // 40))
    item_cats, catalogue = draw_catalogue(rng, items, paths, by_path, merchants)
    members, popularity = draw_popularity(rng, item_cats)
    nonempty = [c for c in range(len(SPECS)) if members[c]]
    browse_cum = cumulative([SPECS[c].weight for c in nonempty])
    sim_users, user_favs = _users(rng, users, paths, nonempty, browse_cum)
    following = _follow_graph(rng, users)
    index = WorldIndex(
        cat_items=tuple(by_popularity(g, popularity) for g in members),
        cat_cum=tuple(
            cumulative([popularity[i] for i in by_popularity(g, popularity)]) for g in members
        ),
        browse_cats=tuple(nonempty),
        browse_cum=browse_cum,
        complements=tuple(
            tuple(by_path[p] for p in cat.complements if members[by_path[p]]) for cat in categories
        ),
        user_favs=tuple(user_favs),
        # Preference halves from one favourite to the next.
        user_fav_cum=tuple(cumulative([0.5**k for k in range(len(f))]) for f in user_favs),
        activity_cum=cumulative([u.activity for u in sim_users]),
        fans=_fans(user_favs),
        merchant_items=merchant_items(merchants, catalogue, popularity),
        item_category=tuple(item_cats),
    )
    return World(
        seed=seed,
        categories=categories,
        items=tuple(catalogue),
        merchants=tuple(merchants),
        users=tuple(sim_users),
        following=tuple(tuple(f) for f in following),
        influencers=_influencers(following, users),
        popularity=tuple(popularity),
        _ix=index,
    )


def _users(
    rng: random.Random,
    users: int,
    paths: Sequence[str],
    nonempty: Sequence[int],
    browse_cum: Sequence[float],
) -> tuple[list[SimUser], list[tuple[int, ...]]]:
    """Shoppers with 2-4 favourite categories of decreasing preference and heavy-tailed
    activity, and their favourites as category indices."""
    sim_users: list[SimUser] = []
    user_favs: list[tuple[int, ...]] = []
    for u in range(users):
        favs: list[int] = []
        wanted = min(rng.randint(2, 4), len(nonempty))
        for _ in range(12):  # bounded: with few categories, duplicates could repeat a while
            if len(favs) >= wanted:
                break
            c = nonempty[pick(rng, browse_cum)]
            if c not in favs:
                favs.append(c)
        activity = min(20.0, rng.paretovariate(1.5))
        user_favs.append(tuple(favs))
        sim_users.append(SimUser(f"u{u}", tuple(paths[c] for c in favs), round(activity, 4)))
    return sim_users, user_favs


def _follow_graph(rng: random.Random, users: int) -> list[list[int]]:
    """Preferential attachment: joiners follow existing users in proportion to followers + 1,
    and some follow back. A few early, lucky users end up as influencers."""
    order = list(range(users))
    rng.shuffle(order)  # so influencers are not simply the lowest user ids
    following: list[list[int]] = [[] for _ in range(users)]
    pool: list[int] = []  # each user once, plus once per follower they have
    for k, u in enumerate(order):
        wanted = min(k, 1 + int(rng.expovariate(1 / 3.0)))
        chosen: set[int] = set()
        for _ in range(wanted * 4):
            if len(chosen) >= wanted:
                break
            chosen.add(rng.choice(pool))
        for v in sorted(chosen):
            following[u].append(v)
            pool.append(v)
            if rng.random() < 0.25:  # follow-back between peers
                following[v].append(u)
                pool.append(u)
        pool.append(u)
    return following


def _influencers(following: Sequence[Sequence[int]], users: int) -> tuple[int, ...]:
    """The users with the most followers (1 in 50, at least one), most followed first."""
    follower_counts = [0] * users
    for fol in following:
        for v in fol:
            follower_counts[v] += 1
    ranked = sorted(range(users), key=lambda u: (-follower_counts[u], u))
    return tuple(ranked[: max(1, users // 50)])


def _fans(user_favs: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """Per category, the users who have it as a favourite."""
    fans: list[list[int]] = [[] for _ in SPECS]
    for u, favs_u in enumerate(user_favs):
        for c in favs_u:
            fans[c].append(u)
    return tuple(tuple(f) for f in fans)
