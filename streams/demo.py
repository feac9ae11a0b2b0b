"""``socialrec demo``: the whole system on one screen.

The demo brings up Kafka and Redis (only if they are not already answering), applies the
topics, runs a real worker as a subprocess, feeds it the deterministic simulator at ``--rate``
events/s, and shows what a user of the product would see: throughput, event-to-publish
latency, dead letters, batch sizes, and a few shoppers' recommendations changing as they act.

Everything shown comes from the same interfaces production uses: rates and latency from the
worker's Prometheus ``/metrics`` page (differences between scrapes, so the view reflects the
last few seconds rather than the whole run), recommendations from the ``recommendations``
topic. Nothing is read from the worker's memory or Redis directly.

Shutdown is symmetric with start-up: Ctrl-C, SIGTERM, SIGHUP (the terminal closed) or
``--seconds`` elapsing stops the
simulator, the consumer and the worker (SIGTERM, wait, SIGKILL), and stops Kafka/Redis only if
this demo started them, so a developer's long-running servers are left alone.

The process helpers here (:class:`ManagedProcess`, :func:`scrape`, :func:`ensure_infra`) are
shared with ``socialrec bench``, which must drive the worker exactly the way the demo does.

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
import dataclasses
import logging
import math
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import orjson
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from models.events import Event, EventType
from models.simulator import World, generate_events, generate_world
from streams.config import PROJECT_ROOT, Settings
from streams.security import kafka_client_kwargs

DEMO_USERS: Final = 500
DEMO_ITEMS: Final = 2000
WINDOW_S: Final = 5.0  # rates and latency quantiles cover the last few seconds
SCRAPE_EVERY_S: Final = 1.0
REFRESH_EVERY_S: Final = 0.5
STATUS_EVERY_S: Final = 2.0  # plain one-line status under a non-TTY
WORKER_READY_TIMEOUT_S: Final = 90.0
STOP_TIMEOUT_S: Final = 30.0  # a Faust worker's graceful shutdown can take several seconds
KILL_TIMEOUT_S: Final = 10.0
SIMULATOR_STOP_TIMEOUT_S: Final = 15.0
SHOWN_USERS: Final = 4
SHOWN_ITEMS: Final = 3
ACTIONS_PER_USER: Final = 64

CONSUMED: Final = "socialrec_events_consumed_total"
DEAD_LETTERS: Final = "socialrec_dead_letters_total"
DUPLICATES: Final = "socialrec_events_duplicate_total"
PUBLISHED: Final = "socialrec_recommendations_published_total"
LATENCY: Final = "socialrec_event_to_publish_seconds"
BATCH_SIZE: Final = "socialrec_batch_size_events"
BATCH_SECONDS: Final = "socialrec_batch_processing_seconds"
REDIS_RTT: Final = "socialrec_redis_roundtrip_seconds"
STAGE_SECONDS: Final = "socialrec_stage_seconds"

SOURCE_STYLES: Final[Mapping[str, str]] = {"item_cf": "green", "popular": "yellow"}
VERBS: Final[Mapping[EventType, str]] = {
    EventType.VIEW: "viewed",
    EventType.LIKE: "liked",
    EventType.SHARE: "shared",
    EventType.CART: "carted",
    EventType.PURCHASE: "bought",
    EventType.HIDE: "hid",
}


class DemoError(RuntimeError):
    """Something the user can act on; the message says what and where to look."""


# --- infrastructure ----------------------------------------------------------------------------


def ensure_infra(settings: Settings) -> tuple[str, ...]:
    """Start whichever of Kafka and Redis does not answer; return the names started.

    Servers that already answer are left alone and must not be stopped later: someone else
    (a developer, a test run) relies on them. Asking the servers, rather than reading pid
    files, also respects servers the project's infra module did not start.
    """
    from streams import infra

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
    if not infra.redis_answers(settings):
        missing.append("redis")
    if missing:
        try:
            infra.up(settings, missing)
        except BaseException:
            release_infra(settings, tuple(missing))
            raise
    return tuple(missing)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def release_infra(settings: Settings, started: Sequence[str]) -> None:
    """Stop the services :func:`ensure_infra` started, ignoring Ctrl-C, SIGTERM and SIGHUP
    meanwhile: a second signal during shutdown would otherwise abandon a half-stopped broker.
    """
    if not started:
        return
    from streams import infra

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


def metrics_url(settings: Settings) -> str:
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


@dataclass(frozen=True)
class WindowStats:
    """Rates and quantiles over the span between two scrapes."""

    seconds: float
    consumed_per_s: float
    published_per_s: float
    p50_s: float | None
    p99_s: float | None
    mean_batch: float | None
    mean_redis_s: float | None

    @classmethod
    def between(cls, old: MetricsSnapshot, new: MetricsSnapshot) -> WindowStats:
        dt = max(new.at - old.at, 1e-9)

        def delta(name: str) -> float:
            return new.total(name) - old.total(name)

        latency = bucket_delta(new.buckets(LATENCY), old.buckets(LATENCY))
        batches = delta(f"{BATCH_SIZE}_count")
        redis_calls = delta(f"{REDIS_RTT}_count")
        return cls(
            seconds=dt,
            consumed_per_s=delta(CONSUMED) / dt,
            published_per_s=delta(PUBLISHED) / dt,
            p50_s=histogram_quantile(0.5, latency),
            p99_s=histogram_quantile(0.99, latency),
            mean_batch=delta(f"{BATCH_SIZE}_sum") / batches if batches else None,
            mean_redis_s=delta(f"{REDIS_RTT}_sum") / redis_calls if redis_calls else None,
        )


# --- what the screen shows ---------------------------------------------------------------------


@dataclass
class ShownItem:
    item_id: str
    score: float
    source: str
    reasons: list[str]  # the user's own items behind an item-CF score
    people: list[str] = field(default_factory=list)  # social proof, already worded


#: How a social reason reads on screen, by action.
SOCIAL_WORDING = {
    "share": "shared with you by {}",
    "purchase": "{} bought it",
    "like": "{} liked it",
}


def _social_phrase(reason: Mapping[str, Any]) -> str:
    wording = SOCIAL_WORDING.get(str(reason.get("action")), "{} did")
    return wording.format(reason.get("user_id"))


@dataclass
class UserRecs:
    user_id: str
    items: list[ShownItem]
    cold_start: bool
    trigger: str
    received: float  # time.monotonic()
    updates: int = 0


@dataclass
class Board:
    """The demo's model of the world: counts, recent scrapes and users' latest lists."""

    titles: Mapping[str, str]
    sent: int = 0
    recs_received: int = 0
    users: dict[str, UserRecs] = field(default_factory=dict)
    actions: dict[str, OrderedDict[str, str]] = field(default_factory=dict)
    scrapes: deque[MetricsSnapshot] = field(default_factory=lambda: deque(maxlen=64))
    sent_marks: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))
    started: float = field(default_factory=time.monotonic)

    def on_sent(self, event: Event) -> None:
        """Remember what each user did to each item, to word the "because you …" reasons."""
        self.sent += 1
        verb = VERBS.get(event.type)
        if verb is None or event.item_id is None:
            return
        done = self.actions.setdefault(event.user_id, OrderedDict())
        done[event.item_id] = verb
        done.move_to_end(event.item_id)
        if len(done) > ACTIONS_PER_USER:
            done.popitem(last=False)

    def on_recommendations(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            body = orjson.loads(value)
            user_id = str(body["user_id"])
            items = [
                ShownItem(
                    item_id=str(it["item_id"]),
                    score=float(it["score"]),
                    source=str(it["source"]),
                    reasons=[str(r["item_id"]) for r in it.get("reasons", ()) if "item_id" in r],
                    people=[_social_phrase(r) for r in it.get("reasons", ()) if "user_id" in r],
                )
                for it in body["items"]
            ]
            trigger = str(body.get("trigger", {}).get("event_id", ""))
            cold = bool(body.get("cold_start", False))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return  # the screen shows well-formed lists; the contract tests police the rest
        self.recs_received += 1
        previous = self.users.get(user_id)
        self.users[user_id] = UserRecs(
            user_id,
            items,
            cold,
            trigger,
            time.monotonic(),
            (previous.updates if previous else 0) + 1,
        )

    def note_scrape(self, snap: MetricsSnapshot) -> None:
        self.scrapes.append(snap)
        self.sent_marks.append((snap.at, self.sent))

    def window(self) -> tuple[WindowStats | None, float | None]:
        """Stats over the last ``WINDOW_S`` seconds of scrapes, and the simulator's send rate."""
        if len(self.scrapes) < 2:
            return None, None
        new = self.scrapes[-1]
        old = next((s for s in self.scrapes if new.at - s.at <= WINDOW_S + 0.5), self.scrapes[0])
        if old is new:
            old = self.scrapes[-2]
        marks = [m for m in self.sent_marks if m[0] >= old.at]
        sent_rate = None
        if len(marks) >= 2 and marks[-1][0] > marks[0][0]:
            sent_rate = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
        return WindowStats.between(old, new), sent_rate

    def shown_users(self) -> list[UserRecs]:
        """The most active shoppers (most updates): stable rows whose contents keep changing."""
        ranked = sorted(self.users.values(), key=lambda u: (-u.updates, u.user_id))
        return sorted(ranked[:SHOWN_USERS], key=lambda u: u.user_id)

    def because(
        self, user_id: str, source: str, reasons: Sequence[str], people: Sequence[str] = ()
    ) -> str:
        if people:
            return "; ".join(people[:2])
        if not reasons:
            return {"popular": "popular today", "trending": "trending right now"}.get(source, "")
        done: Mapping[str, str] = self.actions.get(user_id, {})
        parts = []
        for item_id in reasons[:2]:
            verb = done.get(item_id)
            name = self.title(item_id, 36)  # with the id: the simulator reuses titles
            parts.append(f"you {verb} {name}" if verb else name)
        return "because " + "; ".join(parts)

    def title(self, item_id: str, width: int = 40) -> str:
        title = self.titles.get(item_id)
        if title is None:
            return item_id
        text = f"{title} ({item_id})"
        return (
            text
            if len(text) <= width
            else title[: max(8, width - len(item_id) - 4)] + f"… ({item_id})"
        )


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}/s"


