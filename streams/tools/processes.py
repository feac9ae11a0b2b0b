"""Child processes, ports and metrics scraping shared by the demo, the benchmark and the tests.

A run that drives a real worker needs the same few things: Kafka and Redis up (started only if
they do not already answer, and stopped only if it started them), the worker as a child process
configured exactly like the caller's settings and always stopped (SIGTERM, wait, SIGKILL), a
free port, and the worker's Prometheus page read as numbers. They live here, once, so the demo,
``socialrec bench``, the soak and chaos runs and the tests drive a worker the same way.

>>> m = MetricsSnapshot.parse('''
... # TYPE x_seconds histogram
... x_seconds_bucket{le="0.01"} 5.0
... x_seconds_bucket{le="0.1"} 10.0
... x_seconds_bucket{le="+Inf"} 10.0
... x_seconds_count 10.0
... x_seconds_sum 0.3
... ''', at=0.0)
>>> round(histogram_quantile(0.5, m.buckets("x_seconds")), 4)
0.01
>>> round(histogram_quantile(0.75, m.buckets("x_seconds")), 4)
0.055
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

import orjson
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from streams.config import PROJECT_ROOT, Settings

WORKER_READY_TIMEOUT_S: Final = 90.0
STOP_TIMEOUT_S: Final = 30.0  # a Faust worker's graceful shutdown can take several seconds
KILL_TIMEOUT_S: Final = 10.0

CONSUMED: Final = "socialrec_events_consumed_total"
DEAD_LETTERS: Final = "socialrec_dead_letters_total"
DUPLICATES: Final = "socialrec_events_duplicate_total"
PUBLISHED: Final = "socialrec_recommendations_published_total"
LATENCY: Final = "socialrec_event_to_publish_seconds"
BATCH_SIZE: Final = "socialrec_batch_size_events"
BATCH_SECONDS: Final = "socialrec_batch_processing_seconds"
REDIS_RTT: Final = "socialrec_redis_roundtrip_seconds"
STAGE_SECONDS: Final = "socialrec_stage_seconds"


class DemoError(RuntimeError):
    """Something the user can act on; the message says what and where to look."""


# --- infrastructure ----------------------------------------------------------------------------


def ensure_infra(settings: Settings) -> tuple[str, ...]:
    """Start whichever of Kafka and Redis does not answer; return the names started.

    Servers that already answer are left alone and must not be stopped later: someone else
    (a developer, a test run) relies on them. Asking the servers, rather than reading pid
    files, also respects servers the project's infra module did not start.
    """
    from streams.ops import infra

    missing = []
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # "connection refused" is the expected answer when down
    try:
        kafka_up = asyncio.run(infra.kafka_answers(settings))
    finally:
        quiet.setLevel(level)
    if not kafka_up:
        missing.append("kafka")
    if settings.redis_cluster:
        from streams.redis_cluster import cluster_answers

        redis_up = asyncio.run(cluster_answers(settings))
    else:
        redis_up = infra.redis_answers(settings)
    if not redis_up:
        missing.append("redis")
    if missing:
        try:
            infra.up(settings, missing)
        except BaseException:
            release_infra(settings, tuple(missing))
            raise
    return tuple(missing)


def release_infra(settings: Settings, started: Sequence[str]) -> None:
    """Stop the services :func:`ensure_infra` started, ignoring Ctrl-C, SIGTERM and SIGHUP
    meanwhile: a second signal during shutdown would otherwise abandon a half-stopped broker.
    """
    if not started:
        return
    from streams.ops import infra

    previous = {
        sig: signal.signal(sig, signal.SIG_IGN)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        infra.down(settings, started)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- the worker subprocess ---------------------------------------------------------------------


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as a ``SOCIALREC_*`` variable, so a child process sees exactly ``settings``.

    Passing the object's values (not just inheriting the environment) matters when the caller
    built its settings in code, e.g. the benchmark's per-run topic prefix and Redis database.
    """
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        raw = getattr(settings, name)
        if isinstance(raw, SecretStr):  # dumped as stars: the child needs the secret itself
            value = raw.get_secret_value()
        if value is None:  # unset (say, no keys file): the child's default is None too
            continue
        if isinstance(value, dict):
            text = orjson.dumps(value).decode()
        elif isinstance(value, list):
            text = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"SOCIALREC_{name.upper()}"] = text
    return env


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host:port`` (a worker already there?)."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for a worker's web page in an isolated run)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ManagedProcess:
    """A child Python process we start, watch and always stop (SIGTERM, wait, SIGKILL).

    It runs in its own session so a Ctrl-C in the terminal reaches only the parent, which then
    shuts the child down in order instead of both racing to exit. Output goes to a log file
    so it never scribbles over the live view.
    """

    def __init__(self, name: str, module_args: Sequence[str], env: Mapping[str, str], log: Path):
        self.name = name
        self.argv = [sys.executable, "-m", *module_args]
        self.env = {**os.environ, **env}
        self.log_path = log
        self.proc: asyncio.subprocess.Process | None = None
        self._log: TextIO | None = None
        self.stopped_with: str = ""

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            cwd=PROJECT_ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return ""
        return "\n    " + "\n    ".join(text) if text else ""

    async def wait_http(
        self, url: str, timeout_s: float = WORKER_READY_TIMEOUT_S, stop: asyncio.Event | None = None
    ) -> None:
        """Wait until ``url`` answers; fail at once if the process exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.returncode is not None:
                raise DemoError(
                    f"{self.name} exited with code {self.returncode} during start-up; "
                    f"see {self.log_path}{self.log_tail()}"
                )
            if stop is not None and stop.is_set():
                return
            if await fetch_text(url, timeout_s=1.0) is not None:
                return
            await asyncio.sleep(0.2)
        raise DemoError(
            f"{self.name} did not answer {url} within {timeout_s:.0f}s; see {self.log_path}"
        )

    async def stop(self) -> None:
        """SIGTERM the child (and anything it spawned in its session), wait, then SIGKILL."""
        proc = self.proc
        try:
            if proc is None or proc.returncode is not None:
                self.stopped_with = "already exited" if proc else ""
                return
            started = time.monotonic()
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
                self.stopped_with = f"SIGTERM, {time.monotonic() - started:.1f}s"
            except TimeoutError:
                self._signal(signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), KILL_TIMEOUT_S)
                self.stopped_with = f"SIGKILL after {STOP_TIMEOUT_S:.0f}s"
            # Whatever it started and left behind goes too: a worker gives its learner a grace
            # period and exits, and a learner waiting out an outage would outlive it.
            self._signal(signal.SIGKILL)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    async def kill(self) -> None:
        """SIGKILL the child and everything in its session (a crash: nothing runs after)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self._signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), KILL_TIMEOUT_S)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        # The child leads its own session: signal the group so helpers it forked go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of a demo's or benchmark's own worker: ``settings``, with the API open.

    These workers serve a local run that scrapes their /metrics, on the loopback address by
    default; a worker serving real callers gets keys (README, "Access").
    """
    return {**settings_env(settings), "SOCIALREC_AUTH": "off"}


def worker_process(settings: Settings, log: Path) -> ManagedProcess:
    """``socialrec worker`` as a child process configured exactly like ``settings``."""
    return ManagedProcess("worker", ["streams.cli", "worker"], worker_env(settings), log)


def api_process(
    settings: Settings, port: int, log: Path, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    """``socialrec api --port port`` as a child process configured like ``settings``, with the
    API open as a demo's or benchmark's worker has it, unless ``env`` says otherwise."""
    return ManagedProcess(
        "api",
        ["streams.cli", "api", "--port", str(port)],
        {**worker_env(settings), **(env or {})},
        log,
    )


def metrics_url(settings: Settings) -> str:
    """The worker's Prometheus page for ``settings``."""
    return f"http://{settings.web_host}:{settings.web_port}/metrics"


