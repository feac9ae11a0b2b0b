"""Our servers' processes: started detached, recognised by pid file *and* command line (so a
recycled pid is never mistaken for our server and ``down`` never signals a stranger), signalled
and waited for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

from streams.ops.infra.base import (
    KILL_TIMEOUT_S,
    POLL_INTERVAL_S,
    STOP_TIMEOUT_S,
    InfraError,
    Service,
    say,
)


def spawn_detached(cmd: list[str], log_file: Path) -> int:
    """Start ``cmd`` in a new session with stdout and stderr appended to ``log_file``.

    posix_spawn rather than Popen: no Popen object is left to warn "still running" when this
    process exits, and only fds 0-2 (redirected here) are inherited, so the child never holds
    our lock file or the caller's pipes (which would hang ``make`` or ``$(...)``).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        return os.posix_spawn(cmd[0], cmd, dict(os.environ), file_actions=actions, setsid=True)
    except OSError as exc:
        raise InfraError(f"could not start {Path(cmd[0]).name}: {exc}") from exc


def wait_stopped(
    svc: Service, pid: int, timeout_s: float = STOP_TIMEOUT_S, stuck: str = "ignored SIGTERM"
) -> None:
    """Wait for a SIGTERMed server to exit; SIGKILL it after ``timeout_s`` (saying it was
    ``stuck``)."""
    started = time.monotonic()
    if not wait_dead(pid, timeout_s):
        say(f"{svc.name}: pid {pid} {stuck} for {timeout_s:.0f}s; sending SIGKILL")
        send_signal(pid, signal.SIGKILL)
        if not wait_dead(pid, KILL_TIMEOUT_S):
            raise InfraError(f"{svc.name}: pid {pid} survived SIGKILL")
    svc.pid_file.unlink(missing_ok=True)
    say(f"{svc.name}: stopped in {time.monotonic() - started:.1f}s")


def wait_dead(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``pid`` to exit; whether it did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(POLL_INTERVAL_S / 2)
    return not pid_alive(pid)


def send_signal(pid: int, sig: signal.Signals) -> None:
    """Signal ``pid``; one that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def owned_pid(svc: Service) -> int | None:
    """The pid from our pid file if that process is alive and is our server.

    A pid file pointing at a dead or different process is stale and is removed.
    """
    try:
        pid = int(svc.pid_file.read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        svc.pid_file.unlink(missing_ok=True)
        return None
    if pid_alive(pid) and _is_ours(pid, svc.cmdline_markers):
        return pid
    say(f"{svc.name}: removing stale pid file {svc.pid_file}")
    svc.pid_file.unlink(missing_ok=True)
    return None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (reaping it first if it is our exited child)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def _is_ours(pid: int, markers: tuple[str, ...]) -> bool:
    """Check the process command line, so a recycled pid is never taken for our server."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return True  # no /proc: trust the pid file
    return all(marker in cmdline for marker in markers)


def is_port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
