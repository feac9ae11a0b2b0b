"""A deterministic synthetic social-commerce world and the event stream its shoppers produce.

Everything is drawn from ``random.Random`` instances seeded from the caller's seed (never the
global generator), so the same seed, sizes and start time give a byte-identical stream.

The world (:func:`generate_world`) has a catalogue of items in ~20 leaf categories under six
departments, brands per category, merchants selling in 1-3 categories, prices with a per-category
spread, English titles (and some Chinese ones), Zipf-like item popularity within each category,
users with a few favourite categories, and a follow graph grown by preferential attachment so a
few influencers gather many followers.

The stream (:func:`generate_events`) interleaves:

* shopping sessions: views mostly in the user's favourite categories, with a funnel of roughly
  view 100 → cart 8 → purchase 3, likes, occasional hides (negative feedback), and carts in one
  category pulling the next view towards a complementary one (phone → phone case), so checkouts
  hold co-purchased pairs an item-item recommender can find;
* shares to one of the sharer's followers, some of whom later open the item, buy it or share it
  on again (cascades);
* follow / unfollow events that keep evolving the graph;
* live streams hosted by merchants or influencers: bursts of views, likes, carts and purchases
  on the featured item, all carrying the stream's ``stream_id``.

>>> world = generate_world(seed=1, users=50, items=200)
>>> len(world.items), len(world.users), len(world.categories)
(200, 50, 20)
>>> events = list(generate_events(world, seed=1, count=500, start_ts=1_700_000_000.0))
>>> events[0].event_id, events[-1].event_id
('sim-1-0', 'sim-1-499')
>>> all(a.ts <= b.ts for a, b in zip(events, events[1:]))
True
>>> again = list(generate_events(world, seed=1, count=500, start_ts=1_700_000_000.0))
>>> [e.to_json() for e in again] == [e.to_json() for e in events]
True
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import orjson

from models.events import Event, EventType

#: Default simulated start time (2023-11-14T22:13:20Z): fixed, so streams are reproducible.
DEFAULT_START_TS: Final = 1_700_000_000.0

# ------------------------------------------------------------------------------------------------
# Catalogue vocabulary
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CategorySpec:
    """Vocabulary and economics of one leaf category (static data, not randomised)."""

    department: str
    slug: str
    name: str
    weight: float  # share of catalogue and of browsing
    price_median: float
    price_sigma: float  # log-normal spread
    nouns: tuple[tuple[str, str], ...]  # (English, Chinese)
    qualifiers: tuple[str, ...]
    variants: tuple[str, ...]
    brands: tuple[tuple[str, str | None], ...]  # (English, Chinese name if any)
    tags: tuple[str, ...]
    complements: tuple[str, ...] = ()  # slugs bought together with this category


_COLOURS: Final = ("black", "white", "navy", "rose", "sage", "sand", "grey", "red")
_COLOUR_DEPARTMENTS: Final = frozenset({"fashion", "electronics", "sports"})

# fmt: off
# (a data table: one category per block reads better than one value per line)
_SPECS: Final[tuple[_CategorySpec, ...]] = (
    _CategorySpec(
        "electronics", "phones", "Phones", 1.4, 450.0, 0.5,
        (("Smartphone", "智能手机"), ("5G Phone", "5G手机")),
        ("Pro", "Lite", "Ultra", "Max", "Mini", "Plus"),
        ("128GB", "256GB", "512GB"),
        (("Apple", None), ("Samsung", None), ("Huawei", "华为"), ("Xiaomi", "小米"),
         ("OPPO", None), ("Google", None), ("OnePlus", None)),
        ("5g", "dual-sim", "oled", "fast-charging"),
        ("phone-cases", "chargers", "headphones"),
    ),
    _CategorySpec(
        "electronics", "phone-cases", "Phone Cases", 1.0, 15.0, 0.4,
        (("Phone Case", "手机壳"), ("MagSafe Case", "磁吸手机壳")),
        ("Clear", "Rugged", "Slim", "Leather", "Silicone"),
        ("for 6.1-inch", "for 6.7-inch"),
        (("Spigen", None), ("OtterBox", None), ("ESR", None), ("Casetify", None),
         ("Baseus", "倍思")),
        ("shockproof", "magsafe", "slim"),
        ("phones",),
    ),
    _CategorySpec(
        "electronics", "headphones", "Headphones", 1.1, 80.0, 0.7,
        (("Wireless Earbuds", "无线耳机"), ("Over-Ear Headphones", "头戴式耳机")),
        ("Noise-Cancelling", "Sport", "Studio", "Bass"),
        ("Gen 2", "2025 Edition"),
        (("Sony", None), ("Bose", None), ("Sennheiser", None), ("JBL", None),
         ("Soundcore", None), ("Edifier", "漫步者")),
        ("wireless", "anc", "bluetooth"),
        ("phones",),
    ),
    _CategorySpec(
        "electronics", "chargers", "Chargers", 0.8, 22.0, 0.4,
        (("Fast Charger", "快充充电器"), ("Power Bank", "充电宝")),
        ("65W", "30W", "GaN", "Compact"),
        ("USB-C", "2-Port"),
        (("Anker", None), ("Baseus", "倍思"), ("Belkin", None), ("Ugreen", "绿联")),
        ("usb-c", "gan", "travel"),
        ("phones", "laptops"),
    ),
    _CategorySpec(
        "electronics", "laptops", "Laptops", 0.8, 950.0, 0.4,
        (("Laptop", "笔记本电脑"), ("Ultrabook", "轻薄本")),
        ("14-inch", "16-inch", "Gaming", "Air"),
        ("16GB RAM", "32GB RAM", "1TB SSD"),
        (("Lenovo", "联想"), ("Dell", None), ("HP", None), ("Apple", None), ("ASUS", None)),
        ("ssd", "backlit-keyboard", "lightweight"),
        ("chargers", "headphones"),
    ),
    _CategorySpec(
        "electronics", "smartwatches", "Smartwatches", 0.7, 220.0, 0.5,
        (("Smartwatch", "智能手表"), ("Fitness Watch", "运动手表")),
        ("GPS", "Active", "Classic", "Series 9"),
        ("41mm", "45mm"),
        (("Apple", None), ("Garmin", None), ("Huawei", "华为"), ("Amazfit", None),
         ("Samsung", None)),
        ("heart-rate", "gps", "waterproof"),
        ("chargers",),
    ),
    _CategorySpec(
        "fashion", "dresses", "Dresses", 1.5, 45.0, 0.5,
        (("Midi Dress", "连衣裙"), ("Wrap Dress", "裹身裙"), ("Maxi Dress", "长裙")),
        ("Floral", "Linen", "Satin", "Pleated", "Summer"),
        ("Size S", "Size M", "Size L"),
        (("Zara", None), ("H&M", None), ("Mango", None), ("Reformation", None),
         ("Uniqlo", None)),
        ("summer", "party", "office"),
        ("handbags", "sunglasses"),
    ),
    _CategorySpec(
        "fashion", "sneakers", "Sneakers", 1.4, 95.0, 0.4,
        (("Running Sneakers", "运动鞋"), ("Court Sneakers", "板鞋")),
        ("Air", "Retro", "Ultra", "Classic", "Trail"),
        ("EU 40", "EU 42", "EU 44"),
        (("Nike", None), ("Adidas", None), ("New Balance", None), ("Li-Ning", "李宁"),
         ("Anta", "安踏")),
        ("running", "streetwear", "breathable"),
        ("t-shirts", "jeans"),
    ),
    _CategorySpec(
        "fashion", "handbags", "Handbags", 0.9, 75.0, 0.7,
        (("Tote Bag", "手提包"), ("Crossbody Bag", "斜挎包")),
        ("Leather", "Quilted", "Mini", "Canvas"),
        ("",),
        (("Coach", None), ("Michael Kors", None), ("Kate Spade", None), ("Longchamp", None)),
        ("leather", "everyday", "gift"),
        ("dresses",),
    ),
    _CategorySpec(
        "fashion", "jeans", "Jeans", 1.0, 55.0, 0.35,
        (("Slim Jeans", "修身牛仔裤"), ("Straight Jeans", "直筒牛仔裤")),
        ("Stretch", "Vintage", "High-Rise", "Relaxed"),
        ("W30", "W32", "W34"),
        (("Levi's", None), ("Wrangler", None), ("Lee", None), ("Uniqlo", None)),
        ("denim", "casual"),
        ("t-shirts", "sneakers"),
    ),
    _CategorySpec(
        "fashion", "t-shirts", "T-Shirts", 1.2, 18.0, 0.4,
        (("Cotton T-Shirt", "纯棉T恤"), ("Graphic Tee", "印花T恤")),
        ("Oversized", "Basic", "Organic", "Crew-Neck"),
        ("Size M", "Size L", "2-Pack"),
        (("Uniqlo", None), ("Gap", None), ("H&M", None), ("Champion", None)),
        ("cotton", "casual", "basics"),
        ("jeans",),
    ),
    _CategorySpec(
        "fashion", "sunglasses", "Sunglasses", 0.6, 35.0, 0.8,
        (("Sunglasses", "太阳镜"), ("Aviator Sunglasses", "飞行员墨镜")),
        ("Polarized", "Round", "Cat-Eye", "Square"),
        ("UV400",),
        (("Ray-Ban", None), ("Oakley", None), ("Gentle Monster", None)),
        ("uv-protection", "summer"),
        ("dresses",),
    ),
    _CategorySpec(
        "beauty", "skincare", "Skincare", 1.3, 25.0, 0.6,
        (("Moisturizer", "面霜"), ("Vitamin C Serum", "精华液"), ("Cleanser", "洁面乳")),
        ("Hydrating", "Gentle", "Brightening", "Daily"),
        ("50ml", "100ml", "200ml"),
        (("CeraVe", None), ("La Roche-Posay", None), ("The Ordinary", None),
         ("Pechoin", "百雀羚"), ("Kiehl's", None)),
        ("sensitive-skin", "fragrance-free", "vegan"),
        ("makeup",),
    ),
    _CategorySpec(
        "beauty", "makeup", "Makeup", 1.2, 18.0, 0.5,
        (("Lipstick", "口红"), ("Foundation", "粉底液"), ("Mascara", "睫毛膏")),
        ("Matte", "Long-Wear", "Velvet", "Waterproof"),
        ("Shade 01", "Shade 03", "Shade 07"),
        (("Maybelline", None), ("L'Oréal", None), ("Perfect Diary", "完美日记"),
         ("Fenty Beauty", None), ("NARS", None)),
        ("cruelty-free", "long-lasting"),
        ("skincare",),
    ),
    _CategorySpec(
        "beauty", "fragrance", "Fragrance", 0.6, 70.0, 0.5,
        (("Eau de Parfum", "香水"), ("Eau de Toilette", "淡香水")),
        ("Floral", "Woody", "Citrus", "Amber"),
        ("50ml", "100ml"),
        (("Chanel", None), ("Dior", None), ("Jo Malone", None), ("Le Labo", None)),
        ("gift", "long-lasting"),
        (),
    ),
    _CategorySpec(
        "home", "cookware", "Cookware", 0.8, 55.0, 0.6,
        (("Dutch Oven", "铸铁锅"), ("Frying Pan", "炒锅"), ("Saucepan", "汤锅")),
        ("Cast-Iron", "Non-Stick", "Enamelled", "Stainless"),
        ("24cm", "28cm"),
        (("Le Creuset", None), ("Lodge", None), ("Tefal", None), ("Supor", "苏泊尔")),
        ("induction", "dishwasher-safe"),
        ("coffee",),
    ),
    _CategorySpec(
        "home", "coffee", "Coffee", 0.9, 14.0, 0.4,
        (("Coffee Beans", "咖啡豆"), ("Coffee Capsules", "咖啡胶囊")),
        ("Espresso", "Dark Roast", "Single-Origin", "Decaf"),
        ("250g", "1kg", "50-Pack"),
        (("Lavazza", None), ("Illy", None), ("Starbucks", None), ("Nespresso", None)),
        ("arabica", "fair-trade"),
        ("cookware",),
    ),
    _CategorySpec(
        "home", "bedding", "Bedding", 0.7, 65.0, 0.5,
        (("Duvet Cover", "被套"), ("Sheet Set", "床单套装")),
        ("Linen", "Percale", "Sateen", "Washed-Cotton"),
        ("Queen", "King"),
        (("Brooklinen", None), ("Parachute", None), ("IKEA", None), ("Muji", "无印良品")),
        ("breathable", "organic"),
        (),
    ),
    _CategorySpec(
        "sports", "yoga-mats", "Yoga Mats", 0.6, 32.0, 0.4,
        (("Yoga Mat", "瑜伽垫"),),
        ("Non-Slip", "Travel", "Thick", "Cork"),
        ("6mm", "4mm"),
        (("Lululemon", None), ("Manduka", None), ("Gaiam", None), ("Keep", "Keep")),
        ("non-slip", "eco"),
        ("water-bottles",),
    ),
    _CategorySpec(
        "sports", "water-bottles", "Water Bottles", 0.6, 22.0, 0.4,
        (("Water Bottle", "保温杯"), ("Insulated Tumbler", "保温杯")),
        ("Insulated", "Wide-Mouth", "Leakproof"),
        ("750ml", "1L"),
        (("Hydro Flask", None), ("Stanley", None), ("Nalgene", None), ("CamelBak", None)),
        ("bpa-free", "insulated"),
        ("yoga-mats",),
    ),
)

_MERCHANT_PREFIXES: Final = (
    "Bright", "Golden", "Urban", "Blue Harbor", "Maple", "Lucky Panda", "Jade", "Sunrise",
    "Silver Fox", "Northwind", "Red Lantern", "Cloud Nine", "Evergreen", "Little Tiger",
)
_MERCHANT_SUFFIXES: Final = ("Store", "Outlet", "Boutique", "Direct", "Trading Co.", "Shop")
# fmt: on

# ------------------------------------------------------------------------------------------------
# The world
# ------------------------------------------------------------------------------------------------


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


def _cumulative(weights: Sequence[float]) -> tuple[float, ...]:
    return tuple(itertools.accumulate(weights))


def _pick(rng: random.Random, cum: Sequence[float]) -> int:
    """Index drawn in proportion to the weights whose running sums are ``cum``."""
    return bisect.bisect_right(cum, rng.random() * cum[-1])


def _price(rng: random.Random, spec: _CategorySpec) -> float:
    """Log-normal around the category median, rounded to shop-style prices (x.99)."""
    raw = spec.price_median * math.exp(rng.gauss(0.0, spec.price_sigma))
    return round(raw, 2) if raw < 5 else float(max(1, round(raw))) - 0.01


def _title(rng: random.Random, spec: _CategorySpec, brand: tuple[str, str | None]) -> str:
    noun_en, noun_zh = rng.choice(spec.nouns)
    variant = rng.choice(spec.variants) if rng.random() < 0.7 else ""
    # Chinese titles mostly for brands with a Chinese name, as on cross-border marketplaces.
    if rng.random() < (0.3 if brand[1] else 0.03):
        parts = [brand[1] or brand[0], noun_zh, variant]
    else:
        parts = [brand[0], rng.choice(spec.qualifiers), noun_en, variant]
    return " ".join(p for p in parts if p)


def _tags(rng: random.Random, spec: _CategorySpec) -> tuple[str, ...]:
    tags = [spec.department, spec.slug, *rng.sample(spec.tags, k=min(2, len(spec.tags)))]
    if spec.department in _COLOUR_DEPARTMENTS and rng.random() < 0.6:
        tags.append(rng.choice(_COLOURS))
    return tuple(dict.fromkeys(tags))


def _merchants(rng: random.Random, count: int) -> list[Merchant]:
    """Each merchant's first category cycles through the leaves so every leaf has a seller;
    extra categories come mostly from the same department (a phone shop also sells cases)."""
    merchants: list[Merchant] = []
    for m in range(count):
        primary = _SPECS[m % len(_SPECS)]
        cats = [primary]
        for _ in range(rng.choice((0, 0, 1, 2))):
            pool = [s for s in _SPECS if s.department == primary.department]
            extra = rng.choice(pool if rng.random() < 0.75 else _SPECS)
            if extra not in cats:
                cats.append(extra)
        name = f"{rng.choice(_MERCHANT_PREFIXES)} {primary.name} {rng.choice(_MERCHANT_SUFFIXES)}"
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
    paths = [f"{s.department}/{s.slug}" for s in _SPECS]
    by_path = {p: i for i, p in enumerate(paths)}
    categories = tuple(
        Category(paths[i], s.name, s.department, tuple(f"{_dept(c)}/{c}" for c in s.complements))
        for i, s in enumerate(_SPECS)
    )

    merchants = _merchants(rng, max(len(_SPECS), items // 40))
    sellers: list[list[int]] = [[] for _ in _SPECS]
    for m, merchant in enumerate(merchants):
        for path in merchant.categories:
            sellers[by_path[path]].append(m)

    # Items: category by weight, then a seller, brand, title, price and tags.
    cat_cum = _cumulative([s.weight for s in _SPECS])
    item_cats = [_pick(rng, cat_cum) for _ in range(items)]
    catalogue: list[CatalogItem] = []
    for i, c in enumerate(item_cats):
        spec = _SPECS[c]
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

    # Zipf popularity within each category: a random rank order, weight 1 / rank^1.1.
    members: list[list[int]] = [[] for _ in _SPECS]
    for i, c in enumerate(item_cats):
        members[c].append(i)
    popularity = [0.0] * items
    for group in members:
        rng.shuffle(group)
        for rank, i in enumerate(group, start=1):
            popularity[i] = 1.0 / rank**1.1
    nonempty = [c for c in range(len(_SPECS)) if members[c]]

    # Users: 2-4 favourite categories with decreasing preference; heavy-tailed activity.
    sim_users: list[SimUser] = []
    user_favs: list[tuple[int, ...]] = []
    browse_weights = [_SPECS[c].weight for c in nonempty]
    browse_cum = _cumulative(browse_weights)
    for u in range(users):
        favs: list[int] = []
        wanted = min(rng.randint(2, 4), len(nonempty))
        for _ in range(12):  # bounded: with few categories, duplicates could repeat a while
            if len(favs) >= wanted:
                break
            c = nonempty[_pick(rng, browse_cum)]
            if c not in favs:
                favs.append(c)
        activity = min(20.0, rng.paretovariate(1.5))
        user_favs.append(tuple(favs))
        sim_users.append(SimUser(f"u{u}", tuple(paths[c] for c in favs), round(activity, 4)))

    following = _follow_graph(rng, users)
    follower_counts = [0] * users
    for fol in following:
        for v in fol:
            follower_counts[v] += 1
    ranked = sorted(range(users), key=lambda u: (-follower_counts[u], u))
    influencers = tuple(ranked[: max(1, users // 50)])

    def by_pop(group: Sequence[int]) -> tuple[int, ...]:
        return tuple(sorted(group, key=lambda i: (-popularity[i], i)))

    merchant_members: list[list[int]] = [[] for _ in merchants]
    merchant_no = {m.merchant_id: k for k, m in enumerate(merchants)}
    for i, item in enumerate(catalogue):
        merchant_members[merchant_no[item.merchant_id]].append(i)
    fans: list[list[int]] = [[] for _ in _SPECS]
    for u, favs_u in enumerate(user_favs):
        for c in favs_u:
            fans[c].append(u)

    index = _Index(
        cat_items=tuple(by_pop(g) for g in members),
        cat_cum=tuple(_cumulative([popularity[i] for i in by_pop(g)]) for g in members),
        browse_cats=tuple(nonempty),
        browse_cum=browse_cum,
        complements=tuple(
            tuple(by_path[p] for p in cat.complements if members[by_path[p]]) for cat in categories
        ),
        user_favs=tuple(user_favs),
        # Preference halves from one favourite to the next.
        user_fav_cum=tuple(_cumulative([0.5**k for k in range(len(f))]) for f in user_favs),
        activity_cum=_cumulative([u.activity for u in sim_users]),
        fans=tuple(tuple(f) for f in fans),
        merchant_items=tuple(by_pop(g) for g in merchant_members),
        item_category=tuple(item_cats),
    )
    return World(
        seed=seed,
        categories=categories,
        items=tuple(catalogue),
        merchants=tuple(merchants),
        users=tuple(sim_users),
        following=tuple(tuple(f) for f in following),
        influencers=influencers,
        popularity=tuple(popularity),
        _ix=index,
    )


def _dept(slug: str) -> str:
    return next(s.department for s in _SPECS if s.slug == slug)


# ------------------------------------------------------------------------------------------------
# The event stream
# ------------------------------------------------------------------------------------------------

# A simulated action before it gets an id and a timestamp: type, user, item, target, stream
# (indices; -1 = none). Tuples keep the hot loop cheap.
_Raw = tuple[EventType, int, int, int, str | None]

VIEW, LIKE, SHARE, CART, PURCHASE, HIDE, FOLLOW, UNFOLLOW = (
    EventType.VIEW,
    EventType.LIKE,
    EventType.SHARE,
    EventType.CART,
    EventType.PURCHASE,
    EventType.HIDE,
    EventType.FOLLOW,
    EventType.UNFOLLOW,
)

# Funnel probabilities per view, by how the shopper got to the item. Tuned so that over a
# whole stream views : carts : purchases ≈ 100 : 8 : 3 (tests check the band).
_NORMAL, _COMPLEMENT, _SHARED = 0, 1, 2
_P_HIDE: Final = 0.015
_P_LIKE: Final = (0.08, 0.10, 0.25)
_P_SHARE: Final = (0.015, 0.01, 0.06)  # doubled after a like
_P_CART: Final = (0.068, 0.22, 0.12)
_P_COMPLEMENT_NEXT: Final = 0.6  # after a cart, look at a complementary category next
_P_CHECKOUT: Final = 0.6  # a session with a cart ends in checkout...
_P_BUY_CARTED: Final = 0.7  # ...buying each carted item with this probability
_P_OPEN_SHARE: Final = 0.5  # a recipient opens a shared item at all

# Steps are event counts: delays are measured in "other events in between", so the stream's
# content is the same whatever the clock speed (mean_gap_s only scales the timestamps).
_MEAN_ACTION_DELAY: Final = 3.0  # view → like/cart of the same item
_MEAN_THINK_DELAY: Final = 25.0  # between two views of a session
_MEAN_SHARE_DELAY: Final = 400.0  # share → recipient opens it
_MEAN_BURST_GAP: Final = 60.0  # between two bursts of a live stream

# What a spawn (a step with nothing due) starts.
_P_STREAM_START: Final = 0.004
_MAX_LIVE: Final = 2
_P_FOLLOW: Final = 0.03
_P_UNFOLLOW: Final = 0.006


class _Activity:
    """Something in progress that emits one event each time it fires."""

    __slots__ = ()

    def fire(self, sim: _Sim, step: int) -> _Raw | None:  # pragma: no cover - abstract
        raise NotImplementedError


class _Session(_Activity):
    """A shopper browsing: views, reactions to each viewed item, and a checkout at the end."""

    __slots__ = ("cart", "forced", "last_cat", "next_cat", "queue", "user", "views_left")

    def __init__(self, user: int, views: int, forced: int = -1) -> None:
        self.user = user
        self.views_left = views
        self.forced = forced  # an item the session starts on (opened from a share)
        self.queue: deque[tuple[EventType, int]] = deque()
        self.cart: list[int] = []
        self.next_cat = -1
        self.last_cat = -1

    def fire(self, sim: _Sim, step: int) -> _Raw | None:
        if not self.queue:
            if self.forced >= 0 or self.views_left > 0:
                self._view(sim)
            elif self.cart:
                self._checkout(sim)
        if not self.queue:
            sim.end_session(self.user)
            return None
        kind, item = self.queue.popleft()
        mean = _MEAN_ACTION_DELAY if self.queue else _MEAN_THINK_DELAY
        sim.schedule(step, sim.delay(mean), self)
        if kind is SHARE:
            return sim.share(self.user, item, step)
        return (kind, self.user, item, -1, None)

    def _view(self, sim: _Sim) -> None:
        rng, ix = sim.rng, sim.ix
        if self.forced >= 0:
            item, ctx = self.forced, _SHARED
            self.forced = -1
        elif self.next_cat >= 0:
            item, ctx = sim.item_in(self.next_cat), _COMPLEMENT
            self.next_cat = -1
            self.views_left -= 1
        else:
            item, ctx = sim.item_in(self._category(sim)), _NORMAL
            self.views_left -= 1
        cat = ix.item_category[item]
        self.last_cat = cat
        queue = self.queue
        queue.append((VIEW, item))
        if rng.random() < _P_HIDE:
            queue.append((HIDE, item))
            return
        liked = rng.random() < _P_LIKE[ctx]
        if liked:
            queue.append((LIKE, item))
        if rng.random() < _P_SHARE[ctx] * (2 if liked else 1):
            queue.append((SHARE, item))
        if rng.random() < _P_CART[ctx]:
            queue.append((CART, item))
            self.cart.append(item)
            complements = ix.complements[cat]
            if complements and rng.random() < _P_COMPLEMENT_NEXT:
                self.next_cat = rng.choice(complements)
                self.views_left = max(self.views_left, 1)

    def _category(self, sim: _Sim) -> int:
        rng, ix = sim.rng, sim.ix
        r = rng.random()
        if self.last_cat >= 0 and r < 0.35:  # keep browsing the same shelf
            return self.last_cat
        favs = ix.user_favs[self.user]
        if favs and r < 0.88:
            return favs[_pick(rng, ix.user_fav_cum[self.user])]
        return ix.browse_cats[_pick(rng, ix.browse_cum)]

    def _checkout(self, sim: _Sim) -> None:
        rng = sim.rng
        if rng.random() < _P_CHECKOUT:
            for item in dict.fromkeys(self.cart):
                if rng.random() < _P_BUY_CARTED:
                    self.queue.append((PURCHASE, item))
        self.cart.clear()


class _LiveStream(_Activity):
    """A host's live stream: every so often a burst of viewers reacts to the featured item."""

    __slots__ = ("bursts_left", "cum", "host", "items", "pending", "stream_id", "viewers")

    def __init__(
        self, stream_id: str, host: int, items: Sequence[int], viewers: list[int], bursts: int
    ) -> None:
        self.stream_id = stream_id
        self.host = host  # user index of an influencer host, -1 for a merchant's own stream
        self.items = tuple(items)
        self.cum = _cumulative([1.0 / (k + 1) for k in range(len(self.items))])
        self.viewers = viewers
        self.bursts_left = bursts
        self.pending: deque[_Raw] = deque()

    def fire(self, sim: _Sim, step: int) -> _Raw | None:
        if not self.pending:
            if self.bursts_left <= 0:
                sim.live -= 1
                return None
            self.bursts_left -= 1
            self._burst(sim)
        raw = self.pending.popleft()
        # Delay 0 keeps the burst contiguous; the next burst comes after a pause.
        sim.schedule(step, 0 if self.pending else sim.delay(_MEAN_BURST_GAP), self)
        if raw[0] is FOLLOW and not sim.follow(raw[1], raw[3]):
            return None  # already following (e.g. followed elsewhere since the burst began)
        return raw

    def _burst(self, sim: _Sim) -> None:
        rng, sid = sim.rng, self.stream_id
        featured = self.items[_pick(rng, self.cum)]
        crowd = rng.sample(self.viewers, k=min(len(self.viewers), rng.randint(6, 25)))
        views: list[_Raw] = [(VIEW, v, featured, -1, sid) for v in crowd]
        likes: list[_Raw] = [(LIKE, v, featured, -1, sid) for v in crowd if rng.random() < 0.3]
        follows: list[_Raw] = []
        if self.host >= 0:
            follows = [
                (FOLLOW, v, -1, self.host, sid)
                for v in crowd
                if v != self.host and rng.random() < 0.04
            ]
        carts = [v for v in crowd if rng.random() < 0.12]
        buys = [v for v in carts if rng.random() < 0.5]  # flash deals convert well
        self.pending.extend(views)
        self.pending.extend(likes)
        self.pending.extend(follows)
        self.pending.extend((CART, v, featured, -1, sid) for v in carts)
        self.pending.extend((PURCHASE, v, featured, -1, sid) for v in buys)


