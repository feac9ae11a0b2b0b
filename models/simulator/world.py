"""The synthetic world: a catalogue in ~20 leaf categories under six departments, brands per
category, merchants selling in 1-3 categories, prices with a per-category spread, English titles
(and some Chinese ones), Zipf-like item popularity within each category, users with a few
favourite categories, and a follow graph grown by preferential attachment so a few influencers
gather many followers.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from models.simulator.vocabulary import (
    COLOUR_DEPARTMENTS,
    COLOURS,
    MERCHANT_PREFIXES,
    MERCHANT_SUFFIXES,
    SPECS,
    CategorySpec,
    department_of,
)


@dataclass(frozen=True, slots=True)
class Category:
    """A leaf of the category tree. ``path`` ("electronics/phones") is what items carry."""

    path: str
    name: str
    department: str
    complements: tuple[str, ...]  # paths of categories often bought together with this one


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """One catalogue entry, in the shape of the ``catalog`` topic.

    >>> item = CatalogItem("i1", "华为 智能手机 256GB", "electronics/phones", "Huawei", "m2",
    ...                    499.0, ("electronics", "phones"))
    >>> body = orjson.loads(item.to_json())
    >>> body["title"], body["price"], body["tags"]
    ('华为 智能手机 256GB', 499.0, ['electronics', 'phones'])
    """

    item_id: str
    title: str
    category: str
    brand: str
    merchant_id: str
    price: float
    tags: tuple[str, ...]

    def to_json(self) -> bytes:
        """The catalog topic's wire form (UTF-8 JSON)."""
        return orjson.dumps(
            {
                "item_id": self.item_id,
                "title": self.title,
                "category": self.category,
                "brand": self.brand,
                "merchant_id": self.merchant_id,
                "price": self.price,
                "tags": list(self.tags),
            }
        )


@dataclass(frozen=True, slots=True)
class Merchant:
    merchant_id: str
    name: str
    categories: tuple[str, ...]  # category paths, 1-3 of them


@dataclass(frozen=True, slots=True)
class SimUser:
    """A shopper. ``favourites`` are category paths, most preferred first."""

    user_id: str
    favourites: tuple[str, ...]
    activity: float  # relative session frequency (heavy-tailed: a few users shop a lot)


@dataclass(frozen=True, slots=True)
class _Index:
    """Integer-indexed lookups the event generator needs; derived from the public fields."""

    cat_items: tuple[tuple[int, ...], ...]  # per category, items in popularity order
    cat_cum: tuple[tuple[float, ...], ...]  # matching cumulative Zipf weights
    browse_cats: tuple[int, ...]  # non-empty categories
    browse_cum: tuple[float, ...]
    complements: tuple[tuple[int, ...], ...]  # per category, non-empty complements
    user_favs: tuple[tuple[int, ...], ...]
    user_fav_cum: tuple[tuple[float, ...], ...]
    activity_cum: tuple[float, ...]
    fans: tuple[tuple[int, ...], ...]  # per category, users who have it as a favourite
    merchant_items: tuple[tuple[int, ...], ...]  # popularity order
    item_category: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class World:
    """The synthetic world: catalogue, merchants, users and the initial follow graph.

    ``following[u]`` lists the indices (into ``users``) of the users that user ``u`` follows.
    ``popularity[i]`` is item ``i``'s relative weight within its category (Zipf).
    """

    seed: int
    categories: tuple[Category, ...]
    items: tuple[CatalogItem, ...]
    merchants: tuple[Merchant, ...]
    users: tuple[SimUser, ...]
    following: tuple[tuple[int, ...], ...]
    influencers: tuple[int, ...]  # user indices with the most followers
    popularity: tuple[float, ...]
    _ix: _Index = field(repr=False, compare=False)

    def followers_of(self, user_id: str) -> tuple[str, ...]:
        """Who follows ``user_id`` in the initial graph (events change it later)."""
        u = int(user_id[1:])
        return tuple(self.users[f].user_id for f, fol in enumerate(self.following) if u in fol)

    def following_of(self, user_id: str) -> tuple[str, ...]:
        return tuple(self.users[v].user_id for v in self.following[int(user_id[1:])])


def cumulative(weights: Sequence[float]) -> tuple[float, ...]:
    """Running sums of ``weights``, for :func:`pick`."""
    return tuple(itertools.accumulate(weights))


def pick(rng: random.Random, cum: Sequence[float]) -> int:
    """Index drawn in proportion to the weights whose running sums are ``cum``."""
    return bisect.bisect_right(cum, rng.random() * cum[-1])


def _price(rng: random.Random, spec: CategorySpec) -> float:
    """Log-normal around the category median, rounded to shop-style prices (x.99)."""
    raw = spec.price_median * math.exp(rng.gauss(0.0, spec.price_sigma))
    return round(raw, 2) if raw < 5 else float(max(1, round(raw))) - 0.01


def _title(rng: random.Random, spec: CategorySpec, brand: tuple[str, str | None]) -> str:
    noun_en, noun_zh = rng.choice(spec.nouns)
    variant = rng.choice(spec.variants) if rng.random() < 0.7 else ""
    # Chinese titles mostly for brands with a Chinese name, as on cross-border marketplaces.
    if rng.random() < (0.3 if brand[1] else 0.03):
        parts = [brand[1] or brand[0], noun_zh, variant]
    else:
        parts = [brand[0], rng.choice(spec.qualifiers), noun_en, variant]
    return " ".join(p for p in parts if p)


