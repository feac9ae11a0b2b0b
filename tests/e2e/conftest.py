"""A real `socialrec worker` process per test, plus helpers to talk to it through Kafka."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.config import Settings
from streams.keys import SOURCE_FIELDS, Keys
from streams.ops import infra
from streams.runtime.learner import learner_group
from streams.security import kafka_client_kwargs
from streams.tools.processes import free_port, settings_env
from streams.tools.replay import group_caught_up

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


@dataclass
class WorkerProcess:
    """Starts and stops `socialrec worker` with a test's settings; reads its /metrics."""

    settings: Settings
    app_id: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:8]}")
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    #: More SOCIALREC_* settings for this worker only.
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The operator key /metrics is read with, when extra_env turns authentication on.
    operator_key: str | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SOCIALREC_KAFKA_BOOTSTRAP=self.settings.kafka_bootstrap,
            SOCIALREC_REDIS_URL=self.settings.redis_url,
            SOCIALREC_TOPIC_PREFIX=self.settings.topic_prefix,
            SOCIALREC_APP_ID=self.app_id,
            SOCIALREC_WEB_PORT=str(self.web_port),
            SOCIALREC_DATA_DIR=str(self.settings.data_dir),
            SOCIALREC_REDIS_CLUSTER=str(self.settings.redis_cluster).lower(),
            SOCIALREC_REDIS_CLUSTER_PORT=str(self.settings.redis_cluster_port),
            # Open routes unless a test configures keys (tests/e2e/test_access.py does).
            SOCIALREC_AUTH="off",
        )
        env.update(self.extra_env)
        return env

    def spawn(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"worker-{self.app_id}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so kill() takes its learner
            )

    async def start(self) -> None:
        """Spawn the worker and wait until it reports ready (Redis up, partitions owned)."""
        await asyncio.to_thread(self.spawn)
        try:
            await self._wait_ready()
        except BaseException:
            self.stop()  # never leave a half-started worker behind
            raise

    async def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early; see {self.log_path}")
            if await self.metrics_text() is not None and await self.assigned():
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"worker not ready in 60 s; see {self.log_path}")

    async def assigned(self) -> bool:
        """The worker reports ready: Redis answers and it owns partitions of `events`."""

        def fetch() -> bool:
            url = f"http://127.0.0.1:{self.web_port}/health"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return bool(orjson.loads(response.read())["ready"])
            except OSError:
                return False

        return await asyncio.to_thread(fetch)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_lines(self, *containing: str, tail: int = 6) -> list[str]:
        """The lines of this worker's log (its learner's too) that contain any of
        ``containing``, in order; a traceback among them as its innermost ``tail`` lines
        (the frames that raised, and the error)."""
        if self.log_path is None or not self.log_path.exists():
            return []
        found: list[str] = []
        traceback: list[str] | None = None  # its lines lack the "[time]" of a record
        for line in self.log_path.read_text(errors="replace").splitlines():
            if traceback is not None and not line.startswith("["):
                traceback.append(line)
                continue
            if traceback is not None:
                found.extend(traceback[-tail:])
                traceback = None
            if any(said in line for said in containing):
                found.append(line)
                traceback = [] if line.startswith("Traceback") else None
        return found + (traceback or [])[-tail:]

    def kill(self) -> None:
        """A crash of the worker's machine: SIGKILL to the worker and its learner child."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    async def learner_caught_up(self) -> bool:
        """The learner (a child of the worker) has committed every event in the topic."""
        settings = self.settings.model_copy(update={"app_id": self.app_id})
        return await group_caught_up(settings, learner_group(settings))

    async def metrics_text(self) -> str | None:
        def fetch() -> str | None:
            request = urllib.request.Request(f"http://127.0.0.1:{self.web_port}/metrics")
            if self.operator_key is not None:
                request.add_header("Authorization", f"Bearer {self.operator_key}")
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    return str(response.read().decode())
            except OSError:
                return None

        return await asyncio.to_thread(fetch)

    async def metric(self, name: str) -> float:
        """Sum of every sample of ``name`` (over all label values)."""
        text = await self.metrics_text() or ""
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total


@asynccontextmanager
async def running(process: WorkerProcess) -> AsyncIterator[WorkerProcess]:
    """The worker, started; stopped however the block ends."""
    await process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[WorkerProcess]:
    async with running(WorkerProcess(settings)) as process:
        yield process


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """A plain aiokafka producer, as any frontend service would use."""
    prod = AIOKafkaProducer(**kafka_client_kwargs(settings), linger_ms=2)
    await prod.start()
    try:
        yield prod
    finally:
        await prod.stop()


async def produce_json(
    producer: AIOKafkaProducer, settings: Settings, events: list[dict[str, Any]]
) -> None:
    futures = [
        await producer.send(
            settings.topic("events"), orjson.dumps(e), key=str(e["user_id"]).encode()
        )
        for e in events
    ]
    await asyncio.gather(*futures)


async def consume_until(
    settings: Settings,
    topic: str,
    done: Callable[[list[Any]], bool],
    timeout_s: float = 60.0,
) -> list[Any]:
    """Read ``topic`` from the beginning until ``done(records)`` or the timeout."""
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        **kafka_client_kwargs(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not done(records):
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(messages)
    finally:
        await consumer.stop()
    return records


def own_servers_dir(infra_ready: Settings, root: Path, *password_files: str) -> Path:
    """``root/data`` for servers a test module starts itself (with the suite's Kafka jars, not
    a download), and files of random passwords in ``root``, owner-only as mounted secrets."""
    data = root / "data"
    data.mkdir()
    libs = infra.ensure_kafka_libs(infra_ready)
    (data / libs.name).symlink_to(libs)
    for name in password_files:
        (root / name).write_text(secrets.token_urlsafe(18) + "\n")
        (root / name).chmod(0o600)
    return data


def security_env(settings: Settings) -> dict[str, str]:
    """The settings' Kafka and Redis variables, for a worker process."""
    return {
        name: value
        for name, value in settings_env(settings).items()
        if name.startswith(("SOCIALREC_KAFKA_", "SOCIALREC_REDIS_"))
    }


