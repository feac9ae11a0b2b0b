"""The world's shop side: merchants selling in 1-3 categories, a catalogue in ~20 leaf
categories under six departments with brands, prices with a per-category spread, English titles
(and some Chinese ones) and tags, and Zipf-like item popularity within each category.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from models.simulator.vocabulary import (
    COLOUR_DEPARTMENTS,
    COLOURS,
    MERCHANT_PREFIXES,
    MERCHANT_SUFFIXES,
    SPECS,
    CategorySpec,
    department_of,
)
from models.simulator.world import CatalogItem, Merchant, cumulative, pick


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


def draw_merchants(rng: random.Random, count: int) -> list[Merchant]:
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


def category_path(slug: str) -> str:
    return f"{department_of(slug)}/{slug}"


def draw_catalogue(
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


def draw_popularity(
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


def by_popularity(group: Sequence[int], popularity: Sequence[float]) -> tuple[int, ...]:
    return tuple(sorted(group, key=lambda i: (-popularity[i], i)))


def merchant_items(
    merchants: Sequence[Merchant], catalogue: Sequence[CatalogItem], popularity: Sequence[float]
) -> tuple[tuple[int, ...], ...]:
    """Per merchant, its items in popularity order."""
    members: list[list[int]] = [[] for _ in merchants]
    merchant_no = {m.merchant_id: k for k, m in enumerate(merchants)}
    for i, item in enumerate(catalogue):
        members[merchant_no[item.merchant_id]].append(i)
    return tuple(by_popularity(g, popularity) for g in members)
