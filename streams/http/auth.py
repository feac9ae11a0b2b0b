"""Who is calling: API keys with roles, and hosts' signed live-page links.

Keys are random strings handed to callers once (``socialrec keys new``); the worker keeps only
their SHA-256 digests (``SOCIALREC_API_KEYS`` or ``SOCIALREC_API_KEYS_FILE``), so a leaked
configuration opens nothing, and compares digests with :func:`hmac.compare_digest` against
every entry, so the time taken says nothing about which entry came close. An entry binds a
role, and a merchant key its merchant::

    # role[:id]     digest of the key
    operator        sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
    merchant:m1     sha256:...

A host gets no key but a link (``socialrec host-link``): the live page's URL with
``stream``, ``exp`` and ``sig``, an HMAC of both under ``SOCIALREC_HOST_LINK_SECRET``. It opens
on a phone with nothing to type, is good for one stream until it expires, and every link dies
when the secret changes. Nothing here logs a key, a digest or a link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from streams.config import ConfigError, Settings

FRONTEND, HOST, MERCHANT, OPERATOR = "frontend", "host", "merchant", "operator"
#: Roles an API key can have (hosts use links).
KEY_ROLES: Final = (FRONTEND, MERCHANT, OPERATOR)
#: A link valid for longer than this is refused, however it was signed: a lost phone's link
#: must die on its own.
MAX_LINK_TTL_S: Final = 7 * 86_400
_ENTRY_RE: Final = re.compile(
    r"(frontend|merchant:([^\s,#]{1,128})|operator) sha256:([0-9a-f]{64})"
)
#: A comment: from a ``#`` at the start of a line or after a space to the end of the line.
_COMMENT_RE: Final = re.compile(r"(^|\s)#.*")


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller the worker recognised: its role, the merchant or stream it is bound to, and
    the name of its rate-limit bucket (a digest prefix, never the key)."""

    role: str
    bound: str | None
    bucket: str


def digest(key: str) -> str:
    """The hex SHA-256 of a key, as the entries store it.

    >>> digest("sr_example")[:12]
    'c96691d86683'

    A header's bytes that are not UTF-8 reach here as surrogates: they are hashed as sent.
    """
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def new_key() -> str:
    """A fresh API key: 256 random bits, with a prefix that makes it easy to spot in a leak."""
    return "sr_" + secrets.token_urlsafe(32)


