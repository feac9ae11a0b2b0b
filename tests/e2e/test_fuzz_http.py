"""A real worker's web port under the HTTP fuzz (tests/fuzz/http.py), a modest slice of it
(the 10,000 requests per route run in process: tests/integration/test_fuzz_http.py), and a user
whose id is everything the id rule allows: read, then erased, over HTTP and Kafka."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from yarl import URL

from streams.config import Settings
from streams.http.http_input import path_segment
from tests.e2e.conftest import WorkerProcess, consume_until, produce_json, running, wait_for
from tests.fuzz.http import KEYS, KEYS_TEXT, SECRET, HttpFuzzer
from tests.fuzz.http_check import fuzz_route
from tests.unit.test_guard import REQUESTS

CASES = 300
#: An id events accept with every trap a path has: '/', '..', '{}', '%', '?', '#', a
#: right-to-left mark, an emoji, ':' and a space.
USER = "../{u}%3F?#\u200f🛍: x"


@pytest.fixture
async def keyed_worker(settings: Settings) -> AsyncIterator[WorkerProcess]:
    env = {
        "SOCIALREC_AUTH": "keys",
        "SOCIALREC_API_KEYS": KEYS_TEXT,
        "SOCIALREC_HOST_LINK_SECRET": SECRET,
        "SOCIALREC_API_RATE_PER_S": "1000000",
        "SOCIALREC_API_RATE_BURST": "1000000",
        "SOCIALREC_API_COSTLY_CONCURRENCY": "1000",
        "SOCIALREC_LIVE_MAX_CONNECTIONS_PER_STREAM": "1000",
    }
    async with running(WorkerProcess(settings, extra_env=env, operator_key=KEYS["operator"])) as w:
        yield w


async def test_a_real_worker_answers_hostile_requests_on_every_route(
    keyed_worker: WorkerProcess,
) -> None:
    base = f"http://127.0.0.1:{keyed_worker.web_port}"
    for n, route in enumerate(sorted(REQUESTS)):
        await fuzz_route(base, HttpFuzzer(100 + n, route, ready=True), CASES)
    assert keyed_worker.process is not None
    assert keyed_worker.process.poll() is None


async def test_a_user_any_event_can_name_is_read_and_erased_over_http(
    keyed_worker: WorkerProcess, producer: AIOKafkaProducer, settings: Settings
) -> None:
    event = {"event_id": "e1", "type": "view", "user_id": USER, "item_id": "i1", "ts": time.time()}
    await produce_json(producer, settings, [event])
    key = USER.encode()
    await consume_until(settings, "recommendations", lambda rs: key in {r.key for r in rs})
    url = URL(f"/api/v1/users/{path_segment(USER)}/recommendations", encoded=True)
    headers = {"Authorization": f"Bearer {KEYS['frontend']}"}
    base = f"http://127.0.0.1:{keyed_worker.web_port}"
    async with aiohttp.ClientSession(base) as http:

        async def served_from() -> str:
            async with http.get(url, headers=headers) as response:
                assert response.status == 200
                body = await response.json()
                assert body["user_id"] == USER
                return str(body["served_from"])

        assert await served_from() == "published"
        erase = {"request_id": "r1", "type": "erase", "user_id": USER}
        await producer.send_and_wait(
            settings.topic("privacy.requests"), orjson.dumps(erase), key=key
        )
        await consume_until(settings, "privacy.receipts", lambda rs: len(rs) >= 1)

        async def erased() -> bool:
            return await served_from() == "computed"

        await wait_for(erased, timeout_s=30, what="the published list to be erased")
    assert keyed_worker.log_path is not None
    assert USER not in keyed_worker.log_path.read_text(errors="replace")  # nor in the log
