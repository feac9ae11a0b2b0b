"""Lua scripts called by digest, alone or in pipelines, on one Redis or a Redis Cluster.

redis-py's ``register_script`` asks ``SCRIPT EXISTS`` before every pipeline that holds a script
(one more round trip per batch), and its cluster pipeline refuses ``EVALSHA`` outright. A
:class:`Lua` sends ``EVALSHA`` itself, declaring one key: the cluster client routes the call by
it, so it must lie in the slot of every key the script touches (our scripts take their key
names from their arguments; the declared key is only the route). A server that does not know
the script (restarted, failed over, flushed) answers ``NOSCRIPT`` without running anything, so
:func:`run` loads it there and runs again just those calls, in their order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

Arg = str | int | float | bytes


def lua_text(name: str) -> str:
    """A script's text: a file of streams/lua/."""
    return resources.files("streams").joinpath(f"lua/{name}").read_text()


@dataclass(frozen=True)
class Lua:
    """One script: its source and digest.

    >>> Lua("return 1").sha
    'e0e1f9fabfc9d4800c877a703b823ac0578ff8db'
    """

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())  # noqa: S324

    def call(self, key: str, args: Sequence[Arg]) -> Call:
        """A call routed by ``key``, to queue with :func:`run`."""
        return Call(self, ("EVALSHA", self.sha, 1, key, *args))

    async def __call__(self, client: Any, key: str, args: Sequence[Arg]) -> Any:
        """Run the script once, loading it first where the server lacks it."""
        (reply,) = await run(client, [self.call(key, args)])
        return reply


@dataclass(frozen=True)
class Call:
    """A command for :func:`run`: a script's call, or any other command (``script`` None)."""

    script: Lua | None
    command: tuple[Arg, ...]


def hash_reply(flat: Sequence[Any]) -> dict[Any, Any]:
    """A hash as a script returns it (``HGETALL``'s or a stream entry's flat field, value,
    field, value, ...) as a mapping.

    >>> hash_reply([b"a", b"1", b"b", b"2"])
    {b'a': b'1', b'b': b'2'}
    """
    return dict(zip(flat[::2], flat[1::2], strict=True))


def command(*parts: Arg) -> Call:
    """Any command, to run in a pipeline beside scripts."""
    return Call(None, parts)


async def run(client: Any, calls: Sequence[Call]) -> list[Any]:
    """The calls in one pipeline (no transaction), their replies in order. Calls that found
    their script missing are run again after it is loaded; any other error is raised, the
    first one, after every call has run (a cluster client reports a node it lost as its
    calls' replies)."""
    replies = await _pipelined(client, calls)
    missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        for source in {script.source for n in missing if (script := calls[n].script)}:
            await client.script_load(source)  # a cluster client loads it on every primary
        again = await _pipelined(client, [calls[n] for n in missing])
        for n, reply in zip(missing, again, strict=True):
            replies[n] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def _pipelined(client: Any, calls: Sequence[Call]) -> list[Any]:
    if not calls:  # a batch whose steps need no read (their facts were kept)
        return []
    async with client.pipeline(transaction=False) as pipe:
        for call in calls:
            pipe.execute_command(*call.command)
        return list(await pipe.execute(raise_on_error=False))
