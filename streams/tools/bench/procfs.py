"""What /proc says about a process the bench started: CPU used, resident memory, children."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def cpu_seconds(pid: int | None) -> float | None:
    """User+system CPU a live process has used (from /proc), for the profile."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process (MB), from /proc."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None


def children(pid: int | None) -> list[int]:
    """The direct child processes of ``pid`` (the worker's learner)."""
    if pid is None:
        return []
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in task.read_text().split()]
    return found
