"""One micro-batch, end to end: validate, dead-letter the bad, update state, rank, publish.

* :mod:`.records`: what a batch carries (the consumed record, the publisher, the summary, a
  batch between its halves, the time per stage);
* :mod:`.wire`: the event contract of a consumed record, dead letters' headers, a list's JSON;
* :mod:`.core`: the processor's construction and what it keeps between batches (the learnt
  blend, the last list per user), outages waited out, records dead-lettered;
* :mod:`.lists`: the ranking and sending half, and the lists outside a batch;
* :mod:`.processor`: :class:`BatchProcessor`, the apply half (validation, the state step).
"""

from __future__ import annotations

from streams.pipeline.core import CandidateSource, ProcessorCore, recommend_params
from streams.pipeline.lists import ListSender
from streams.pipeline.processor import BatchProcessor
from streams.pipeline.records import (
    PROCESSING_ERROR,
    WORKER_ERROR,
    Applied,
    BatchSummary,
    InboundRecord,
    Publisher,
    StageTimer,
)
from streams.pipeline.wire import dead_letter_headers, recommendations_json, validate_record

__all__ = [
    "PROCESSING_ERROR",
    "WORKER_ERROR",
    "Applied",
    "BatchProcessor",
    "BatchSummary",
    "CandidateSource",
    "InboundRecord",
    "ListSender",
    "ProcessorCore",
    "Publisher",
    "StageTimer",
    "dead_letter_headers",
    "recommend_params",
    "recommendations_json",
    "validate_record",
]