def _tags(rng: random.Random, spec: CategorySpec) -> tuple[str, ...]:
    tags = [spec.department, spec.slug, *rng.sample(spec.tags, k=min(2, len(spec.tags)))]
    if spec.department in COLOUR_DEPARTMENTS and rng.random() < 0.6:
        tags.append(rng.choice(COLOURS))
    return tuple(dict.fromkeys(tags))


def _merchants(rng: random.Random, count: int) -> list[Merchant]:
    """Each merchant's first category cycles through the leaves so every leaf has a seller;
    extra categories come mostly from the same department (a phone shop also sells cases)."""
    merchants: list[Merchant] = []
    for m in range(count):
        primary = SPECS[m % len(SPECS)]
        cats = [primary]
        for _ in range(rng.choice((0, 0, 1, 2))):
            pool = [s for s in SPECS if s.department == primary.department]
            extra = rng.choice(pool if rng.random() < 0.75 else SPECS)
            if extra not in cats:
                cats.append(extra)
        name = f"{rng.choice(MERCHANT_PREFIXES)} {primary.name} {rng.choice(MERCHANT_SUFFIXES)}"
        paths = tuple(f"{s.department}/{s.slug}" for s in cats)
        merchants.append(Merchant(f"m{m}", name, paths))
    return merchants


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
        Category(paths[i], s.name, s.department, tuple(map(_category_path, s.complements)))
        for i, s in enumerate(SPECS)
    )
    merchants = _merchants(rng, max(len(SPECS), items // 40))
    item_cats, catalogue = _catalogue(rng, items, paths, by_path, merchants)
    members, popularity = _popularity(rng, item_cats)
    nonempty = [c for c in range(len(SPECS)) if members[c]]
    browse_cum = cumulative([SPECS[c].weight for c in nonempty])
    sim_users, user_favs = _users(rng, users, paths, nonempty, browse_cum)
    following = _follow_graph(rng, users)
    index = _Index(
        cat_items=tuple(_by_popularity(g, popularity) for g in members),
        cat_cum=tuple(
            cumulative([popularity[i] for i in _by_popularity(g, popularity)]) for g in members
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
        merchant_items=_merchant_items(merchants, catalogue, popularity),
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


def _influencers(following: Sequence[Sequence[int]], users: int) -> tuple[int, ...]:
    """The users with the most followers (1 in 50, at least one), most followed first."""
    follower_counts = [0] * users
    for fol in following:
        for v in fol:
            follower_counts[v] += 1
    ranked = sorted(range(users), key=lambda u: (-follower_counts[u], u))
    return tuple(ranked[: max(1, users // 50)])


def _by_popularity(group: Sequence[int], popularity: Sequence[float]) -> tuple[int, ...]:
    return tuple(sorted(group, key=lambda i: (-popularity[i], i)))


def _fans(user_favs: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """Per category, the users who have it as a favourite."""
    fans: list[list[int]] = [[] for _ in SPECS]
    for u, favs_u in enumerate(user_favs):
        for c in favs_u:
            fans[c].append(u)
    return tuple(tuple(f) for f in fans)


def _merchant_items(
    merchants: Sequence[Merchant], catalogue: Sequence[CatalogItem], popularity: Sequence[float]
) -> tuple[tuple[int, ...], ...]:
    """Per merchant, its items in popularity order."""
    members: list[list[int]] = [[] for _ in merchants]
    merchant_no = {m.merchant_id: k for k, m in enumerate(merchants)}
    for i, item in enumerate(catalogue):
        members[merchant_no[item.merchant_id]].append(i)
    return tuple(_by_popularity(g, popularity) for g in members)


def _category_path(slug: str) -> str:
    return f"{department_of(slug)}/{slug}"


def _catalogue(
    rng: random.Random,
    items: int,
    paths: Sequence[str],
    by_path: dict[str, int],
    merchants: Sequence[Merchant],
) -> tuple[list[int], list[CatalogItem]]:
    """Each item's category (drawn by weight), and the items: a seller of that category, a
    brand, a title, a price and tags."""
    sellers: list[list[int]] = [[] for _ in SPECS]
    for m, merchant in enumerate(merchants):
        for path in merchant.categories:
            sellers[by_path[path]].append(m)
    cat_cum = cumulative([s.weight for s in SPECS])
    item_cats = [pick(rng, cat_cum) for _ in range(items)]
    catalogue: list[CatalogItem] = []
    for i, c in enumerate(item_cats):
        spec = SPECS[c]
        brand = rng.choice(spec.brands)
        catalogue.append(
            CatalogItem(
                item_id=f"i{i}",
                title=_title(rng, spec, brand),
                category=paths[c],
                brand=brand[0],
                merchant_id=merchants[rng.choice(sellers[c])].merchant_id,
                price=_price(rng, spec),
                tags=_tags(rng, spec),
            )
        )
    return item_cats, catalogue


def _popularity(
    rng: random.Random, item_cats: Sequence[int]
) -> tuple[list[list[int]], list[float]]:
    """Each category's items, and Zipf popularity within each category: a random rank order,
    weight 1 / rank^1.1."""
    members: list[list[int]] = [[] for _ in SPECS]
    for i, c in enumerate(item_cats):
        members[c].append(i)
    popularity = [0.0] * len(item_cats)
    for group in members:
        rng.shuffle(group)
        for rank, i in enumerate(group, start=1):
            popularity[i] = 1.0 / rank**1.1
    return members, popularity


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
