"""``socialrec infra``: idempotent up, honest status, and never touching strangers' processes.

The shared Kafka and Redis were started by the test command; these tests must leave them
running. Lifecycle tests use a throwaway Redis on a free port in a temporary data dir.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config import Settings
from streams.ops import infra
from streams.tools.processes import free_port


@pytest.fixture
def private_settings(tmp_path: Path) -> Settings:
    """Settings whose Redis port and data dir belong to this test alone."""
    return Settings(
        data_dir=tmp_path / "data",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
    )


@pytest.fixture
def listener() -> Iterator[int]:
    """A port held open by a process socialrec did not start (this one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_up_twice_is_harmless_and_status_reports_running(infra_ready: Settings) -> None:
    before = {s.name: s for s in infra.status(infra_ready)}
    assert all(s.running for s in before.values()), [s.line() for s in before.values()]

    infra.up(infra_ready)
    infra.up(infra_ready, "redis,kafka")

    after = {s.name: s for s in infra.status(infra_ready)}
    assert set(after) == {"kafka", "redis"}
    for name, state in after.items():
        assert state.running
        assert state.pid == before[name].pid, "up must not restart a running server"
        assert state.data_dir.is_relative_to(infra_ready.data_dir)
    assert after["kafka"].address == f"127.0.0.1:{infra_ready.kafka_port}"
    assert after["redis"].address == f"127.0.0.1:{infra_ready.redis_port}"


def test_status_command_prints_a_line_per_service(
    infra_ready: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert infra.run_command(infra_ready, "status", services="kafka,redis") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["kafka", "running"], ["redis", "running"]]


def test_redis_lifecycle_on_a_private_port(private_settings: Settings) -> None:
    try:
        infra.up(private_settings, "redis")
        (state,) = infra.status(private_settings, "redis")
        assert state.running
        assert infra.redis_answers(private_settings)
        infra.up(private_settings, "redis")  # already up: harmless
        assert infra.status(private_settings, "redis")[0].pid == state.pid
    finally:
        infra.down(private_settings, "redis")
    (state,) = infra.status(private_settings, "redis")
    assert state.state == "stopped"
    assert not (private_settings.data_dir / "redis.pid").exists()
    assert (private_settings.data_dir / "redis" / "appendonlydir").is_dir()


def test_foreign_process_on_the_port_fails_fast_naming_the_setting(
    private_settings: Settings, listener: int
) -> None:
    taken = private_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{listener}/0"})
    with pytest.raises(infra.InfraError) as caught:
        infra.up(taken, "redis")
    assert str(listener) in str(caught.value)
    assert "SOCIALREC_REDIS_URL" in str(caught.value)
    (state,) = infra.status(taken, "redis")
    assert state.state == "stopped"
    assert "did not start" in state.note


def test_down_never_signals_a_process_it_did_not_start(private_settings: Settings) -> None:
    """A stale pid file pointing at some other live process (here: pytest) is just removed."""
    private_settings.data_dir.mkdir(parents=True)
    pid_file = private_settings.data_dir / "redis.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    infra.down(private_settings, "redis")
    assert not pid_file.exists()  # and we are still alive to assert it


def test_unknown_service_is_rejected(private_settings: Settings) -> None:
    with pytest.raises(infra.InfraError, match="zookeeper"):
        infra.parse_services("kafka,zookeeper")
    assert infra.run_command(private_settings, "status", services="zookeeper") == 1