@dataclass(frozen=True)
class DemoInfo:
    rate: float
    seed: int
    seconds: float
    infra_note: str
    worker_log: Path


def status_line(board: Board, info: DemoInfo) -> str:
    """The plain one-liner printed instead of the live view when stdout is not a terminal."""
    stats, sent_rate = board.window()
    last = board.scrapes[-1] if board.scrapes else None
    consumed = int(last.total(CONSUMED)) if last else 0
    dead = int(last.total(DEAD_LETTERS)) if last else 0
    elapsed = time.monotonic() - board.started
    parts = [
        f"demo t={elapsed:.0f}s",
        f"sent={board.sent} ({_rate(sent_rate)})",
        f"consumed={consumed} ({_rate(stats.consumed_per_s if stats else None)})",
        f"p50={_ms(stats.p50_s if stats else None)}",
        f"p99={_ms(stats.p99_s if stats else None)}",
        f"batch={stats.mean_batch:.1f}" if stats and stats.mean_batch else "batch=–",
        f"dlq={dead}",
        f"recs={board.recs_received}",
    ]
    return " ".join(parts)


def render(board: Board, info: DemoInfo) -> RenderableType:
    """The live screen: a metrics panel above a panel of shoppers' latest recommendations."""
    stats, sent_rate = board.window()
    last = board.scrapes[-1] if board.scrapes else None
    elapsed = time.monotonic() - board.started

    grid = Table.grid(padding=(0, 3))
    for _ in range(4):
        grid.add_column()
    consumed = int(last.total(CONSUMED)) if last else 0
    dead = last.by_label(DEAD_LETTERS, "reason") if last else {}
    dead_total = int(sum(dead.values()))
    dead_text = Text(str(dead_total), style="bold red" if dead_total else "green")
    if dead_total:
        dead_text.append(
            " (" + ", ".join(f"{k} {int(v)}" for k, v in sorted(dead.items()) if v) + ")"
        )
    grid.add_row(
        Text("Events sent", style="dim"),
        Text(f"{_rate(sent_rate)}  (total {board.sent:,})", style="bold"),
        Text("Event → publish p50", style="dim"),
        Text(_ms(stats.p50_s if stats else None), style="bold cyan"),
    )
    grid.add_row(
        Text("Events consumed", style="dim"),
        Text(f"{_rate(stats.consumed_per_s if stats else None)}  (total {consumed:,})", "bold"),
        Text("Event → publish p99", style="dim"),
        Text(_ms(stats.p99_s if stats else None), style="bold cyan"),
    )
    grid.add_row(
        Text("Lists published", style="dim"),
        Text(_rate(stats.published_per_s if stats else None), style="bold"),
        Text("Batch size (mean)", style="dim"),
        Text(f"{stats.mean_batch:.1f} events" if stats and stats.mean_batch else "–", "bold"),
    )
    grid.add_row(
        Text("Dead letters", style="dim"),
        dead_text,
        Text("Redis round trip (mean)", style="dim"),
        Text(_ms(stats.mean_redis_s if stats else None), style="bold"),
    )
    limit = f" of {info.seconds:.0f}s" if info.seconds > 0 else " (Ctrl-C to stop)"
    metrics_panel = Panel(
        grid,
        title="[b]socialrec demo[/b]",
        subtitle=f"{elapsed:.0f}s{limit} · target {info.rate:g} ev/s · seed {info.seed} · "
        f"last {WINDOW_S:.0f}s · {info.infra_note}",
        border_style="blue",
    )

    recs = Table(expand=True, show_edge=False, pad_edge=False)
    recs.add_column("Shopper", no_wrap=True, style="bold magenta")
    recs.add_column("#", justify="right", width=2)
    recs.add_column("Item", ratio=3, no_wrap=True, overflow="ellipsis")
    recs.add_column("Score", justify="right", width=7)
    recs.add_column("Source", no_wrap=True, width=8)
    recs.add_column("Why", ratio=4, no_wrap=True, overflow="ellipsis", style="italic")
    now = time.monotonic()
    for user in board.shown_users():
        for rank, item in enumerate(user.items[:SHOWN_ITEMS], start=1):
            who = ""
            if rank == 1:
                who = user.user_id + (" [dim](cold start)[/dim]" if user.cold_start else "")
            elif rank == 2:
                who = f"[dim]{user.updates} updates[/dim]"
            elif rank == 3:
                who = f"[dim]{now - user.received:.1f}s ago[/dim]"
            recs.add_row(
                who,
                str(rank),
                board.title(item.item_id),
                f"{item.score:.2f}",
                Text(item.source.replace("_", "-"), style=SOURCE_STYLES.get(item.source, "cyan")),
                board.because(user.user_id, item.source, item.reasons, item.people),
            )
        recs.add_section()
    if not board.users:
        recs.add_row("", "", "[dim]waiting for the first recommendations…[/dim]", "", "", "")
    recs_panel = Panel(
        recs,
        title="Latest recommendations (most active shoppers)",
        subtitle=f"{board.recs_received:,} lists received from the recommendations topic",
        border_style="magenta",
    )
    return Group(metrics_panel, recs_panel)


