"""Starting and stopping `socialrec worker`: the checks before it starts (a missing topic or an
unreachable Redis named with what to do), the worker and its learner, and a stop on SIGTERM or
SIGINT that cannot hang.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any

import faust

from models import textsearch
from streams.config import Settings
from streams.keys import Keys
from streams.metrics import WorkerMetrics
from streams.runtime.heap import BATCHED_YOUNG_THRESHOLD, settle_heap
from streams.runtime.learner_process import LearnerSupervisor
from streams.runtime.worker import WORKER_TOPICS, create_app
from streams.security import (
    kafka_client_kwargs,
    kafka_error_hint,
    redis_client_for,
    redis_error_hint,
)
from streams.store.layout import check_layout


async def preflight(settings: Settings) -> list[str]:
    """Problems that would leave a worker idle or crashing, each with what to do about it.

    Faust silently ignores a missing input topic (it just never gets partitions), so the
    worker checks its topics and Redis before it starts, and that the partition count of
    ``events``, topics.yaml's and the one Redis's keys were laid out for agree.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    problems = []
    keys = Keys()
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        needed = [settings.topic(name) for name in WORKER_TOPICS]
        missing = [name for name in needed if name not in existing]
        if missing:
            problems.append(
                f"topics {missing} do not exist: run `socialrec topics apply` "
                "(check SOCIALREC_TOPIC_PREFIX)"
            )
        elif (found := await _partitions(admin, settings.topic("events"))) != keys.partitions:
            problems.append(
                f"`events` has {found} partitions but topics.yaml declares {keys.partitions}: "
                "users' keys are laid out by partition, so the two must agree (edit "
                "topics.yaml to match, then `socialrec topics apply`)"
            )
    except Exception as exc:  # any failure here means the broker is unusable for us
        problems.append(await kafka_error_hint(settings, exc))
    finally:
        await admin.close()
    client = redis_client_for(settings)
    try:
        await client.ping()
        if (wrong := await check_layout(client, keys)) is not None:
            problems.append(wrong)
    except Exception as exc:
        problems.append(f"cannot use Redis ({type(exc).__name__}): {redis_error_hint(exc)}")
    finally:
        await client.aclose()
    return problems


async def _partitions(admin: Any, topic: str) -> int:
    (described,) = await admin.describe_topics([topic])
    return len(described["partitions"])


def run_worker(settings: Settings) -> int:
    """`socialrec worker`: check the servers and topics, then run until SIGINT/SIGTERM."""
    problems = asyncio.run(preflight(settings))
    if problems:
        for problem in problems:
            print(f"socialrec worker: {problem}", file=sys.stderr)
        return 2
    metrics = WorkerMetrics()
    app = create_app(settings, metrics)
    app.finalize()
    learner = LearnerSupervisor(settings, metrics)
    learner.start()
    textsearch.load()  # before the first batch, not in a thread beside it (its docstring)
    settle_heap(BATCHED_YOUNG_THRESHOLD)  # its consumer collects between batches
    try:
        worker = _BoundedShutdownWorker(app, loglevel="INFO", quiet=True)
        worker.execute_from_commandline()
    finally:
        learner.stop(SHUTDOWN_GRACE_S)
    return 0


#: Seconds a graceful stop may take before the process exits anyway.
SHUTDOWN_GRACE_S = 20.0


class _BoundedShutdownWorker(faust.Worker):
    """A Faust worker whose stop on SIGTERM/SIGINT cannot hang.

    A graceful Faust shutdown waits for the broker (final commit, leaving the group); with the
    broker gone it waits forever and the process ignores further SIGTERMs. Everything the
    worker has applied is already in Redis and deduplicated by event id, so exiting after a
    grace period loses nothing: uncommitted events are redelivered and recognised.
    """

    def _schedule_shutdown(self, signal: Any) -> None:
        if not self._signal_stop_time:
            timer = threading.Timer(SHUTDOWN_GRACE_S, _exit_after_grace)
            timer.daemon = True
            timer.start()
        super()._schedule_shutdown(signal)


def _exit_after_grace() -> None:
    print(
        f"socialrec worker: graceful stop took over {SHUTDOWN_GRACE_S:.0f}s; exiting",
        file=sys.stderr,
    )
    os._exit(1)
