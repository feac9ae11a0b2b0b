"""The benchmark's baselines: what Kafka alone and Faust alone cost on this machine.

Both copy every event to the output topic, batched like the worker (up to ``batch_max`` records
within ``batch_within_ms``), one send per record and one wait for the batch's futures, and put
the event id in a header so the bench can pair input and output:

* ``passthrough``: a raw aiokafka consumer and producer (the machine's line rate);
* ``faust-forward``: a Faust agent that only forwards (``take_events`` batches,
  ``app.producer.send``): the framework's own ceiling, with the worker's app settings.

Each runs in its own process (``python -m streams.tools.bench.baselines passthrough|faust-forward``)
and stops on SIGTERM. The gap between them and the worker is what socialrec's own work costs.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable
from typing import Any, Final

import orjson

from streams.config import Settings
from streams.security import kafka_client_kwargs

#: Header naming the event a baseline's output copies (the worker names it in its body).
EVENT_ID_HEADER: Final = "socialrec.event_id"

BASELINES: Final = ("passthrough", "faust-forward")
#: Every system the bench measures: the worker, then the baselines.
SYSTEMS: Final = ("worker", *BASELINES)


def event_id_header(value: bytes) -> list[tuple[str, bytes]]:
    """The trigger header for one event (only the id is parsed: the rest is Kafka's cost)."""
    return [(EVENT_ID_HEADER, orjson.loads(value)["event_id"].encode())]


async def passthrough(settings: Settings, stop: asyncio.Event) -> int:
    """Copy events with a raw aiokafka consumer and producer; return how many were copied."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        settings.topic("events"),
        **kafka_client_kwargs(settings),
        group_id=settings.app_id,
        client_id=f"{settings.app_id}-consumer",
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        **kafka_client_kwargs(settings),
        client_id=f"{settings.app_id}-producer",
        acks=1,
        linger_ms=1,  # as the worker's producer (streams/runtime/worker.py)
    )
    out = settings.topic("recommendations")
    copied = 0
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(
                timeout_ms=settings.batch_within_ms, max_records=settings.batch_max
            )
            pending: list[Awaitable[Any]] = []
            for records in batches.values():
                for record in records:
                    headers = event_id_header(record.value)
                    send = producer.send(out, key=record.key, value=record.value, headers=headers)
                    pending.append(await send)
            await asyncio.gather(*pending)
            copied += len(pending)
    finally:
        await consumer.stop()
        await producer.stop()
    return copied


def faust_forward_app(settings: Settings) -> Any:
    """A Faust app whose one agent forwards each event: the worker's app settings, no work."""
    import faust

    from streams.runtime.worker import faust_app

    app = faust_app(settings)
    events = app.topic(settings.topic("events"), key_type=bytes, value_type=bytes)
    out = settings.topic("recommendations")
    within = settings.batch_within_ms / 1000.0

    @app.agent(events, concurrency=1)
    async def forward(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_max, within=within):
            pending = []
            for event in batch:
                message = event.message
                pending.append(
                    await app.producer.send(
                        out,
                        message.key,
                        message.value,
                        partition=None,
                        timestamp=None,
                        headers=event_id_header(message.value),
                    )
                )
            await asyncio.gather(*pending)

    assert isinstance(app, faust.App)
    return app


def _run(which: str) -> int:
    settings = Settings()
    if which == "faust-forward":
        import faust

        app = faust_forward_app(settings)
        app.finalize()
        faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
        return 0

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await passthrough(settings, stop)

    copied = asyncio.run(main())
    print(f"passthrough: copied {copied} records", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] in BASELINES:
        sys.exit(_run(sys.argv[1]))
    print(f"usage: python -m streams.tools.bench.baselines {'|'.join(BASELINES)}", file=sys.stderr)
    sys.exit(2)
