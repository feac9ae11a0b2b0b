"""The learner as the worker's child process (``SOCIALREC_LEARNER=child``), kept alive.

It gets its own core's worth of CPU instead of sharing the worker's event loop, at a lower
priority (``nice``): when both want the CPU, the publish path gets it and the learner lags a
little more. The kernel stops it if the worker dies, however it dies (``PR_SET_PDEATHSIG``).

A learner that exits on its own (a crash, an out-of-memory kill) is started again by
:class:`LearnerSupervisor`, after a backoff that grows while it keeps failing, and counted in
``socialrec_learner_restarts_total``: without it, the lists would go out with ever older
candidates while the worker looked healthy. Each source learns a batch once across such a
restart (streams/sources/progress.py).

>>> [restart_delay(n) for n in range(7)]
[1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from streams.config import Settings
from streams.metrics import WorkerMetrics

log = logging.getLogger(__name__)

#: How much lower the learner's CPU priority is than the worker's.
LEARNER_NICENESS = 10
#: A learner that ran this long before exiting was healthy: its next restart waits 1 s again.
HEALTHY_RUN_S = 60.0
#: How often the supervisor looks at the child.
POLL_S = 0.5


def restart_delay(failures: int) -> float:
    """Seconds before the next start after ``failures`` quick exits in a row (at most 30)."""
    return min(30.0, 2.0**failures)


def start_learner(settings: Settings) -> subprocess.Popen[bytes] | None:
    """The learner as a child process, if the settings ask for one (and sources are on)."""
    if settings.learner != "child" or not settings.sources:
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "learner"], preexec_fn=_die_with_parent
    )


def _die_with_parent() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    os.nice(LEARNER_NICENESS)


class LearnerSupervisor:
    """Starts the child learner and starts it again whenever it exits before :meth:`stop`.

    A thread, not a task: the worker's event loop belongs to Faust and may be busy for a
    batch, and waiting on a child is blocking work.
    """

    def __init__(self, settings: Settings, metrics: WorkerMetrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="learner-supervisor", daemon=True)

    def start(self) -> None:
        self.process = start_learner(self.settings)
        if self.process is not None:
            self._thread.start()

    def stop(self, grace_s: float) -> None:
        """Stop watching, then ask the learner to finish its batch (SIGTERM) and wait."""
        self._stopping.set()
        with self._lock:
            process = self.process
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()

    def _watch(self) -> None:
        failures = 0
        started = time.monotonic()
        while not self._stopping.wait(POLL_S):
            process = self.process
            code = None if process is None else process.poll()
            if code is None:
                continue
            ran_s = time.monotonic() - started
            failures = 0 if ran_s >= HEALTHY_RUN_S else failures
            delay = restart_delay(failures)
            failures += 1
            log.warning(
                "learner exited with code %s after %.0fs; starting it again in %.0fs",
                code, ran_s, delay,
            )  # fmt: skip
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.process = start_learner(self.settings)
            self.metrics.learner_restarts.inc()
            started = time.monotonic()
