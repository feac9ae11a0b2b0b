"""Running the demo: a worker, the simulator feeding it, the recommendations topic followed, the
worker's metrics scraped, and everything stopped in order however the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, Final

from rich.console import Console
from rich.live import Live

from models.events import Event
from models.simulator import World, generate_events, generate_world
from streams.config import Settings
from streams.security import kafka_client_kwargs
from streams.tools.demo.board import Board
from streams.tools.demo.screen import DemoInfo, render, status_line
from streams.tools.processes import (
    CONSUMED,
    DemoError,
    ManagedProcess,
    ensure_infra,
    metrics_url,
    port_in_use,
    release_infra,
    scrape,
    worker_process,
)

DEMO_USERS: Final = 500
DEMO_ITEMS: Final = 2000

SCRAPE_EVERY_S: Final = 1.0
REFRESH_EVERY_S: Final = 0.5
STATUS_EVERY_S: Final = 2.0  # plain one-line status under a non-TTY

SIMULATOR_STOP_TIMEOUT_S: Final = 15.0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, waking early when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _scrape_loop(url: str, board: Board, stop: asyncio.Event) -> None:
    """Scrape the worker's metrics into the board every ``SCRAPE_EVERY_S`` until ``stop``."""
    while not stop.is_set():
        snap = await scrape(url)
        if snap is not None:
            board.note_scrape(snap)
        await _wait(stop, SCRAPE_EVERY_S)


async def _view_loop(console: Console, board: Board, info: DemoInfo, stop: asyncio.Event) -> None:
    """Redraw the live screen (a terminal) or print a status line (otherwise) until ``stop``."""
    if console.is_terminal:
        with Live(render(board, info), console=console, auto_refresh=False, screen=False) as live:
            while not stop.is_set():
                await _wait(stop, REFRESH_EVERY_S)
                live.update(render(board, info), refresh=True)
    else:
        while not stop.is_set():
            await _wait(stop, STATUS_EVERY_S)
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
        await _wait(stop, min(0.2, max(deadline - time.monotonic(), 0.01)))
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


def _say(console: Console, message: str) -> None:
    console.print(f"[dim]demo:[/dim] {message}", soft_wrap=True)


async def _demo(settings: Settings, rate: float, seconds: float, seed: int, infra_note: str) -> int:
    """The demo inside the event loop: topics, then :func:`_run` until a reason to stop, then
    everything stopped in order and a one-line account of the run."""
    from streams.ops.topics import apply_topics

    console = Console()
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
    _say(
        console, f"topics ready ({settings.topic('events')} → {settings.topic('recommendations')})"
    )

    log_path = settings.data_dir / "demo" / "worker.log"
    worker = worker_process(settings, log_path)
    info = DemoInfo(rate, seed, seconds, infra_note, log_path)
    world = generate_world(seed, users=DEMO_USERS, items=DEMO_ITEMS)
    board = Board(titles={item.item_id: item.title for item in world.items})
    tasks: list[asyncio.Task[Any]] = []
    reason: str | None = "interrupted"
    failure: BaseException | None = None
    try:
        reason = await _run(settings, console, world, board, info, worker, stop, tasks)
    except BaseException as exc:
        failure = exc
    finally:
        stop.set()
        stopped = await _stop_all(worker, tasks)
        failure = failure or stopped
    if reason is None:
        return 130

    last = board.scrapes[-1] if board.scrapes else None
    elapsed = time.monotonic() - board.started
    _say(
        console,
        f"stopped ({reason}) after {elapsed:.0f}s: sent {board.sent:,} events, worker consumed "
        f"{int(last.total(CONSUMED)) if last else 0:,}, {board.recs_received:,} recommendation "
        f"lists received; worker stopped ({worker.stopped_with or 'not started'})",
    )
    if failure is not None:
        raise failure
    return 0


async def _run(
    settings: Settings,
    console: Console,
    world: World,
    board: Board,
    info: DemoInfo,
    worker: ManagedProcess,
    stop: asyncio.Event,
    tasks: list[asyncio.Task[Any]],
) -> str | None:
    """Start the worker, then follow its recommendations, feed it the simulator, scrape its
    metrics and show the view until a reason to stop (returned; None when stopped before the
    worker answered). The tasks it starts go into ``tasks``: the caller stops them."""
    from streams.tools.simulate import produce, produce_catalog

    await worker.start()
    _say(console, f"worker started (pid {worker.pid}, log {info.worker_log}); waiting for /metrics")
    await worker.wait_http(metrics_url(settings), stop=stop)
    if stop.is_set():
        return None
    tasks.append(asyncio.create_task(watch_recommendations(settings, board, stop), name="watch"))
    await produce_catalog(settings, world)
    _say(
        console,
        f"catalog of {len(world.items)} items sent; simulator starting at {info.rate:g} ev/s",
    )
    run_tag = f"demo{int(time.time())}"
    events = demo_event_stream(world, info.seed, info.rate, run_tag)
    tasks.append(
        asyncio.create_task(
            produce(settings, world, events, info.rate, stop=stop, on_sent=board.on_sent),
            name="simulator",
        )
    )
    tasks.append(
        asyncio.create_task(_scrape_loop(metrics_url(settings), board, stop), name="scrape")
    )
    view = asyncio.create_task(_view_loop(console, board, info, stop), name="view")
    try:
        return await _supervise(stop, info.seconds, worker, tasks)
    finally:
        stop.set()
        await _stop_task(view, 5.0)


async def _stop_all(
    worker: ManagedProcess, tasks: Sequence[asyncio.Task[Any]]
) -> BaseException | None:
    """Stop the simulator first (with more time: it flushes what it sent), then the other
    tasks, then the worker; return the first error a task ended with."""
    sim = next((t for t in tasks if t.get_name() == "simulator"), None)
    errors = [await _stop_task(sim, SIMULATOR_STOP_TIMEOUT_S)]
    errors += [await _stop_task(t, 5.0) for t in tasks if t is not sim]
    await worker.stop()
    return next((e for e in errors if e is not None), None)


def run_demo(settings: Settings, *, rate: float, seconds: float, seed: int) -> int:
    """``socialrec demo``: returns the process exit code (0 after Ctrl-C or ``--seconds``)."""
    from aiokafka.errors import KafkaError

    from streams.ops.infra import InfraError
    from streams.ops.topics import TopicsApplyError

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
