"""The one readiness poll behind `infra up` (single servers and the cluster layout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.ops.infra.base import InfraError, Service
from streams.ops.infra.services import poll_ready


def _service(tmp_path: Path) -> Service:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text("1")
    return Service("x", "127.0.0.1", 1, "X_PORT", pid_file, tmp_path / "x.log", tmp_path, (), 1.0)


def test_ready_returns_how_long_it_took(tmp_path: Path) -> None:
    checks = iter([False, True])
    took = poll_ready([(_service(tmp_path), os.getpid())], lambda: next(checks), 5.0, str, "late")
    assert took >= 0.0


def test_a_server_that_died_fails_with_its_message_and_loses_its_pid_file(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    svc = _service(tmp_path)
    with pytest.raises(InfraError, match="x died"):
        poll_ready([(svc, dead.pid)], lambda: False, 5.0, lambda s: f"{s.name} died", "late")
    assert not svc.pid_file.exists()


def test_never_ready_fails_with_the_late_message(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="too late"):
        poll_ready([(_service(tmp_path), os.getpid())], lambda: False, 0.0, str, "too late")
