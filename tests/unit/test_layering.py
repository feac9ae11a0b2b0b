"""models/ stays pure: the lint rule that enforces it exists and fires."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _ruff_on(path: str, source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--stdin-filename", path, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize(
    "line",
    [
        "import redis",
        "import redis.asyncio",
        "from redis.asyncio import Redis",
        "from aiokafka import AIOKafkaProducer",
        "import faust",
        "from streams.config import Settings",
        "import asyncio",
    ],
)
def test_io_imports_are_banned_in_models(line: str) -> None:
    result = _ruff_on("models/probe.py", line + "\n")
    assert result.returncode != 0
    assert "TID251" in result.stdout


def test_the_same_imports_are_allowed_in_streams() -> None:
    result = _ruff_on("streams/probe.py", "import redis.asyncio\n\nprint(redis.asyncio)\n")
    assert result.returncode == 0, result.stdout