# --- metrics scraping --------------------------------------------------------------------------


def _fetch_sync(url: str, timeout_s: float) -> str | None:
    if not url.startswith("http://"):
        raise ValueError("only plain http URLs to a local worker are scraped")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (checked)
            body: bytes = response.read()
            return body.decode()
    except (urllib.error.URLError, OSError, TimeoutError):
        return None


async def fetch_text(url: str, timeout_s: float = 2.0) -> str | None:
    """GET ``url`` in a thread (stdlib only); None if it does not answer."""
    return await asyncio.to_thread(_fetch_sync, url, timeout_s)


@dataclass(frozen=True)
class MetricsSnapshot:
    """One scrape of a Prometheus page: ``samples[name]`` lists ``(labels, value)``."""

    at: float  # time.monotonic() of the scrape
    samples: Mapping[str, list[tuple[dict[str, str], float]]]

    @classmethod
    def parse(cls, text: str, at: float) -> MetricsSnapshot:
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return cls(at, samples)

    def total(self, name: str) -> float:
        return sum(value for _, value in self.samples.get(name, ()))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        return {labels.get(label, ""): value for labels, value in self.samples.get(name, ())}

    def buckets(self, histogram: str) -> list[tuple[float, float]]:
        """Cumulative ``(upper bound, count)`` pairs, ascending, ``+Inf`` last."""
        pairs = [
            (float(labels["le"]), value)
            for labels, value in self.samples.get(f"{histogram}_bucket", ())
        ]
        return sorted(pairs)


async def scrape(url: str) -> MetricsSnapshot | None:
    """One snapshot of the Prometheus page at ``url``; None if it does not answer."""
    text = await fetch_text(url)
    return None if text is None else MetricsSnapshot.parse(text, time.monotonic())


def bucket_delta(
    new: Sequence[tuple[float, float]], old: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """What a histogram observed between two scrapes (the worker never resets its counters)."""
    before = dict(old)
    return [(le, count - before.get(le, 0.0)) for le, count in new]


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus's estimate: linear interpolation inside the bucket holding the q-quantile.

    Returns None for an empty histogram; a quantile in the ``+Inf`` bucket is reported as the
    highest finite bound (as Prometheus does), i.e. "at least this".
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank and cumulative > below:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / (cumulative - below)
        lower, below = upper, cumulative
    return lower
