"""Every process forgets an erased user's in-memory state, whichever worker honoured the request.

An erasure request is consumed by one worker of the group (streams/runtime/privacy.py). That worker
erases Redis, the sources and its own memory; but every worker keeps some memory per user (the
last list shown to each user for the live hit rate, the candidates of that list for the blend
learner) and every learner remembers whom it refreshed or put off (streams/runtime/refresh.py). So
the honouring worker also broadcasts the erasure on ``privacy.forget``, and each worker and each
learner reads every record of that topic with a consumer of its own (no consumer group, from
the latest offset: memory does not survive a restart, so there is nothing older to forget).

The broadcast carries each user's erasure digest (:func:`streams.keys.erasure_digest`, the
same anonymous mark Redis keeps), never the user id: a reader finds the users it holds by
digesting the ids it holds (:func:`marked`), a few turns of the event loop.

>>> body = forget_message(["zoe"])
>>> body
b'{"erased":["ca6c4699561f3b2b206ebf27cbdb2cf5"]}'
>>> asyncio.run(marked(["ann", "zoe"], digests_of(body)))
['zoe']
>>> digests_of(b"not json"), digests_of(b'{"erased": [1]}')
(set(), set())
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final

import orjson

from streams.config import Settings
from streams.keys import erasure_digest
from streams.metrics import WorkerMetrics
from streams.security import kafka_client_kwargs

log = logging.getLogger(__name__)

#: The broadcast topic (topics.yaml): one record per erasure batch.
FORGET_TOPIC: Final = "privacy.forget"
#: How long a read waits for a record before it looks for a stop.
POLL_MS: Final = 500
#: Users digested between two turns of the event loop (about 5 ms).
DIGESTS_PER_TURN: Final = 2000
#: Before reading again after the broker failed a read.
RETRY_S: Final = 1.0


def forget_message(user_ids: Iterable[str]) -> bytes:
    """The broadcast of one erasure batch: the users' digests, never their ids."""
    return orjson.dumps({"erased": [erasure_digest(u) for u in user_ids]})


def digests_of(raw: bytes | None) -> set[str]:
    """The digests a broadcast names (none for a record that is not one: only workers write
    the topic, so a bad record is a bug; it names nobody, and is skipped)."""
    try:
        body = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return set()
    erased = body.get("erased") if isinstance(body, dict) else None
    if not isinstance(erased, list) or not all(isinstance(d, str) for d in erased):
        return set()
    return set(erased)


async def marked(user_ids: Iterable[str], digests: AbstractSet[str]) -> list[str]:
    """The users among ``user_ids`` whose digest is one of ``digests``. Digesting is some
    2.5 µs a user (0.28 s for the 110,000 a worker may hold), so it yields to the event loop
    every :data:`DIGESTS_PER_TURN` users: the batches go on meanwhile."""
    found: list[str] = []
    if not digests:
        return found
    users = list(dict.fromkeys(user_ids))
    for start in range(0, len(users), DIGESTS_PER_TURN):
        if start:
            await asyncio.sleep(0)
        chunk = users[start : start + DIGESTS_PER_TURN]
        found += [u for u in chunk if erasure_digest(u) in digests]
    return found


class ForgetFollower:
    """Reads every broadcast of ``privacy.forget`` and hands its digests to ``forget`` (which
    drops the process's memory of those users and returns how many it held).

    Run :meth:`run` as a task: it starts reading at the topic's end, waits out a broker that
    is away, and stops its consumer when cancelled. :meth:`start` returns once the positions
    are fixed, so a broadcast sent after it is read.
    """

    def __init__(
        self,
        settings: Settings,
        forget: Callable[[set[str]], Awaitable[int]],
        metrics: WorkerMetrics,
        client_id: str,
    ) -> None:
        self.settings = settings
        self.forget = forget
        self.metrics = metrics
        self.client_id = client_id
        self.consumer: Any = None
        self.started = asyncio.Event()

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        # No group_id: every reader gets every partition and commits nothing.
        consumer = AIOKafkaConsumer(
            self.settings.topic(FORGET_TOPIC),
            **kafka_client_kwargs(self.settings),
            group_id=None,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        try:
            await consumer.start()
            for tp in consumer.assignment():
                await consumer.position(tp)  # fixed now: the end as it is
        except BaseException:
            await consumer.stop()
            raise
        self.consumer = consumer
        self.started.set()

    async def poll(self, timeout_ms: int = POLL_MS) -> int:
        """Read what arrived (waiting up to ``timeout_ms``); returns the users forgotten."""
        found = await self.consumer.getmany(timeout_ms=timeout_ms)
        return await self.apply([r.value for batch in found.values() for r in batch])

    async def apply(self, values: Sequence[bytes | None]) -> int:
        digests: set[str] = set()
        for value in values:
            digests |= digests_of(value)
        if not digests:
            return 0
        forgotten = await self.forget(digests)
        self.metrics.forgotten_users.inc(forgotten)
        return forgotten

    async def stop(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await consumer.stop()

    async def run(self) -> None:
        """Start, then read broadcasts until cancelled; never gives up on a broker outage."""
        try:
            while self.consumer is None:
                try:
                    await self.start()
                except Exception as exc:  # the broker away at start: try again
                    log.warning("forget broadcast: cannot start (%s)", type(exc).__name__)
                    await asyncio.sleep(RETRY_S)
            while True:
                try:
                    await self.poll()
                except Exception as exc:  # keep reading: a lost reader would forget nothing
                    log.warning("forget broadcast: read failed (%s)", type(exc).__name__)
                    await asyncio.sleep(RETRY_S)
        finally:
            await self.stop()
