"""Which Redis Cluster slots each atomic step touches, as Redis itself saw it run.

:func:`watched_steps` runs a workload under ``MONITOR`` and cuts what Redis executed into its
atomic steps: a script (``EVAL``/``EVALSHA``, with every command it ran: Redis logs those as
client ``lua`` right after the call) or a ``MULTI`` … ``EXEC`` block of one connection (Redis
logs the queued commands at ``EXEC``). Every key a command touched is found by Redis's own
rules (``COMMAND``, or ``COMMAND GETKEYS`` for commands whose keys move), so a key a
script builds from its arguments counts as much as a declared one. A step is one slot when
all those keys hash to one slot (:func:`redis.crc.key_slot`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import ResponseError

_LINE = re.compile(rb"^(\d+\.\d+) \[(\d+) ([^\]]*)\] (.*)$", re.S)
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


def _unescape(arg: bytes) -> bytes:
    """An argument as ``MONITOR`` printed it (``sdscatrepr``), back to its bytes."""
    out, n = bytearray(), 0
    while n < len(arg):
        c = arg[n : n + 1]
        if c != b"\\":
            out += c
            n += 1
        elif arg[n + 1 : n + 2] == b"x":
            out.append(int(arg[n + 2 : n + 4], 16))
            n += 4
        else:
            nxt = arg[n + 1 : n + 2]
            out += _ESCAPES.get(nxt, nxt)
            n += 2
    return bytes(out)


@dataclass
class Step:
    """One atomic step: the call that opened it, what ran in it, the keys they touched."""

    opened_by: list[bytes]
    commands: list[list[bytes]] = field(default_factory=list)
    keys: set[bytes] = field(default_factory=set)
    declared: list[bytes] = field(default_factory=list)

    @property
    def slots(self) -> set[int]:
        return {key_slot(k) for k in self.keys}

    @property
    def name(self) -> str:
        """The script's first comment line or SHA, or ``MULTI`` and its first commands."""
        verb = self.opened_by[0].upper()
        if verb in (b"EVAL", b"EVALSHA"):
            return f"script {self.opened_by[1][:12].decode(errors='replace')}"
        return "MULTI " + " ".join(sorted({c[0].decode().upper() for c in self.commands}))


class _Keys:
    """Which arguments of a command are keys, by Redis's own account: the positions
    ``COMMAND`` gives, or ``COMMAND GETKEYS`` where they move or the
    command has subcommands."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.spec: dict[bytes, tuple[int, int, int] | None] = {}
        self.table: dict[str, Any] = {}

    async def of(self, command: list[bytes]) -> list[bytes]:
        name = command[0].lower()
        if not self.table:
            self.table = await self.client.command()
        if name not in self.spec:
            info = self.table[name.decode()]
            first = int(info["first_key_pos"])
            movable = "movablekeys" in info["flags"]
            positions = (first, int(info["last_key_pos"]), int(info["step_count"]))
            self.spec[name] = None if movable or first == 0 else positions
        spec = self.spec[name]
        if spec is None:
            try:
                found = await self.client.command_getkeys(*command)
                return [k if isinstance(k, bytes) else k.encode() for k in found]
            except ResponseError:  # no key at all (ECHO, PING)
                return []
        first, last, step = spec
        end = len(command) + last + 1 if last < 0 else last + 1
        return command[first:end:step]


async def watched_steps(
    client: aioredis.Redis, db: int, workload: Callable[[], Awaitable[Any]]
) -> list[Step]:
    """The scripts and transactions Redis ran in database ``db`` while ``workload`` ran."""
    end = f"end-{uuid.uuid4().hex}".encode()
    monitor = client.monitor()
    lines: list[bytes] = []
    async with monitor:
        assert monitor.connection is not None

        async def read() -> None:
            while True:
                raw = await monitor.connection.read_response()  # type: ignore[union-attr]
                lines.append(raw)
                if end in raw:
                    return

        reading = asyncio.ensure_future(read())
        await asyncio.sleep(0)
        await workload()
        await client.echo(end)
        await asyncio.wait_for(reading, 30)
    return await _steps(client, db, lines)


async def _steps(client: aioredis.Redis, db: int, lines: list[bytes]) -> list[Step]:
    keys = _Keys(client)
    steps: list[Step] = []
    open_multi: dict[bytes, Step] = {}  # per connection
    script: Step | None = None  # the script whose commands follow
    for raw in lines:
        match = _LINE.match(raw)
        if match is None or int(match.group(2)) != db:
            continue
        who = match.group(3)
        command = [_unescape(a) for a in _ARG.findall(match.group(4))]
        if not command:
            continue
        verb = command[0].upper()
        if who == b"lua":
            assert script is not None, command
            script.commands.append(command)
            script.keys.update(await keys.of(command))
            continue
        if verb == b"MULTI":
            open_multi[who] = Step([b"MULTI"])
            continue
        if verb in (b"EXEC", b"DISCARD"):
            done = open_multi.pop(who, None)
            if done is not None and verb == b"EXEC":
                steps.append(done)
            script = None
            continue
        inside = open_multi.get(who)
        if verb in (b"EVAL", b"EVALSHA"):
            declared = command[3 : 3 + int(command[2])]
            script = Step(command, declared=declared) if inside is None else inside
            script.keys.update(declared)
            if inside is None:
                steps.append(script)
            continue
        script = None
        if inside is not None:
            inside.commands.append(command)
            inside.keys.update(await keys.of(command))
    return steps


def script_sha(text: str) -> str:
    """The SHA1 Redis names a script by (what ``EVALSHA`` carries)."""
    return hashlib.sha1(text.encode()).hexdigest()
