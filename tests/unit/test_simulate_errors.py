"""What `socialrec simulate` says when Kafka fails: a refused topic is not "is it running?"."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from streams.config import Settings
from streams.tools import simulate


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (TopicAuthorizationFailedError(), "--no-catalog"),
        (KafkaConnectionError(), "socialrec infra up"),
    ],
)
def test_a_kafka_failure_names_its_likely_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception, hint: str
) -> None:
    async def failing(*args: Any, **kwargs: Any) -> int:
        raise error

    monkeypatch.setattr(simulate, "_simulate", failing)
    code = simulate.run_simulate(
        Settings(), users=2, items=1, events=1, rate=0, seed=0, catalog=True
    )
    assert code == 1
    assert hint in capsys.readouterr().err
