"""Free ports for servers a test module starts itself, below Linux's ephemeral range (32768 up):
there, an outgoing connection of any process can take the port between the check and the
server's bind (a CI run lost a cluster's kafka-3 that way)."""

from __future__ import annotations

import socket

EPHEMERAL_FROM = 32768


def free_run(start: int, count: int, also_above: int = 0) -> int:
    """The first port from ``start`` with ``count`` consecutive free ports (and, with
    ``also_above``, free ports that far above each, for the Redis cluster bus)."""
    for first in range(start, EPHEMERAL_FROM - count - also_above):
        wanted = range(first, first + count)
        ports = [*wanted, *(p + also_above for p in wanted)] if also_above else list(wanted)
        if all(_bindable(port) for port in ports):
            return first
    raise RuntimeError(f"no {count} consecutive free ports from {start}")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
