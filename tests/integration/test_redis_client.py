"""The Redis client every process uses, against a real Redis whose reply is lost.

A call that times out may have been applied all the same (the reply was lost, or the server was
frozen with the command in its socket). The client must hand the timeout to its caller, who
waits the outage out with guards that make a retry safe (streams/runtime/outage.py), instead of
sending the command again by itself: that would apply a script or an unguarded write twice.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeout

from streams.config import Settings, redis_url_with_db
from streams.security import redis_client_for
from tests.conftest import TEST_REDIS_DB


class ReplyEater:
    """A TCP proxy to Redis that, once ``eat`` is set, passes commands on but drops the
    replies of the connection that was open then (later connections get theirs)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.eat = asyncio.Event()
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, eats: bool) -> None:
            while data := await src.read(65536):
                if not (eats and self.eat.is_set()):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, first))


async def test_a_write_whose_reply_is_lost_is_not_sent_again_by_the_client(
    infra_ready: Settings, redis_client: aioredis.Redis
) -> None:
    url = urlsplit(redis_url_with_db(infra_ready.redis_url, TEST_REDIS_DB))
    proxy = ReplyEater(url.hostname or "127.0.0.1", url.port or 6379)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    netloc = url.netloc.rsplit("@", 1)[0] + "@" if "@" in url.netloc else ""
    via_proxy = urlunsplit(url._replace(netloc=f"{netloc}127.0.0.1:{port}"))
    hasty = redis_client_for(infra_ready.model_copy(update={"redis_timeout_s": 0.3}), via_proxy)
    try:
        await hasty.ping()  # connected (and logged in) before the replies go missing
        proxy.eat.set()
        with pytest.raises(RedisTimeout):
            await hasty.incr("writes")
        # Redis applied the write once; the client never tried it again on a new connection.
        assert int(await redis_client.get("writes") or 0) == 1
        assert proxy.connections == 1
    finally:
        await hasty.aclose()
        server.close()
