"""`socialrec demo` as a user runs it, piped (so it prints plain status lines), on the real
broker and Redis: it shows traffic and recommendations, stops on --seconds or Ctrl-C, and
leaves nothing of its own running while leaving the servers it found running alone.

The demo runs as a subprocess with the test's isolated settings (topic prefix, Redis db 15,
own Faust app id and web port), since it owns its event loop and signal handlers.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from pathlib import Path

from streams.config import Settings
from streams.ops import infra
from streams.tools.processes import free_port, settings_env

ROOT = Path(__file__).resolve().parents[2]
STATUS = re.compile(r"^demo t=\d+s sent=(\d+) .* consumed=(\d+) .* recs=(\d+)$", re.M)
WORKER_PID = re.compile(r"worker started \(pid (\d+)")


def _demo_env(settings: Settings) -> dict[str, str]:
    demo_settings = settings.model_copy(
        update={"app_id": f"demo-test-{uuid.uuid4().hex[:8]}", "web_port": free_port()}
    )
    return {**os.environ, **settings_env(demo_settings), "COLUMNS": "200"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] not in "ZX"


async def _run_demo(settings: Settings, *args: str, interrupt_after_status: bool) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streams.cli",
        "demo",
        "--rate",
        "50",
        *args,
        cwd=ROOT,
        env=_demo_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(150):
            async for raw in proc.stdout:
                lines.append(raw.decode())
                seen = [m for m in STATUS.finditer("".join(lines)) if int(m[3]) > 0]
                if interrupt_after_status and len(seen) >= 2:
                    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
                    interrupt_after_status = False
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = "".join(lines)
    assert code == 0, output
    return output


def _check(output: str, settings: Settings) -> None:
    statuses = list(STATUS.finditer(output))
    assert statuses, output
    sent, consumed, recs = (int(g) for g in statuses[-1].groups())
    assert sent > 0, output
    assert consumed > 0, output
    assert recs > 0, output
    assert "leaving Kafka and Redis running" in output
    pid = WORKER_PID.search(output)
    assert pid is not None, output
    assert not _alive(int(pid[1])), "the demo left its worker running"
    assert infra.redis_answers(settings), "the demo stopped a Redis it did not start"


async def test_demo_runs_for_its_seconds_then_stops_its_worker(settings: Settings) -> None:
    output = await _run_demo(settings, "--seconds", "12", interrupt_after_status=False)
    _check(output, settings)
    assert "stopped (time is up)" in output
    assert await infra.kafka_answers(settings)


async def test_ctrl_c_stops_the_demo_cleanly(settings: Settings) -> None:
    output = await _run_demo(settings, interrupt_after_status=True)
    _check(output, settings)
    assert "stopped (interrupted)" in output