# --- the demo ----------------------------------------------------------------------------------


def demo_event_stream(world: World, seed: int, rate: float, run_tag: str) -> Iterator[Event]:
    """The simulator's endless stream, timestamped from now, with ids unique to this run.

    Event ids are ``sim-{seed}-{n}``; the worker deduplicates by id, so a second demo with
    the same seed against the same Redis would otherwise be swallowed as redeliveries.
    """
    stream = generate_events(world, seed, count=None, start_ts=time.time(), mean_gap_s=1.0 / rate)
    for event in stream:
        yield dataclasses.replace(event, event_id=f"{run_tag}-{event.event_id}")


async def watch_recommendations(settings: Settings, board: Board, stop: asyncio.Event) -> None:
    """Follow the recommendations topic from its end (no consumer group, nothing committed)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        settings.topic("recommendations"),
        **kafka_client_kwargs(settings),
        client_id="socialrec-demo",
        group_id=None,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            for records in batches.values():
                for record in records:
                    board.on_recommendations(record.value)
    finally:
        await consumer.stop()


async def _scrape_loop(url: str, board: Board, stop: asyncio.Event) -> None:
    while not stop.is_set():
        snap = await scrape(url)
        if snap is not None:
            board.note_scrape(snap)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SCRAPE_EVERY_S)


async def _view_loop(console: Console, board: Board, info: DemoInfo, stop: asyncio.Event) -> None:
    async def wait(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    if console.is_terminal:
        with Live(render(board, info), console=console, auto_refresh=False, screen=False) as live:
            while not stop.is_set():
                await wait(REFRESH_EVERY_S)
                live.update(render(board, info), refresh=True)
    else:
        while not stop.is_set():
            await wait(STATUS_EVERY_S)
            print(status_line(board, info), flush=True)


async def _supervise(
    stop: asyncio.Event,
    seconds: float,
    worker: ManagedProcess,
    tasks: Sequence[asyncio.Task[Any]],
) -> str:
    """Wait for a reason to stop: a signal, the deadline, the worker or a task ending."""
    deadline = time.monotonic() + seconds if seconds > 0 else math.inf
    while not stop.is_set():
        if time.monotonic() >= deadline:
            return "time is up"
        if worker.returncode is not None:
            raise DemoError(
                f"the worker exited with code {worker.returncode}; see {worker.log_path}"
                f"{worker.log_tail()}"
            )
        for task in tasks:
            if task.done():
                task.result()  # re-raise its error
                return f"{task.get_name()} finished"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(0.2, max(deadline - time.monotonic(), 0.01)))
    return "interrupted"


async def _stop_task(task: asyncio.Task[Any] | None, timeout_s: float) -> BaseException | None:
    """Let a task finish on its own (it watches ``stop``), cancelling it if it lingers."""
    if task is None:
        return None
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
    except TimeoutError:
        task.cancel()
    except BaseException as exc:  # reported by the caller, after everything is stopped
        return exc
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return None


async def _demo(settings: Settings, rate: float, seconds: float, seed: int, infra_note: str) -> int:
    from streams.simulate import produce, produce_catalog
    from streams.topics import apply_topics

    console = Console()

    def say(message: str) -> None:
        console.print(f"[dim]demo:[/dim] {message}", soft_wrap=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP too: closing the terminal must stop the worker, which runs in its own session.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    if port_in_use(settings.web_host, settings.web_port):
        raise DemoError(
            f"port {settings.web_port} is taken (another worker?); stop it or set "
            "SOCIALREC_WEB_PORT"
        )
    await apply_topics(settings)
    say(f"topics ready ({settings.topic('events')} → {settings.topic('recommendations')})")

    log_path = settings.data_dir / "demo" / "worker.log"
    worker = worker_process(settings, log_path)
    info = DemoInfo(rate, seed, seconds, infra_note, log_path)
    world = generate_world(seed, users=DEMO_USERS, items=DEMO_ITEMS)
    board = Board(titles={item.item_id: item.title for item in world.items})
    sim: asyncio.Task[int] | None = None
    tasks: list[asyncio.Task[Any]] = []
    reason = "interrupted"
    failure: BaseException | None = None
    try:
        await worker.start()
        say(f"worker started (pid {worker.pid}, log {log_path}); waiting for /metrics")
        await worker.wait_http(metrics_url(settings), stop=stop)
        if stop.is_set():
            return 130
        watcher = asyncio.create_task(watch_recommendations(settings, board, stop), name="watch")
        tasks.append(watcher)
        await produce_catalog(settings, world)
        say(f"catalog of {len(world.items)} items sent; simulator starting at {rate:g} ev/s")
        run_tag = f"demo{int(time.time())}"
        sim = asyncio.create_task(
            produce(
                settings,
                world,
                demo_event_stream(world, seed, rate, run_tag),
                rate,
                stop=stop,
                on_sent=board.on_sent,
            ),
            name="simulator",
        )
        tasks += [
            sim,
            asyncio.create_task(_scrape_loop(metrics_url(settings), board, stop), name="scrape"),
        ]
        view = asyncio.create_task(_view_loop(console, board, info, stop), name="view")
        try:
            reason = await _supervise(stop, seconds, worker, tasks)
        finally:
            stop.set()
            await _stop_task(view, 5.0)
    except BaseException as exc:
        failure = exc
    finally:
        stop.set()
        errors = [await _stop_task(sim, SIMULATOR_STOP_TIMEOUT_S)]
        errors += [await _stop_task(t, 5.0) for t in tasks if t is not sim]
        await worker.stop()
        failure = failure or next((e for e in errors if e is not None), None)

    last = board.scrapes[-1] if board.scrapes else None
    elapsed = time.monotonic() - board.started
    say(
        f"stopped ({reason}) after {elapsed:.0f}s: sent {board.sent:,} events, worker consumed "
        f"{int(last.total(CONSUMED)) if last else 0:,}, {board.recs_received:,} recommendation "
        f"lists received; worker stopped ({worker.stopped_with or 'not started'})"
    )
    if failure is not None:
        raise failure
    return 0


def run_demo(settings: Settings, *, rate: float, seconds: float, seed: int) -> int:
    """``socialrec demo``: returns the process exit code (0 after Ctrl-C or ``--seconds``)."""
    from aiokafka.errors import KafkaError

    from streams.infra import InfraError
    from streams.topics import TopicsApplyError

    if rate <= 0 or seconds < 0:
        print("demo: need --rate > 0 and --seconds >= 0", file=sys.stderr)
        return 2
    # Until the live loop installs its own handlers (and again after it), SIGTERM and SIGHUP
    # (the terminal closed) take the same clean-up path as Ctrl-C instead of killing the
    # process with servers and a worker left behind.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    # aiokafka warns while probing for a broker and while new topics elect leaders; both are
    # retried, and warnings would tear the live view, so only its errors are shown.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    try:
        started = ensure_infra(settings)
    except InfraError as exc:
        print(f"demo: could not start the infrastructure: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    note = (
        f"demo started {' and '.join(started)}"
        if started
        else "using the Kafka and Redis already running"
    )
    try:
        return asyncio.run(_demo(settings, rate, seconds, seed, note))
    except (DemoError, TopicsApplyError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KafkaError as exc:
        print(f"demo: Kafka failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
            if started:
                print(
                    f"demo: stopping {', '.join(started)} (the demo started them)", file=sys.stderr
                )
            else:
                print(
                    "demo: leaving Kafka and Redis running (they were up before)", file=sys.stderr
                )
        release_infra(settings, started)