class _Sim:
    """Mutable state of one stream: the evolving follow graph and the activity schedule."""

    def __init__(self, world: World, seed: int) -> None:
        self.world = world
        self.ix = world._ix
        self.seed = seed
        self.rng = random.Random(f"socialrec-events-{seed}")
        n = len(world.users)
        # dicts as insertion-ordered sets: O(1) add/remove and a reproducible iteration order.
        self.following: list[dict[int, None]] = [dict.fromkeys(f) for f in world.following]
        self.followers: list[dict[int, None]] = [{} for _ in range(n)]
        for u, fol in enumerate(world.following):
            for v in fol:
                self.followers[v][u] = None
        # Preferential-attachment pool for new follows (unfollows are not removed: cheap, and
        # popularity is sticky anyway).
        self.pa_pool: list[int] = list(range(n)) + [v for f in world.following for v in f]
        self.heap: list[tuple[int, int, _Activity]] = []
        self.seq = 0
        self.in_session = bytearray(n)
        self.live = 0
        self.streams = 0

    # --- scheduling -----------------------------------------------------------------------

    def schedule(self, step: int, delay: int, activity: _Activity) -> None:
        heapq.heappush(self.heap, (step + delay, self.seq, activity))
        self.seq += 1

    def delay(self, mean: float) -> int:
        return 1 + int(self.rng.expovariate(1.0 / mean))

    def next_raw(self, step: int) -> _Raw:
        """The event for this step: whatever is due, else something new starts."""
        heap = self.heap
        while True:
            if heap and heap[0][0] <= step:
                raw = heapq.heappop(heap)[2].fire(self, step)
            else:
                raw = self.spawn(step)
            if raw is not None:
                return raw

    def spawn(self, step: int) -> _Raw | None:
        rng = self.rng
        r = rng.random()
        if r < _P_STREAM_START:
            stream = self.start_stream() if self.live < _MAX_LIVE else None
            if stream is not None:
                return stream.fire(self, step)
        elif r < _P_STREAM_START + _P_FOLLOW:
            user = self.active_user()
            for _ in range(4):
                target = rng.choice(self.pa_pool)
                if self.follow(user, target):
                    self.pa_pool.append(target)
                    return (FOLLOW, user, -1, target, None)
        elif r < _P_STREAM_START + _P_FOLLOW + _P_UNFOLLOW:
            user = self.active_user()
            if self.following[user]:
                target = rng.choice(list(self.following[user]))
                del self.following[user][target]
                del self.followers[target][user]
                return (UNFOLLOW, user, -1, target, None)
        user = self.active_user()
        for _ in range(3):  # prefer someone not already mid-session
            if not self.in_session[user]:
                break
            user = self.active_user()
        return self.start_session(user, step, views=1 + int(rng.expovariate(1 / 5.0)))

    # --- world helpers --------------------------------------------------------------------

    def active_user(self) -> int:
        return _pick(self.rng, self.ix.activity_cum)

    def item_in(self, category: int) -> int:
        ix = self.ix
        return ix.cat_items[category][_pick(self.rng, ix.cat_cum[category])]

    def follow(self, user: int, target: int) -> bool:
        if user == target or target in self.following[user]:
            return False
        self.following[user][target] = None
        self.followers[target][user] = None
        return True

    def start_session(self, user: int, step: int, views: int, forced: int = -1) -> _Raw | None:
        self.in_session[user] = 1
        return _Session(user, views, forced).fire(self, step)

    def end_session(self, user: int) -> None:
        self.in_session[user] = 0

    def share(self, user: int, item: int, step: int) -> _Raw | None:
        """Share ``item`` with one of ``user``'s current followers; maybe they open it later."""
        followers = self.followers[user]
        if not followers:
            return None
        rng = self.rng
        target = rng.choice(list(followers))
        if rng.random() < _P_OPEN_SHARE:
            self.schedule(step, self.delay(_MEAN_SHARE_DELAY), _OpenShare(target, item))
        return (SHARE, user, item, target, None)

    def start_stream(self) -> _LiveStream | None:
        rng, ix, world = self.rng, self.ix, self.world
        if rng.random() < 0.6:  # a merchant selling its own catalogue
            m = rng.randrange(len(world.merchants))
            items = ix.merchant_items[m][:30]
            cats = [ix.item_category[i] for i in items]
            host = -1
            audience: list[int] = []
        else:  # an influencer featuring popular items from their favourite categories
            host = rng.choice(world.influencers)
            cats = list(ix.user_favs[host])
            items = tuple(i for c in cats for i in ix.cat_items[c][:8])
            audience = list(self.followers[host])
            audience = rng.sample(audience, k=min(len(audience), 120))
        if not items:
            return None
        for c in dict.fromkeys(cats):
            fans = ix.fans[c]
            audience.extend(rng.sample(fans, k=min(len(fans), 40)))
        audience.extend(self.active_user() for _ in range(10))
        viewers = list(dict.fromkeys(audience))
        self.live += 1
        self.streams += 1
        sid = f"live-{self.seed}-{self.streams}"
        return _LiveStream(sid, host, items, viewers, bursts=rng.randint(4, 12))


