"""Erasure requests: forget a user everywhere, then prove it with a receipt.

A request on ``privacy.requests`` (``{"request_id", "type": "erase", "user_id"}``) removes
the user from every derived state in one atomic Redis call per batch (see
``RedisStore.erase_users``), publishes a tombstone (null value) for the user on
``recommendations`` so compacted consumers forget the last list too, and then a receipt on
``privacy.receipts`` keyed by request id. Receipts carry counts and timings, never the user id.
Before the receipts it broadcasts the users' erasure digests on ``privacy.forget``, so every
worker and learner drops what it holds in memory for them (streams/runtime/forgetting.py), not only
the worker that honoured the request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from models.events import Rejection, id_field
from models.state import ErasureReport
from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.pipeline import InboundRecord, Publisher, dead_letter_headers
from streams.runtime.forgetting import FORGET_TOPIC, forget_message
from streams.sources import SourceSet

if TYPE_CHECKING:
    from streams.runtime.learner_state import LearnerState
from streams.store import Store

#: A request is three short fields; anything larger is dead-lettered (``oversized``).
MAX_REQUEST_BYTES: Final = 4096


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    request_id: str
    user_id: str


def parse_request(raw: bytes | None) -> ErasureRequest | str:
    """The request, or why it cannot be honoured (a reason that never includes the payload).

    Its Kafka key is not checked: a request is honoured whichever partition it came by
    (erasure reaches every worker's state), and refusing one for a wrong key would leave the
    user on file.

    >>> parse_request(b'{"request_id": "r1", "type": "erase", "user_id": "u9"}')
    ErasureRequest(request_id='r1', user_id='u9')
    >>> parse_request(b'{"request_id": "r1", "type": "export", "user_id": "u9"}')
    'unknown_type'
    >>> parse_request(b'{"request_id": "r2", "type": "erase", "user_id": 42}')  # as events allow
    ErasureRequest(request_id='r2', user_id='42')
    """
    if raw is None:
        return "not_json"
    if len(raw) > MAX_REQUEST_BYTES:
        return "oversized"
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "not_json"
    if not isinstance(body, dict):
        return "not_object"
    if body.get("type") != "erase":
        return "unknown_type"
    # The ids follow the event contract's rule, so every user an event can name can be erased.
    request_id, user_id = id_field(body, "request_id", True), id_field(body, "user_id", True)
    if isinstance(request_id, Rejection):
        return request_id.reason.value
    if isinstance(user_id, Rejection):
        return user_id.reason.value
    if request_id is None or user_id is None:  # required: id_field said which is missing
        return "missing_field"
    return ErasureRequest(request_id, user_id)


@dataclass
class ErasureProcessor:
    settings: Settings
    store: Store
    publisher: Publisher
    metrics: WorkerMetrics
    sources: SourceSet | None = None
    #: Re-publishes lists (BatchProcessor.refresh_users): followers' and share recipients'
    #: lists may name the erased user as social proof, in the cache and on the compacted
    #: recommendations topic, until they are replaced.
    refresh: Callable[[Sequence[str], InboundRecord, str], Awaitable[int]] | None = None
    #: Drops what this worker holds in memory per user (BatchProcessor.forget: the last list
    #: shown to each user, kept for the live hit rate, and its candidates for the blend); the
    #: other workers forget on the ``privacy.forget`` broadcast.
    forget: Callable[[Sequence[str]], int] | None = None
    #: The learner's per-user keys (candidate pools, learnt event ids).
    learnt: LearnerState | None = None

    async def process(self, records: Sequence[InboundRecord]) -> int:
        """Honour every valid request in the batch; returns how many users were erased."""
        pending: list[Awaitable[Any]] = []
        requests = await self._parse(records, pending)
        user_ids = [r.user_id for r, _ in requests]
        audience = await self.store.audience(user_ids) - set(user_ids)
        reports, from_sources = await self._erase(requests, user_ids)
        for (request, _), _report in zip(requests, reports, strict=True):
            pending.append(
                await self.publisher.send(
                    self.settings.topic("recommendations"), request.user_id.encode(), None, []
                )
            )
        if requests:  # every other worker and learner forgets the users' in-memory state too
            pending.append(
                await self.publisher.send(
                    self.settings.topic(FORGET_TOPIC), None, forget_message(user_ids), []
                )
            )
        await asyncio.gather(*pending)  # state gone, tombstones and broadcast out before receipts
        if self.refresh is not None and audience and requests:
            last_request, last_record = requests[-1]
            await self.refresh(sorted(audience), last_record, last_request.request_id)
        await self._send_receipts(requests, reports, from_sources)
        return len(requests)

    async def _parse(
        self, records: Sequence[InboundRecord], pending: list[Awaitable[Any]]
    ) -> list[tuple[ErasureRequest, InboundRecord]]:
        """The batch's valid requests; the others are dead-lettered (their sends into
        ``pending``)."""
        requests: list[tuple[ErasureRequest, InboundRecord]] = []
        for record in records:
            parsed = parse_request(record.value)
            if isinstance(parsed, str):
                self.metrics.dead_letters.labels(parsed).inc()
                headers = dead_letter_headers(record, parsed, "invalid erasure request")
                pending.append(
                    await self.publisher.send(
                        self.settings.topic("events.dlq"), record.key, record.value, headers
                    )
                )
            else:
                requests.append((parsed, record))
        return requests

    async def _erase(
        self, requests: list[tuple[ErasureRequest, InboundRecord]], user_ids: list[str]
    ) -> tuple[list[ErasureReport], list[int]]:
        """Erase the users from the store, this worker's memory, the sources and the learner's
        keys: the store's report and the sources' count of entries removed, per user."""
        # First the marks, so a batch of the user's events racing this one is dropped even if
        # it reads them before the state is gone (each mark carries its request's time).
        await self.store.mark_erased({r.user_id: record.timestamp for r, record in requests})
        reports = await self.store.erase_users(user_ids)
        if self.forget is not None:
            self.forget(user_ids)
        # Then every source (MF rows and their pushes on item rows, content profile, user-CF
        # row and index entries, FBT baskets and their counts). Errors propagate: the worker
        # retries the whole batch, and every step is idempotent.
        from_sources = await self.sources.erase(user_ids) if self.sources else [0] * len(user_ids)
        if self.learnt is not None:
            await self.learnt.erase(user_ids)
        return reports, from_sources

    async def _send_receipts(
        self,
        requests: list[tuple[ErasureRequest, InboundRecord]],
        reports: list[ErasureReport],
        from_sources: list[int],
    ) -> None:
        """One receipt per request on ``privacy.receipts``, with what was removed and how long
        the erasure took from its request."""
        receipts: list[Awaitable[Any]] = []
        completed = time.time()
        for (request, record), report, source_entries in zip(
            requests, reports, from_sources, strict=True
        ):
            duration = max(0.0, completed - record.timestamp)
            body = {
                "request_id": request.request_id,
                "status": "erased",
                "removed": {
                    "history_items": report.history_items,
                    "logged_events": report.logged_events,
                    "follow_edges": report.follow_edges,
                    "source_entries": source_entries,
                },
                "requested_at": record.timestamp,
                "completed_at": completed,
                "duration_s": round(duration, 6),
            }
            receipts.append(
                await self.publisher.send(
                    self.settings.topic("privacy.receipts"),
                    request.request_id.encode(),
                    orjson.dumps(body),
                    [],
                )
            )
            self.metrics.erasure_seconds.observe(duration)
        await asyncio.gather(*receipts)
