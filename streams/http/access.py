"""``socialrec keys`` and ``socialrec host-link``: the credentials streams/http/guard.py accepts.

A key is printed once, with the line that configures its digest; nothing keeps the key. A
host's link is the live page's URL signed for one stream until ``--ttl`` from now.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from models.events import ID_RULE, is_valid_id
from streams.config import Settings
from streams.http import auth
from streams.http.http_input import path_segment

#: Units ``--ttl`` understands.
TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _fail(command: str, problem: str) -> int:
    print(f"socialrec {command}: {problem}", file=sys.stderr)
    return 2


def run_keys(
    action: str,
    role: str | None,
    merchant: str | None,
    key_file: Path | None = None,
    keys_file: Path | None = None,
) -> int:
    """``keys new`` prints a key and its configuration line; ``keys link-secret`` a secret.

    With ``key_file`` the key goes into that file (mode 0600, for a program such as
    Prometheus to read; a key already there is kept, so running it again changes nothing)
    instead of the terminal; with ``keys_file`` its line is added to the worker's keys file.
    """
    if action == "link-secret":
        print(auth.new_link_secret())
        return 0
    if role is None or (role == auth.MERCHANT) != (merchant is not None):
        return _fail("keys new", "give --role, and --merchant with (only) a merchant key")
    kept = key_file is not None and key_file.exists()
    key = key_file.read_text().strip() if key_file is not None and kept else auth.new_key()
    if not key or any(c.isspace() for c in key):  # an empty placeholder is no key
        return _fail("keys new", f"--key-file {key_file} holds no key: delete it to make one")
    try:
        line = auth.entry_line(key, role, merchant)
    except ValueError as exc:
        return _fail("keys new", f"--merchant: {exc}")
    if key_file is None:
        print(f"key (give it to the caller; it is not stored anywhere): {key}")
    elif not kept:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.touch(mode=0o600)  # created unreadable to others before the key is in it
        key_file.write_text(key + "\n")
    if key_file is not None:
        print(f"key in {key_file} ({'kept' if kept else 'new'}; readable by its owner only)")
    if keys_file is not None and line not in _lines(keys_file):
        with keys_file.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
    print("line for SOCIALREC_API_KEYS_FILE (or SOCIALREC_API_KEYS):")
    print(line)
    return 0


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def parse_ttl(text: str) -> int | None:
    """Seconds of ``90``, ``90s``, ``30m``, ``8h`` or ``2d``; None for anything else.

    >>> parse_ttl("8h"), parse_ttl("90"), parse_ttl("0s"), parse_ttl("1w")
    (28800, 90, None, None)
    """
    number, unit = (text[:-1], text[-1]) if text[-1:] in TTL_UNITS else (text, "s")
    if not number.isdigit() or int(number) == 0:
        return None
    return int(number) * TTL_UNITS[unit]


def run_host_link(settings: Settings, stream_id: str, ttl: str, base: str | None) -> int:
    """Print a host's link to ``stream_id``'s live page, valid for ``ttl``."""
    seconds = parse_ttl(ttl)
    if not settings.host_link_secret:
        return _fail(
            "host-link",
            "set SOCIALREC_HOST_LINK_SECRET (make one with `socialrec keys link-secret`)",
        )
    if not is_valid_id(stream_id):
        return _fail("host-link", f"--stream: {ID_RULE}")
    if seconds is None or seconds > auth.MAX_LINK_TTL_S:
        days = auth.MAX_LINK_TTL_S // 86_400
        return _fail("host-link", f"--ttl: a duration like 90s, 30m, 8h or 2d, at most {days}d")
    expires = int(time.time()) + seconds
    query = auth.link_query(settings.host_link_secret, stream_id, expires)
    base = base or f"http://{settings.web_host}:{settings.web_port}"
    print(f"{base.rstrip('/')}/live/{path_segment(stream_id)}?{query}")
    return 0