class _OpenShare(_Activity):
    """A share recipient getting round to the shared item: a short session that starts on it,
    with the usual funnel (including sharing it on: cascades) from there."""

    __slots__ = ("item", "recipient")

    def __init__(self, recipient: int, item: int) -> None:
        self.recipient, self.item = recipient, item

    def fire(self, sim: _Sim, step: int) -> _Raw | None:
        views = int(sim.rng.expovariate(1 / 2.0))
        return sim.start_session(self.recipient, step, views=views, forced=self.item)


def generate_events(
    world: World,
    seed: int,
    count: int | None,
    start_ts: float = DEFAULT_START_TS,
    mean_gap_s: float = 0.5,
    *,
    replay_graph: bool = False,
    id_prefix: str | None = None,
) -> Iterator[Event]:
    """Yield ``count`` events (forever if ``None``) in time order, from ``start_ts``.

    Gaps between events are exponential with mean ``mean_gap_s`` (a Poisson process; 0 puts
    every event at ``start_ts``). The clock has its own generator, so the events' content does
    not depend on ``mean_gap_s``: only their timestamps scale. Event ids are
    ``sim-{seed}-{n}``, or ``{id_prefix}{n}`` (a live run tags its ids so the worker's
    de-duplication does not swallow a re-run with the same seed). With ``replay_graph`` the
    stream starts with one ``follow`` event per edge of the world's initial graph, so a
    consumer can rebuild it.

    >>> w = generate_world(seed=2, users=30, items=100)
    >>> evs = list(generate_events(w, seed=2, count=3, start_ts=1_700_000_000.0, mean_gap_s=0))
    >>> [(e.event_id, e.ts) for e in evs]
    [('sim-2-0', 1700000000.0), ('sim-2-1', 1700000000.0), ('sim-2-2', 1700000000.0)]
    """
    if mean_gap_s < 0 or (count is not None and count < 0):
        raise ValueError("count and mean_gap_s must not be negative")
    sim = _Sim(world, seed)
    clock = random.Random(f"socialrec-clock-{seed}")
    rate = 1.0 / mean_gap_s if mean_gap_s > 0 else 0.0
    user_ids = [u.user_id for u in world.users]
    item_ids = [i.item_id for i in world.items]
    prefix = f"sim-{seed}-" if id_prefix is None else id_prefix
    graph: Iterator[_Raw] = iter(())
    if replay_graph:
        graph = ((FOLLOW, u, -1, v, None) for u, fol in enumerate(world.following) for v in fol)
    elapsed = 0.0
    steps = itertools.count() if count is None else range(count)
    step = 0  # simulation steps exclude the replayed graph, so replay doesn't shift content
    for n in steps:
        raw = next(graph, None)
        if raw is None:
            raw = sim.next_raw(step)
            step += 1
        kind, user, item, target, stream = raw
        yield Event(
            event_id=f"{prefix}{n}",
            type=kind,
            user_id=user_ids[user],
            ts=round(start_ts + elapsed, 3),
            item_id=item_ids[item] if item >= 0 else None,
            target_user_id=user_ids[target] if target >= 0 else None,
            stream_id=stream,
        )
        if rate:
            elapsed += clock.expovariate(rate)
