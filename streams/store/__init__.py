"""Where the recommender's state lives: one interface, two implementations.

:class:`RedisStore` (redis_store.py) is production: each micro-batch is one ``EVALSHA`` of
streams/lua/state.lua. :class:`MemoryStore` (memory.py) wraps the pure reference
(:class:`models.state.MemoryState`) for unit tests and offline evaluation. The rest, by
concern: the protocol, parameters and batch result (interface.py), offsets and published marks
(offsets.py), the erasure rule for events in flight (erasure.py), the script's arguments and replies
(script.py), the trending buckets' cache (trending_looks.py) and the snapshot (snapshot.py).
"""

from streams.store.erasure import in_flight
from streams.store.interface import (
    EXCLUSIONS_ONLY,
    BatchResult,
    ReadParams,
    Store,
    TrendingParams,
)
from streams.store.memory import MemoryStore
from streams.store.offsets import OffsetRange, Position, partition_number, step_rounds
from streams.store.redis_store import RedisStore
from streams.store.trending_looks import TRENDING_OPEN_BUCKETS

__all__ = [
    "EXCLUSIONS_ONLY",
    "TRENDING_OPEN_BUCKETS",
    "BatchResult",
    "MemoryStore",
    "OffsetRange",
    "Position",
    "ReadParams",
    "RedisStore",
    "Store",
    "TrendingParams",
    "in_flight",
    "partition_number",
    "step_rounds",
]
