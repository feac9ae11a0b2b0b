"""Where the pipeline's records go out: Faust's producer, or a plain aiokafka one.

Both follow the pipeline's ``Publisher`` protocol (explicit keys, headers) and the same rule: a
send that fails because the broker is out is sent again until it is delivered
(streams/runtime/outage.py). The state it reports is already applied, so giving up would leave a
user without the list of an event that counted.

The hot path (``events`` → ``recommendations``) uses :class:`KafkaPublisher`: Faust's
producer adds a buffer and a flush loop in front of aiokafka's, which the bench's forwarding
agent shows as several milliseconds of latency per send. The other agents (catalog, trending,
erasure) keep :class:`FaustPublisher`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import faust

from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.runtime.outage import wait_out
from streams.security import kafka_client_kwargs


class _RetryingPublisher:
    """``send`` enqueues at once and returns the delivery, re-sent until delivered."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    async def _enqueue(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> Awaitable[Any]:
        raise NotImplementedError

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> Awaitable[Any]:
        first = await self._enqueue(topic, key, value, headers)
        attempts = [first]

        async def delivered() -> Any:
            fut = attempts.pop() if attempts else await self._enqueue(topic, key, value, headers)
            return await fut

        return asyncio.ensure_future(wait_out(delivered, self.metrics, "publish"))


class FaustPublisher(_RetryingPublisher):
    """Sends through the Faust app's producer."""

    def __init__(self, app: faust.App, metrics: WorkerMetrics) -> None:
        super().__init__(metrics)
        self.app = app

    async def _enqueue(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> Awaitable[Any]:
        fut: Awaitable[Any] = await self.app.producer.send(
            topic, key, value, partition=None, timestamp=None, headers=headers or None
        )
        return fut


class KafkaPublisher(_RetryingPublisher):
    """Sends through its own aiokafka producer, started at the first send (whichever agent
    sends first) and stopped by :meth:`stop`."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics) -> None:
        super().__init__(metrics)
        self.settings = settings
        self._producer: Any = None
        self._starting = asyncio.Lock()

    async def _started(self) -> Any:
        if self._producer is None:
            async with self._starting:
                if self._producer is None:
                    from aiokafka import AIOKafkaProducer

                    producer = AIOKafkaProducer(
                        **kafka_client_kwargs(self.settings),
                        client_id=f"{self.settings.app_id}-publisher",
                        # As the Faust app's producer (streams/runtime/worker.py faust_app); on a
                        # cluster also idempotent, so a retried send is never written twice.
                        acks=self.settings.producer_acks,
                        enable_idempotence=self.settings.cluster,
                        linger_ms=1,
                    )
                    await wait_out(producer.start, self.metrics, "producer start")
                    self._producer = producer
        return self._producer

    async def _enqueue(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> Awaitable[Any]:
        producer = await self._started()
        fut: Awaitable[Any] = await producer.send(topic, value, key=key, headers=headers or None)
        return fut

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
