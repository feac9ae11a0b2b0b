"""Trending scopes: the named slices of the event stream that each keep their own trending list.

A scope is ``global``, ``category:X``, ``merchant:Z`` or ``stream:Y`` (one live stream). The
caller decides which scopes an event belongs to (:func:`scopes_for` does the usual thing) and
adds the event's weight to each.

>>> stream_scope("live-3"), merchant_scope("m7"), category_scope("beauty")
('stream:live-3', 'merchant:m7', 'category:beauty')
"""

from __future__ import annotations

from typing import Final

from models.events import Event

GLOBAL_SCOPE: Final = "global"


def category_scope(category: str) -> str:
    return f"category:{category}"


def merchant_scope(merchant_id: str) -> str:
    return f"merchant:{merchant_id}"


def stream_scope(stream_id: str) -> str:
    return f"stream:{stream_id}"


def scopes_for(
    event: Event, category: str | None = None, merchant_id: str | None = None
) -> tuple[str, ...]:
    """The scopes an item event counts in: global, its category and merchant (from the
    catalogue, which the caller looks up) and its live stream, if any.

    >>> from models.events import EventType
    >>> ev = Event("e1", EventType.CART, "u1", 1.0, item_id="sku-9", stream_id="live-3")
    >>> scopes_for(ev, category="beauty", merchant_id="m7")
    ('global', 'category:beauty', 'merchant:m7', 'stream:live-3')
    >>> scopes_for(Event("e2", EventType.FOLLOW, "u1", 1.0, target_user_id="u2"))
    ()
    """
    if event.item_id is None:
        return ()
    scopes = [GLOBAL_SCOPE]
    if category:
        scopes.append(category_scope(category))
    if merchant_id:
        scopes.append(merchant_scope(merchant_id))
    if event.stream_id:
        scopes.append(stream_scope(event.stream_id))
    return tuple(scopes)