def assert_no_password_in_logs(settings: Settings, *more: Path | None) -> None:
    """Neither the Kafka nor the Redis password (from their files) is in the logs of the
    servers in the settings' data dir, nor in ``more`` (a worker's log)."""
    files = (settings.kafka_password_file, settings.redis_password_file)
    passwords = [p.read_text().strip() for p in files if p is not None]
    assert len(passwords) == len(files), "both passwords are in files"
    logs = [*settings.data_dir.glob("kafka/logs/*"), *settings.data_dir.glob("redis/*.log")]
    for path in [*logs, *(p for p in more if p is not None)]:
        text = path.read_text(errors="replace")
        assert not any(password in text for password in passwords), f"a password is in {path}"


def triggers(records: list[Any]) -> set[str]:
    """The ids of the events that made these recommendation lists."""
    return {orjson.loads(r.value)["trigger"]["event_id"] for r in records}


def keep_figures(name: str, figures: dict[str, Any]) -> None:
    """Keep a test's measured recovery figures under ``name`` in test-artifacts/recovery.json
    (a test never asserts a time; it reports it)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "recovery.json"
    kept = orjson.loads(path.read_bytes()) if path.exists() else {}
    kept[name] = figures
    path.write_bytes(orjson.dumps(kept, option=orjson.OPT_INDENT_2))


async def wait_for(
    condition: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def traces_in_redis(client: aioredis.Redis, user_id: str) -> list[str]:
    """Every key of the database that names ``user_id``: as a segment of the key, a member, a
    field, or inside a value or a stream entry (empty once the user is erased)."""
    needle = user_id.encode()
    found: list[str] = []
    for raw in await client.keys("*"):
        assert isinstance(raw, bytes)
        kind = await client.type(raw)
        if kind == b"zset":
            named = needle in await client.zrange(raw, 0, -1)
        elif kind == b"set":
            named = needle in await client.smembers(raw)
        elif kind == b"list":
            named = any(needle in v for v in await client.lrange(raw, 0, -1))
        elif kind == b"hash":
            fields = (await client.hgetall(raw)).items()
            named = any(needle in f or needle in v for f, v in fields)
        elif kind == b"string":
            named = needle in (await client.get(raw) or b"")
        else:  # a stream
            named = needle in repr(await client.xrange(raw)).encode()
        if named or needle in raw.split(b":"):
            found.append(f"{kind!r} {raw!r}")
    return found


async def source_state(client: aioredis.Redis) -> dict[tuple[str, str], Any]:
    """Every recommendation source's key, read by type: (field, entity) -> contents."""
    keys = Keys()
    state: dict[tuple[str, str], Any] = {}
    async for raw in client.scan_iter(match="sr:*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        _, entity, field = keys.parse(key)
        if field not in SOURCE_FIELDS or field in ("learner", "marks", "handoff"):  # progress
            continue
        kind_raw = await client.type(key)
        kind = kind_raw.decode() if isinstance(kind_raw, bytes) else str(kind_raw)
        if kind == "hash":
            state[(field, entity)] = await client.hgetall(key)
        elif kind == "zset":
            state[(field, entity)] = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            state[(field, entity)] = await client.xrange(key)
        elif kind == "set":
            state[(field, entity)] = await client.smembers(key)
        elif kind == "list":
            state[(field, entity)] = await client.lrange(key, 0, -1)
        else:
            state[(field, entity)] = await client.get(key)
    return state
