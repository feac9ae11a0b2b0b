"""A deterministic synthetic social-commerce world and the event stream its shoppers produce.

Everything is drawn from ``random.Random`` instances seeded from the caller's seed (never the
global generator), so the same seed, sizes and start time give a byte-identical stream. The
world is :func:`generate_world` (:mod:`.build`: its shape in :mod:`.world`, the shop side in
:mod:`.catalogue`, words from :mod:`.vocabulary`); the stream is :func:`generate_events`
(:mod:`.stream`, what fires in it in :mod:`.activities`).

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

from models.simulator.build import generate_world
from models.simulator.stream import DEFAULT_START_TS, generate_events
from models.simulator.world import CatalogItem, Category, Merchant, SimUser, World

__all__ = [
    "DEFAULT_START_TS",
    "CatalogItem",
    "Category",
    "Merchant",
    "SimUser",
    "World",
    "generate_events",
    "generate_world",
]
