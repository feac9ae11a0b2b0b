"""Test doubles for unit tests only. The real Kafka path is covered by tests/e2e."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SentRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


@dataclass
class RecordingPublisher:
    """Keeps every send; delivery is confirmed immediately."""

    sent: list[SentRecord] = field(default_factory=list)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> Awaitable[Any]:
        self.sent.append(SentRecord(topic, key, value, dict(headers)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def on(self, topic: str) -> list[SentRecord]:
        return [r for r in self.sent if r.topic == topic]
