"""Every atomic step the learner takes touches one Redis Cluster slot (issue 10, item 10).

The learner learns a simulated stream from every source, refreshes pools, takes erasures'
withdrawals out of its popularity, and the sources and the learner's state erase two users,
all under ``MONITOR`` (tests/slots.py): each script and ``MULTI`` Redis ran is checked by the
keys it really touched. :data:`SPANNING` names the steps that still span slots (none since the
learner's steps were done, docs/cluster.md); the test fails when one of them no longer does,
so the list only ever shrinks.
"""

from __future__ import annotations

from importlib import resources

import redis.asyncio as aioredis
from redis.crc import key_slot

from models.content import CatalogRecord
from models.simulator import generate_events, generate_world
from streams.config import Settings
from streams.keys import Keys
from streams.metrics import WorkerMetrics
from streams.pipeline import InboundRecord
from streams.runtime import learner_steps, pools
from streams.runtime.learner import Learner
from streams.runtime.learner_state import LearnerState
from streams.runtime.worker import state_params
from streams.sources.content import RedisContent
from streams.sources.factory import build_sources
from streams.sources.handoff import script_text
from streams.store import RedisStore
from tests.conftest import TEST_REDIS_DB
from tests.slots import Step, script_sha, watched_steps

T0 = 1_796_000_000.0

#: What still spans slots, by step (docs/cluster.md, "What spanned slots").
SPANNING: set[str] = set()


def _names() -> dict[str, str]:
    """Each script the learner runs, by the SHA Redis knows it by."""
    lua = resources.files("streams").joinpath("lua")
    texts = {
        "state.lua": lua.joinpath("state.lua").read_text(),
        "learner shared step": learner_steps._SHARED.source,
        "learner partition step": learner_steps._PARTITION.source,
        "pools": pools._SET_UNLESS_ERASED.source,
        "handoff.lua": script_text(),
        "handoff.lua with itemcf.lua": script_text("itemcf.lua"),
    }
    return {script_sha(text): name for name, text in texts.items()}


def _name(step: Step, keys: Keys, names: dict[str, str]) -> str:
    """A script by its name; a transaction by the key families it touched."""
    verb = step.opened_by[0].upper()
    if verb == b"EVALSHA":
        return names.get(step.opened_by[1].decode(), step.name)
    if verb == b"EVAL":
        return names.get(script_sha(step.opened_by[1].decode()), step.name)
    fields = {keys.parse(k.decode())[2] for k in step.keys}
    return "MULTI " + ",".join(sorted(f.replace("erased", "x") for f in fields))


async def test_every_step_the_learner_takes_is_one_slot(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    keys = Keys()
    world = generate_world(seed=3, users=40, items=60)
    events = list(generate_events(world, seed=3, count=600, start_ts=T0))
    store = RedisStore(redis_client, state_params(settings), withdraw=True)
    await store.process_batch(events)  # the publish path's part, before the watch
    metrics = WorkerMetrics()
    sources, content = build_sources(redis_client, settings, store.params, metrics)
    assert isinstance(content, RedisContent)
    learner = Learner(
        settings, store, sources, LearnerState(redis_client), metrics, clock=lambda: T0 + 900
    )
    records = [
        InboundRecord(e.to_json(), e.user_id.encode(), "events", keys.partition_of(e.user_id),
                      n, e.ts)
        for n, e in enumerate(events)
    ]  # fmt: skip
    catalog = [CatalogRecord(i.item_id, i.title, i.category, i.brand) for i in world.items]
    erased = sorted({e.user_id for e in events})[:2]

    async def workload() -> None:
        await content.put_items(catalog)
        await learner.learn(records[:300])
        await learner.learn(records[300:])
        await store.erase_users(erased)
        await learner.sources.erase(erased)
        await learner.state.erase(erased)
        await learner.withdraw_idle()
        await content.delete_items([catalog[0].item_id])

    steps = await watched_steps(redis_client, TEST_REDIS_DB, workload)
    names = _names()
    spanning = {_name(s, keys, names) for s in steps if len(s.slots) > 1}
    learners = {
        "learner shared step",
        "learner partition step",
        "pools",
        "handoff.lua",
        "handoff.lua with itemcf.lua",
    }
    assert learners <= {_name(s, keys, names) for s in steps}
    assert spanning == SPANNING
    # The learner's scripts name a key of their slot, so a cluster client sends each there.
    for step in steps:
        if _name(step, keys, names) in learners:
            assert step.declared, _name(step, keys, names)
            assert {key_slot(k) for k in step.declared} <= step.slots
