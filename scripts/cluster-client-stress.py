"""What the cluster client lets out while a master dies under concurrent calls: starts the
project's own Redis Cluster (six nodes, from port 13800 up), runs TASKS tasks of the calls the
worker makes (pipelines of scripts and hash writes, `SET ... EX` pipelines as the lists' cache,
`MGET` across slots, single script calls) through `FailoverAwareCluster`, kills the master of
one slot after 2 s and goes on for 15 s. Per round: calls that succeeded, errors
`streams.runtime.outage.is_outage` calls outages (waited out by the worker; when the last one
was, after the kill; how many were a connection closed under the call, redis-py's bare
AttributeError), errors it does not (the worker dead-letters those: must be 0).
Then every error that was not an outage, by kind and where it was raised.
    usage: .venv/bin/python scripts/cluster-client-stress.py [ROUNDS=4] [TASKS=16]
"""

from __future__ import annotations

import asyncio
import collections
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.redis_cluster import redis_cluster_client_for
from streams.runtime.outage import is_outage
from streams.store.lua import Lua, run
from tests.conftest import kill_master_of, running_redis_cluster

SLOTS = 50
COUNT = Lua("redis.call('HINCRBY', KEYS[1], 'n', ARGV[1]) return 1")


class Tally:
    def __init__(self) -> None:
        self.ok = self.outages = 0
        self.last_outage = 0.0
        self.bugs: list[str] = []
        self.closed = 0  # connections closed under a call (outages, but the client's doing)


async def calls(client: object, task: int, stop: asyncio.Event, tally: Tally) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        tags = [f"{{p{(task * 7 + k + n) % SLOTS}}}" for k in range(20)]
        try:
            # The state step's shape: scripts and writes, raising the first error.
            step = client.pipeline(transaction=False)  # type: ignore[attr-defined]
            for k in range(6):
                step.execute_command("EVALSHA", COUNT.sha, 1, f"{tags[k]}:h", 1)
                step.hset(f"{tags[k]}:x", "a", n)
            await step.execute()
            if n % 4 == 0:  # the learner's: errors as replies, a lost script loaded again
                await run(client, [COUNT.call(f"{tags[k]}:h", [1]) for k in range(6)])
            if n % 2:  # the lists' cache
                cache = client.pipeline(transaction=False)  # type: ignore[attr-defined]
                for k in range(20):
                    cache.set(f"{tags[k]}:list", b"x" * 300, ex=600)
                await cache.execute()
            if n % 3 == 0:
                await client.mget([f"{tags[k]}:list" for k in range(10)])  # type: ignore[attr-defined]
            if n % 5 == 0:
                await COUNT(client, f"{tags[0]}:h", [1])
            tally.ok += 1
        except Exception as exc:
            tally.closed += isinstance(exc, AttributeError)
            if is_outage(exc):
                tally.outages += 1
                tally.last_outage = time.monotonic()
            else:
                tally.bugs.append("".join(traceback.format_exception(exc)))
            await asyncio.sleep(0.05)


async def main(rounds: int, tasks: int) -> None:
    bugs: list[str] = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as d, running_redis_cluster(Path(d), 13800) as s:
            client = redis_cluster_client_for(s)
            await client.initialize()
            for node in client.get_nodes():  # replicas too: the promoted one runs it at once
                await client.execute_command("SCRIPT", "LOAD", COUNT.source, target_nodes=node)
            tally, stop = Tally(), asyncio.Event()
            running = [asyncio.create_task(calls(client, t, stop, tally)) for t in range(tasks)]
            await asyncio.sleep(2)
            kill_master_of(s, client, "{p0}:h")
            killed = time.monotonic()
            await asyncio.sleep(15)
            stop.set()
            await asyncio.gather(*running)
            await client.aclose()
            recovered = max(0.0, tally.last_outage - killed)
            print(
                f"round {r}: {tally.ok} ok, {tally.outages} outages (the last {recovered:.1f} s "
                f"after the kill; {tally.closed} on a connection closed under the call), "
                f"{len(tally.bugs)} not outages",
                flush=True,
            )
            bugs += tally.bugs
    for text, n in collections.Counter(b.strip().splitlines()[-1] for b in bugs).most_common():
        print(n, text)
    for text, n in collections.Counter(b.strip().splitlines()[-3].strip() for b in bugs).items():
        print(n, "raised at", text)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [4, 16][len(args) :])))
