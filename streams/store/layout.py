"""The store's layout record: which key layout, and which partition count, Redis's keys follow.

A user's keys carry the hash tag of their partition of ``events`` (streams/keys.py), computed
for the partition count topics.yaml declares. Keys written for another count, or before keys
had tags, would be invisible to every process: the workers would start from empty state while
the old state sat beside it, taking memory and never erased. So each process that uses the
state checks the record before it starts (streams/runtime/launch.py ``preflight``), and the
first one on an empty store writes it.
"""

from __future__ import annotations

from typing import Any

from streams.keys import LAYOUT_VERSION, Keys, decoded

#: What to do when the record disagrees: the state cannot be moved, only rebuilt from events.
REBUILD = (
    "rebuild the state: stop every worker, delete the socialrec keys from Redis and replay "
    "`events` from its start (it keeps 7 days)"
)


async def check_layout(client: Any, keys: Keys) -> str | None:
    """What is wrong with the store's layout for ``keys`` (None: nothing; an empty store
    gets the record)."""
    want = {"version": str(LAYOUT_VERSION), "partitions": str(keys.partitions)}
    stored = {decoded(k): decoded(v) for k, v in (await client.hgetall(keys.layout())).items()}
    if not stored:
        # Layout 1 kept every partition's offsets in one untagged hash.
        if await client.exists(f"{keys.prefix}offsets"):
            return f"Redis holds state of an older key layout (1, before partition tags): {REBUILD}"
        await client.hset(keys.layout(), mapping=want)
        return None
    if stored.get("partitions") == want["partitions"] and stored != want:
        return (
            f"Redis holds state of key layout {stored.get('version')}, and this version of "
            f"socialrec reads layout {LAYOUT_VERSION}: {REBUILD}"
        )
    if stored != want:
        return (
            f"Redis holds state laid out for {stored.get('partitions')} partitions of `events` "
            f"(layout {stored.get('version')}), but topics.yaml declares {keys.partitions} "
            f"(layout {LAYOUT_VERSION}): {REBUILD}, or restore the earlier topics.yaml"
        )
    return None
