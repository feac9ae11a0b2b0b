"""Outages are waited out, never turned into dead letters.

A Redis or Kafka error that says "the server cannot serve now" (connection refused or reset, a
timeout, a server loading its data, a read-only replica, out of memory, a failed fsync, a
cluster moving slots or failing over) is not the event's fault. The worker then stops taking
events (the agent does not return to its stream, so consuming stops: back-pressure), retries
the same step with backoff, reports not-ready on ``/health`` and ``socialrec_dependency_up``,
and resumes by itself.
Only an error the server gives for *this* input (a script error, a wrong type) is the event's.

>>> import redis.exceptions as r
>>> is_outage(r.ConnectionError("refused")), is_outage(r.ResponseError("OOM command not allowed"))
(True, True)
>>> is_outage(r.ResponseError("WRONGTYPE Operation against a key"))
False
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import redis.exceptions

from streams.metrics import WorkerMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

#: Redis error codes that describe the server's condition, not the command's input.
SERVER_CONDITIONS: Final = (
    "READONLY", "OOM", "MISCONF", "NOPERM", "BUSY", "LOADING", "MASTERDOWN", "CLUSTERDOWN",
    "TRYAGAIN", "NOREPLICAS", "NOAUTH", "WRONGPASS",
)  # fmt: skip

#: Waits between attempts; the last one repeats for as long as the outage lasts.
BACKOFF_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


#: redis-py's classes for those conditions (it strips the code from their messages).
_SERVER_CONDITION_ERRORS: Final = (
    redis.exceptions.ConnectionError,  # includes refused, reset, loading, auth failures
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.NoPermissionError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterError,  # cluster down, a master down, retries spent ("TTL exhausted")
)

#: What the cluster client raises about its own use, not the cluster's state: a bug, not an
#: outage. Every other :class:`RedisClusterException` is the layout seen mid-failover (no node
#: reachable, slots uncovered, nodes that disagree on a slot's master).
_CLUSTER_MISUSE: Final = (
    redis.exceptions.CrossSlotTransactionError,
    redis.exceptions.InvalidPipelineStack,
)


#: How redis-py words its refusal of a command a cluster pipeline cannot run (plain
#: RedisClusterException): a bug to raise, not a layout to wait for.
_CLUSTER_REFUSAL: Final = "is blocked when running redis in cluster mode"


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means a server is unavailable (retry) rather than the input is bad."""
    if isinstance(exc, _SERVER_CONDITION_ERRORS):
        return True
    if isinstance(exc, redis.exceptions.RedisClusterException):
        return not isinstance(exc, _CLUSTER_MISUSE) and _CLUSTER_REFUSAL not in str(exc)
    if isinstance(exc, redis.exceptions.ResponseError):
        # Inside a script the server's code follows "... script: " or leads the message; a
        # pipeline's error is quoted after its command ("... caused error: ('BUSY ...',)").
        message = str(exc)
        return any(
            message.startswith(code)
            or f": {code} " in message
            or f"('{code} " in message
            or f" {code} " in message[:80]
            for code in SERVER_CONDITIONS
        )
    return _closed_under_call(exc) or _is_kafka_outage(exc)


def _closed_under_call(exc: BaseException) -> bool:
    """redis-py's connection used after another task closed it (its reader and writer are
    None then; a cluster client closes every connection when a refresh of its layout fails):
    the connection's loss, which redis-py lets out as a bare AttributeError."""
    if not isinstance(exc, AttributeError) or exc.name is None or exc.obj is not None:
        return False
    innermost = exc.__traceback__
    while innermost is not None and innermost.tb_next is not None:
        innermost = innermost.tb_next
    module = "" if innermost is None else innermost.tb_frame.f_globals.get("__name__", "")
    return str(module).startswith("redis.")


def _is_kafka_outage(exc: BaseException) -> bool:
    from aiokafka.errors import KafkaError

    if not isinstance(exc, KafkaError):
        return False
    # aiokafka marks transient broker conditions (leader moved, timeout, not enough replicas,
    # connection lost) as retriable; the rest (record too large, auth) are not outages.
    return bool(getattr(exc, "retriable", False)) or type(exc).__name__ in (
        "KafkaTimeoutError",
        "KafkaConnectionError",
        "NodeNotReadyError",
    )


def dependency_of(exc: BaseException) -> str:
    redis_side = isinstance(exc, redis.exceptions.RedisError) or _closed_under_call(exc)
    return "redis" if redis_side else "kafka"


async def wait_out(
    step: Callable[[], Awaitable[T]],
    metrics: WorkerMetrics,
    what: str,
    backoff_s: Sequence[float] = BACKOFF_S,
) -> T:
    """Run ``step`` until it succeeds, retrying (with backoff) only while a server is out.

    Any other error is raised at once: it belongs to the input and the caller isolates it.
    """
    attempt = 0
    down: str | None = None
    while True:
        try:
            result = await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not is_outage(exc):
                raise
            down = dependency_of(exc)
            metrics.dependency_up.labels(down).set(0)
            if down == "redis":
                metrics.store_errors.inc()
            delay = backoff_s[min(attempt, len(backoff_s) - 1)]
            if attempt in (0, len(backoff_s)):  # once when it starts, once when it persists
                log.warning(
                    "%s unavailable during %s (%s); waiting it out", down, what, type(exc).__name__
                )
            attempt += 1
            await asyncio.sleep(delay)
            continue
        if down is not None:
            metrics.dependency_up.labels(down).set(1)
            log.warning("%s is back after %d retries during %s", down, attempt, what)
        return result


async def isolating(
    step: Callable[[Sequence[R]], Awaitable[object]],
    records: Sequence[R],
    metrics: WorkerMetrics,
    what: str,
    dead_letter: Callable[[Sequence[R]], Awaitable[object]],
) -> None:
    """Run ``step`` on ``records``, waiting out outages; any other error is the input's, so
    the batch is halved until the records that fail alone are found and dead-lettered, and
    the rest is done. A failing record costs O(log n) retries, never a wedged partition.

    ``step`` must be idempotent: a half that failed part way is run again.
    """
    try:
        await wait_out(lambda: step(records), metrics, what)
        return
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if len(records) > 1:
            middle = len(records) // 2
            await isolating(step, records[:middle], metrics, what, dead_letter)
            await isolating(step, records[middle:], metrics, what, dead_letter)
            return
        log.error("%s failed for one record (%s); dead-lettering it", what, type(exc).__name__)
    await wait_out(lambda: dead_letter(records), metrics, f"{what} dead letter")
