"""Scripts called by digest (streams/store/lua.py) on one Redis and on a Redis Cluster: loaded
where a server lacks them (a restart, a failover, a flush) and run again there only, routed by
their declared key, with error replies raised after every call ran."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from models.events import Event, EventType
from models.state import Outcome, StateParams
from streams.keys import Keys
from streams.store import RedisStore
from streams.store.lua import Lua, command, run

T0 = 1_700_000_000.0
KEYS = Keys()
#: Counts its runs in the slot of its declared key, so a run twice would show.
COUNT = Lua("return redis.call('INCR', KEYS[1])")


def _counted() -> list[str]:
    """A counter in each partition's slot."""
    return [KEYS.partition_stem(p) + "counted" for p in range(KEYS.partitions)]


async def _flush_scripts(client: Any, only_one: bool = False) -> None:
    """Forget every script, on every node (or on one master only)."""
    if isinstance(client, RedisCluster):
        masters = client.get_primaries()
        for node in masters[:1] if only_one else masters:
            await client.execute_command("SCRIPT FLUSH", target_nodes=node)
    else:
        await client.script_flush()


async def test_a_script_the_server_forgot_is_loaded_and_run_once(real_client: Any) -> None:
    keys = _counted()
    assert await run(real_client, [COUNT.call(k, []) for k in keys]) == [1] * len(keys)
    await _flush_scripts(real_client)
    assert await run(real_client, [COUNT.call(k, []) for k in keys]) == [2] * len(keys)
    assert await COUNT(real_client, keys[0], []) == 3


async def test_only_the_calls_that_found_no_script_run_again(
    redis_cluster_client: RedisCluster,
) -> None:
    """One master forgot (restarted, say): the calls routed to the others ran once."""
    keys = _counted()
    await run(redis_cluster_client, [COUNT.call(k, []) for k in keys])
    await _flush_scripts(redis_cluster_client, only_one=True)  # some partitions' master
    assert await run(redis_cluster_client, [COUNT.call(k, []) for k in keys]) == [2] * len(keys)


async def test_an_error_reply_is_raised_after_every_call_ran(real_client: Any) -> None:
    failing = Lua("return redis.error_reply('ERR refused on purpose')")
    key = _counted()[0]
    with pytest.raises(ResponseError, match="refused on purpose"):
        await run(real_client, [failing.call(key, []), command("SET", key, "after")])
    assert await real_client.get(key) == b"after"


async def test_the_state_step_goes_on_after_its_server_forgot_the_script(
    real_client: Any,
) -> None:
    store = RedisStore(real_client, StateParams())
    users = [f"u{n}" for n in range(12)]  # in several partitions
    first = [Event(f"a{n}", EventType.VIEW, u, T0, item_id="tv") for n, u in enumerate(users)]
    assert set((await store.process_batch(first)).outcomes) == {Outcome.APPLIED}
    await _flush_scripts(real_client)
    again = [Event(f"b{n}", EventType.LIKE, u, T0 + 1, item_id="tv") for n, u in enumerate(users)]
    result = await store.process_batch([*first, *again])
    assert result.outcomes == [Outcome.DUPLICATE] * 12 + [Outcome.APPLIED] * 12
    assert set(result.views) == set(users)


async def test_the_cluster_client_reads_keys_of_every_slot_at_once(
    redis_cluster_client: RedisCluster,
) -> None:
    """``MGET`` over users of every partition (refused by redis-py's cluster client as is)."""
    keys = _counted()
    for n, key in enumerate(keys):
        await redis_cluster_client.set(key, n)
    assert await redis_cluster_client.mget([*keys, "sr:absent"]) == [
        str(n).encode() for n in range(len(keys))
    ] + [None]
