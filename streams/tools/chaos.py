"""``socialrec chaos``: a steady simulator stream through the real servers while a seeded
schedule breaks them, then checks that nothing was lost, doubled or dead-lettered.

The faults (each fired when the stream reaches its event, after the previous one recovered):

- ``worker_kill``: SIGKILL to the worker's process group (the worker and its learner child),
  then a new worker in the same consumer groups, as a supervisor would start one;
- ``redis_kill``: SIGKILL to Redis, then ``socialrec infra up redis`` (its append-only file
  is fsynced once a second, so it may come back a little older);
- ``broker_restart``: ``socialrec infra down kafka`` then ``up kafka``;
- ``redis_freeze``: SIGSTOP to Redis for ``freeze_s`` seconds, then SIGCONT.

Each fault's *recovery* is the time from the fault to the first list published for an event
sent after it: the path works again end to end. Its *outage* is how long the fault itself
lasted (until the server or worker was started again, or the freeze ended).

Events keep flowing while a fault lasts: the stream is sent in segments, one from each fault's
event to the next's, and a segment starts with its fault. Before the servers are broken the
run needs them started by ``socialrec infra`` (it must know their pids and start them again).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from streams.config import Settings
from streams.ops import infra
from streams.security import kafka_client_kwargs
from streams.tools.processes import ManagedProcess, metrics_url, worker_process

FAULT_KINDS: Final = ("worker_kill", "redis_kill", "broker_restart", "redis_freeze")
#: The issue's full run: three worker kills and one of each other fault.
FULL_FAULTS: Final = {"worker_kill": 3, "redis_kill": 1, "broker_restart": 1, "redis_freeze": 1}
ONE_OF_EACH: Final = dict.fromkeys(FAULT_KINDS, 1)
#: Faults land between these fractions of the stream, so the worker is busy before and after.
FIRST_AT, LAST_AT = 0.1, 0.75


class ChaosError(RuntimeError):
    """The run could not go on (a server not started by ``socialrec infra``, no recovery)."""


@dataclass(frozen=True)
class Plan:
    """What to send and what to break."""

    events: int = 100_000
    rate: float = 400.0
    seed: int = 1
    users: int = 500
    #: The catalogue; 0 = ``SOCIALREC_COOCCURRENCE_CAP``, so no co-occurrence row fills and
    #: item-CF's counts compare exactly (which pair a full row evicts depends on the order).
    items: int = 0
    freeze_s: float = 30.0
    faults: Mapping[str, int] = field(default_factory=lambda: dict(FULL_FAULTS))
    recover_timeout_s: float = 180.0


@dataclass(frozen=True)
class Fault:
    kind: str
    at: int  # the fault fires once this many events were sent


def schedule(plan: Plan) -> list[Fault]:
    """The faults in firing order: kinds shuffled by the seed, spread over the stream.

    >>> [(f.kind, f.at) for f in schedule(Plan(events=1000, faults=ONE_OF_EACH))]
    [('redis_freeze', 120), ('worker_kill', 302), ('broker_restart', 461), ('redis_kill', 640)]
    """
    rng = random.Random(plan.seed)
    kinds = [kind for kind in FAULT_KINDS for _ in range(plan.faults.get(kind, 0))]
    rng.shuffle(kinds)
    slot = (LAST_AT - FIRST_AT) * plan.events / max(1, len(kinds))
    return [
        Fault(kind, int(FIRST_AT * plan.events + slot * (n + rng.uniform(0.0, 0.5))))
        for n, kind in enumerate(kinds)
    ]


@dataclass
class Workers:
    """The worker under test, started again after each kill (same consumer groups)."""

    settings: Settings
    log_dir: Path
    current: ManagedProcess | None = None
    started: int = 0

    async def start(self) -> None:
        """Start a worker and wait until it answers (its preflight found Redis and Kafka)."""
        self.started += 1
        self.current = worker_process(self.settings, self.log_dir / f"worker-{self.started}.log")
        await self.current.start()
        await self.current.wait_http(metrics_url(self.settings))

    def check_alive(self) -> None:
        if self.current is not None and self.current.returncode is not None:
            raise ChaosError(
                f"the worker exited ({self.current.returncode}); see {self.current.log_path}"
            )

    async def stop(self) -> None:
        if self.current is not None:
            await self.current.stop()


def _pid(settings: Settings, service: str) -> int:
    pid = infra.status(settings, service)[0].pid
    if pid is None:
        raise ChaosError(f"{service} was not started by `socialrec infra up`: cannot break it")
    return pid


async def inject(fault: Fault, workers: Workers, plan: Plan) -> float:
    """Break what ``fault`` names and repair it as an operator would; returns its seconds."""
    settings, began = workers.settings, time.monotonic()
    if fault.kind == "worker_kill":
        assert workers.current is not None
        await workers.current.kill()
        await workers.start()
    elif fault.kind == "redis_kill":
        await asyncio.to_thread(infra.kill, settings, "redis")
        await asyncio.to_thread(infra.up, settings, "redis")
    elif fault.kind == "broker_restart":
        _pid(settings, "kafka")
        await asyncio.to_thread(infra.down, settings, "kafka")
        await asyncio.to_thread(infra.up, settings, "kafka")
    elif fault.kind == "redis_freeze":
        pid = _pid(settings, "redis")
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(plan.freeze_s)  # the fault itself: a server hung this long
        finally:
            os.kill(pid, signal.SIGCONT)
    else:
        raise ValueError(f"unknown fault {fault.kind!r}")
    return time.monotonic() - began


class ListWatcher:
    """Follows ``recommendations`` as it grows: which (user, trigger) lists exist, and when
    each list for an event of this run was published."""

    def __init__(self, settings: Settings, sent_at: Mapping[str, float]) -> None:
        self.settings, self.sent_at = settings, sent_at
        self.published: set[tuple[str, str]] = set()
        #: (published, its trigger event sent), wall clock, in the order read.
        self.times: list[tuple[float, float]] = []

    async def first_list(self, sent_after: float, published_after: float) -> float:
        """Wait for the first list for an event sent after ``sent_after`` that was published
        after ``published_after``; returns its publish time."""
        seen = 0
        while True:
            for published, sent in self.times[seen:]:
                if sent >= sent_after and published >= published_after:
                    return published
            seen = len(self.times)
            await asyncio.sleep(0.1)

    async def run(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError

        consumer = AIOKafkaConsumer(
            self.settings.topic("recommendations"),
            **kafka_client_kwargs(self.settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while not stop.is_set():
                try:
                    found = await consumer.getmany(timeout_ms=200)
                except KafkaError:  # the broker restarting: the consumer reconnects by itself
                    await asyncio.sleep(0.5)
                    continue
                for records in found.values():
                    for record in records:
                        self._note(record)
        finally:
            await consumer.stop()

    def _note(self, record: Any) -> None:
        if record.value is None:  # a tombstone (erasure): no list
            return
        trigger = str(orjson.loads(record.value)["trigger"]["event_id"])
        self.published.add((record.key.decode(), trigger))
        sent = self.sent_at.get(trigger)
        if sent is not None:
            self.times.append((record.timestamp / 1000.0, sent))


@contextlib.asynccontextmanager
async def servers_restored(settings: Settings) -> Any:
    """Whatever happens, Redis runs (not frozen) and Kafka answers afterwards."""
    try:
        yield
    finally:
        pid = infra.status(settings, "redis")[0].pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        await asyncio.to_thread(infra.up, settings, "kafka,redis")
