"""The worker's recommendation sources, configured from the settings.

The sizes come from :mod:`models.hybrid`, the in-process twin ``socialrec eval`` replays, so
the evaluated configuration is the one that runs.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from models.hybrid import (
    CANDIDATES_PER_SOURCE,
    MF_FACTORS,
    MF_NEGATIVES,
    MF_POOL,
    USERCF_ITEMS_PER_USER,
    USERCF_NEIGHBOUR_POOL,
    USERCF_USERS_PER_ITEM,
)
from models.state import StateParams
from streams.config import Settings
from streams.keys import Keys
from streams.metrics import WorkerMetrics
from streams.pipeline import recommend_params
from streams.sources import SourceModel, SourceSet
from streams.sources.content import RedisContent
from streams.sources.content_records import ContentParams
from streams.sources.fbt import RedisFBT
from streams.sources.followees import RedisFollowees
from streams.sources.itemcf import RedisItemCF
from streams.sources.mf import RedisMF
from streams.sources.usercf import RedisUserCF


def mf_source(client: aioredis.Redis, keys: Keys, state: StateParams) -> RedisMF:
    """The MF source as the learner runs it (also the chaos run's clean reference)."""
    return RedisMF(
        client,
        keys,
        factors=MF_FACTORS,
        negatives=MF_NEGATIVES,
        sampling="popularity",
        pool_size=MF_POOL,
        weights=dict(state.weights),
    )


def build_sources(
    client: aioredis.Redis,
    settings: Settings,
    state: StateParams,
    metrics: WorkerMetrics,
    keys: Keys | None = None,
) -> tuple[SourceSet, RedisContent | None]:
    """The sources ``settings.sources`` names, and the content source (the catalog feeds it)
    if it is one of them."""
    keys = keys or Keys()
    weights = dict(state.weights)
    content: RedisContent | None = None
    # Item-CF always learns: the publish path reads its neighbour lists for every list.
    models: list[SourceModel] = [RedisItemCF(client, keys, state)]
    for name in settings.sources:
        if name == "mf":
            models.append(mf_source(client, keys, state))
        elif name == "content":
            content = RedisContent(client, keys, ContentParams(weights=weights))
            models.append(content)
        elif name == "user_cf":
            models.append(
                RedisUserCF(
                    client,
                    keys,
                    weights=weights,
                    affinity_cap=state.affinity_cap,
                    items_per_user=USERCF_ITEMS_PER_USER,
                    users_per_item=USERCF_USERS_PER_ITEM,
                    # Rows read per user to find neighbours: the main cost of the source
                    # (100 cost 0.5 ms of Python per event in the pipeline; 30 a third).
                    neighbour_pool=USERCF_NEIGHBOUR_POOL,
                )
            )
        elif name == "fbt":
            models.append(RedisFBT(client, keys))
        elif name == "followees":
            # The half-life the worker's social proof decays with (eval's is learned).
            half_life_s = recommend_params(settings).social_half_life_s
            models.append(RedisFollowees(client, keys, weights=weights, half_life_s=half_life_s))
    return SourceSet(models, metrics, CANDIDATES_PER_SOURCE), content