def new_link_secret() -> str:
    """A fresh SOCIALREC_HOST_LINK_SECRET (43 characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def entry_line(key: str, role: str, merchant: str | None = None) -> str:
    """The configuration line of ``key``.

    >>> entry_line("sr_example", "merchant", "m1")[:24]
    'merchant:m1 sha256:c9669'
    """
    name = f"{role}:{merchant}" if role == MERCHANT else role
    line = f"{name} sha256:{digest(key)}"
    if _ENTRY_RE.fullmatch(line) is None:
        raise ValueError("a merchant id of 1-128 characters, without spaces, ',' or '#'")
    return line


class Keyring:
    """The configured keys, looked up by the digest of a presented key.

    >>> ring = Keyring.parse(entry_line("sr_a", "operator") + "  # mine, for now", "test")
    >>> ring.verify("sr_a").role, ring.verify("sr_b")
    ('operator', None)
    >>> Keyring.parse("admin sha256:00", "SOCIALREC_API_KEYS")
    Traceback (most recent call last):
    ...
    streams.config.ConfigError: socialrec: SOCIALREC_API_KEYS entry 1 is not `<role>[:<id>] sha256:<64 hex digits>` with role frontend, merchant:<merchant id> or operator; make entries with `socialrec keys new`
    """  # noqa: E501

    def __init__(self, entries: list[tuple[str, Principal]]) -> None:
        self.entries = entries

    @classmethod
    def parse(cls, text: str, where: str) -> Keyring:
        entries: list[tuple[str, Principal]] = []
        parts = [p for line in text.splitlines() for p in _COMMENT_RE.sub("", line).split(",")]
        for number, part in enumerate((p for p in parts if p.strip()), start=1):
            match = _ENTRY_RE.fullmatch(" ".join(part.split()))
            if match is None:
                raise ConfigError(
                    f"socialrec: {where} entry {number} is not `<role>[:<id>] sha256:<64 hex "
                    "digits>` with role frontend, merchant:<merchant id> or operator; make "
                    "entries with `socialrec keys new`"
                )
            role = match[1].split(":", 1)[0]
            hexdigest = match[3]
            if any(hmac.compare_digest(hexdigest, known) for known, _ in entries):
                raise ConfigError(f"socialrec: {where} entry {number} repeats a key's digest")
            entries.append((hexdigest, Principal(role, match[2], "key:" + hexdigest[:16])))
        return cls(entries)

    @classmethod
    def load(cls, settings: Settings) -> Keyring:
        """The keys of the environment and of the keys file, or a message saying what to fix."""
        ring = cls.parse(settings.api_keys, "SOCIALREC_API_KEYS")
        path = settings.api_keys_file
        if path is not None:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"socialrec: SOCIALREC_API_KEYS_FILE {path} cannot be read "
                    f"({type(exc).__name__}): fix the path or the file's permissions"
                ) from None
            ring = cls(ring.entries + cls.parse(text, f"SOCIALREC_API_KEYS_FILE {path}").entries)
        return ring

    def verify(self, key: str) -> Principal | None:
        """The key's principal, or None. Every entry is compared, match or not."""
        if not key:  # whatever the entries hold, "Bearer " alone opens nothing
            return None
        presented = digest(key)
        found = None
        for hexdigest, principal in self.entries:
            if hmac.compare_digest(hexdigest, presented):
                found = principal
        return found

    def roles(self) -> dict[str, int]:
        """How many keys of each role (what the worker may log at start)."""
        counts = dict.fromkeys(KEY_ROLES, 0)
        for _, principal in self.entries:
            counts[principal.role] += 1
        return counts


def link_signature(secret: str, stream_id: str, expires: int) -> str:
    """The ``sig`` of a host link: HMAC-SHA256 of the stream and expiry, base64url.

    >>> link_signature("s" * 32, "live-1", 1700000000)[:10]
    'trfyx5hZb7'
    """
    message = f"live\n{stream_id}\n{expires}".encode("utf-8", "surrogateescape")
    mac = hmac.new(secret.encode(), message, hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def link_query(secret: str, stream_id: str, expires: int) -> str:
    """The query string that makes the live page's URL a host's link (the stream id
    percent-encoded: any id events accept may name a stream).

    >>> link_query("s" * 32, "live 1/é", 1700000000)[:32]
    'stream=live%201%2F%C3%A9&exp=170'
    """
    sig = link_signature(secret, stream_id, expires)
    return f"stream={quote(stream_id, safe='')}&exp={expires}&sig={sig}"


def verify_link(secret: str, stream_id: str, expires: str, sig: str, now: float) -> Principal | str:
    """The host a link's parameters name, or why they are refused (``invalid``, ``expired``).

    >>> q = dict(p.split("=") for p in link_query("s" * 32, "a", 1000).split("&"))
    >>> verify_link("s" * 32, q["stream"], q["exp"], q["sig"], now=900.0).bound
    'a'
    >>> verify_link("s" * 32, "b", q["exp"], q["sig"], now=900.0)
    'invalid'
    >>> verify_link("s" * 32, q["stream"], q["exp"], q["sig"], now=1000.0)
    'expired'
    """
    # Query values are the caller's: '²' passes isdigit() and fails int(), and
    # compare_digest refuses non-ASCII text, so both are checked as ASCII first.
    if not secret or not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        return "invalid"
    expected = link_signature(secret, stream_id, int(expires)).encode()
    if not hmac.compare_digest(expected, sig.encode("utf-8", "surrogateescape")):
        return "invalid"
    if int(expires) <= now:
        return "expired"
    if int(expires) > now + MAX_LINK_TTL_S:
        return "invalid"
    return Principal(HOST, stream_id, "link:" + sig[:16])
