"""Content-based source: catalogue vectors shared through Redis, profiles per user.

Why this source exists: it is the first personal signal a new user gets (one event already
makes a profile, while item-CF needs co-occurrences), and the only one that can place a new
item the moment its catalogue record arrives (no user has to touch it first).

Where the state lives (key names from :mod:`streams.keys`):

- ``content_items`` (hash item -> JSON catalogue record): the catalogue as content sees it.
  Each worker keeps a local :class:`models.content.ContentModel` of *all* items, rebuilt from
  the records (feature hashing is stable, so every worker computes identical vectors), because
  scoring a profile against every item is one vectorised product, not a Redis call per item.
- ``content_changes`` (stream of item ids, approximately trimmed): every put or delete adds
  the ids; :meth:`RedisContent.sync` follows it from its last position, and reloads everything
  when the stream was trimmed past that position (detected exactly by ``entries-added``).
- ``i:{item}:content_sim`` (zset, top ``neighbours`` by cosine): written when the record
  arrives, and the new item is added into the lists of its nearest items at the same time, so
  it is reachable as a neighbour immediately.
- ``u:{user}:content_profile`` (string): the decayed profile plus the user's last few content
  items (to explain candidates and to keep them out of the user's own list). It is the only
  per-user state; erasure deletes it. Only the worker owning the user's partition writes it,
  so a read-modify-write per batch is safe.

The local model holds a profile only for the duration of one synchronous computation (import,
score, forget, with no ``await`` in between): no user state stays in worker memory.

>>> raw = pack_profile(b"blob", [("p1", 1_700_000_000.0, 3.0)])
>>> unpack_profile(raw)
(b'blob', [('p1', 1700000000.0, 3.0)])
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import orjson
import redis.asyncio as aioredis

from models.content import CatalogRecord, ContentModel, Scores
from models.events import DEFAULT_WEIGHTS, Event, EventType
from models.hybrid import PROFILE_MATCH
from models.recommend import Candidate, Reason, Source
from streams.keys import Keys, decoded
from streams.sources.progress import Learnt, commit

log = logging.getLogger(__name__)

#: (item id, event time, weight) of one of the user's recent content items.
RecentItem = tuple[str, float, float]

#: Item ids per change-stream entry (one entry per put or delete of up to this many items).
_IDS_PER_ENTRY: Final = 256

#: Neighbour-list edits of one put or delete. Key names come from Python (streams.keys).
#: ARGV: k, then JSON {unlink: [[key, member]], own: [[key, [score, member, ...]]],
#: back: [[key, [score, member, ...]]]}: own lists are replaced, back-links added and trimmed.
_NEIGHBOURS_LUA: Final = """
local k = tonumber(ARGV[1])
local p = cjson.decode(ARGV[2])
for _, e in ipairs(p.unlink) do redis.call('ZREM', e[1], e[2]) end
for _, e in ipairs(p.own) do
  redis.call('DEL', e[1])
  if #e[2] > 0 then redis.call('ZADD', e[1], unpack(e[2])) end
end
for _, e in ipairs(p.back) do
  redis.call('ZADD', e[1], unpack(e[2]))
  redis.call('ZREMRANGEBYRANK', e[1], 0, -(k + 1))
end
return 0
"""

_MAGIC: Final = b"SRC1"
_ENVELOPE: Final = struct.Struct("<4sI")  # magic, length of the models.content profile blob


def pack_profile(profile: bytes, recent: Sequence[RecentItem]) -> bytes:
    """One Redis string: the model's profile blob, then the recent items as JSON."""
    return _ENVELOPE.pack(_MAGIC, len(profile)) + profile + orjson.dumps(list(recent))


def unpack_profile(raw: bytes) -> tuple[bytes, list[RecentItem]]:
    """Inverse of :func:`pack_profile`; ``ValueError`` for anything else.

    >>> unpack_profile(b"nonsense")
    Traceback (most recent call last):
    ...
    ValueError: not a content profile record
    """
    if len(raw) < _ENVELOPE.size or raw[:4] != _MAGIC:
        raise ValueError("not a content profile record")
    _, size = _ENVELOPE.unpack_from(raw)
    start = _ENVELOPE.size
    if len(raw) < start + size:
        raise ValueError("content profile record is truncated")
    try:
        entries = orjson.loads(raw[start + size :])
        recent = [(str(i), float(ts), float(w)) for i, ts, w in entries]
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError("content profile record has bad recent items") from exc
    return raw[start : start + size], recent


def record_mapping(record: CatalogRecord) -> dict[str, object]:
    """The record as the mapping :meth:`ContentModel.add_item` takes (and as stored JSON)."""
    return {
        "item_id": record.item_id,
        "title": record.title,
        "category": record.category,
        "brand": record.brand,
        "merchant_id": record.merchant_id,
        "price": record.price,
        "tags": list(record.tags),
    }


def _blob(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def entry_items(fields: Mapping[Any, Any]) -> list[str]:
    """The item ids of a change-stream entry (bytes or decoded responses alike)."""
    value = fields.get(b"items", fields.get("items"))
    try:
        items = orjson.loads(value) if value is not None else []
    except orjson.JSONDecodeError:
        return []
    return [str(i) for i in items] if isinstance(items, list) else []


@dataclass(frozen=True, slots=True)
class ContentParams:
    """``neighbours``: size of each ``content_sim`` list. ``recent_items``: items kept with a
    profile to explain candidates. ``sync_interval_s``: how stale the local catalogue may get
    before reads follow the change stream again. ``profile_ttl_s``: a profile nobody updates
    expires (a week's half-life leaves under 1 % of a purchase after ~13 weeks)."""

    neighbours: int = 20
    recent_items: int = 8
    sync_interval_s: float = 1.0
    stream_maxlen: int = 100_000
    scan_count: int = 1_000
    profile_ttl_s: int = 90 * 86_400
    weights: Mapping[EventType, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))


@dataclass(slots=True)
class _Position:
    last_id: str  # last change-stream entry applied
    added: int  # the stream's entries-added counter at that entry


class RedisContent:
    """The content source (:class:`streams.sources.SourceModel`) over Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys | None = None,
        params: ContentParams | None = None,
        model: ContentModel | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.keys = keys or Keys()
        self.params = params or ContentParams()
        self.model = model or ContentModel()
        self._clock = clock
        self._position: _Position | None = None
        self._synced_at = -float("inf")
        self._lock = asyncio.Lock()
        self._items_key = self.keys.global_("content_items")
        self._stream_key = self.keys.global_("content_changes")
        self._script = client.register_script(_NEIGHBOURS_LUA)

    @property
    def source(self) -> Source:
        return Source.CONTENT

    # ---- catalogue ---------------------------------------------------------------------------
    async def put_items(self, records: Sequence[CatalogRecord]) -> None:
        """Store records, announce them, and give each its content neighbours right away.

        Round trips: a sync (one when nothing changed), one read of the items' current
        neighbour lists, and one transaction writing records, lists and announcements.
        """
        latest = {r.item_id: r for r in records}
        if not latest:
            return
        await self.sync()
        ids = list(latest)
        k = self.params.neighbours
        # Lists the items were in before (a changed record may no longer belong there).
        stale = await self._linked(ids)
        for record in latest.values():
            self.model.add_item(record_mapping(record))
        own: dict[str, list[tuple[str, float]]] = {}
        back: dict[str, list[tuple[float, str]]] = {}
        for item in ids:
            own[item] = self.model.similar_items(item, k)
            for other, score in own[item]:
                back.setdefault(other, []).append((score, item))
        # Only the best k back-links of a list can survive its trim: send no more.
        for links in back.values():
            links.sort(key=lambda si: (-si[0], si[1]))
            del links[k:]
        await self._write(
            ids,
            stale,
            own,
            back,
            records={i: orjson.dumps(record_mapping(r)) for i, r in latest.items()},
        )

    async def delete_items(self, item_ids: Sequence[str]) -> None:
        """Forget delisted items: vector, own neighbours, and their place in others' lists."""
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            return
        await self.sync()
        linked = await self._linked(ids)
        for item in ids:
            self.model.remove_item(item)
        await self._write(ids, linked, {item: [] for item in ids}, {}, records={})

    async def _write(
        self,
        ids: Sequence[str],
        unlink: Mapping[str, Iterable[str]],
        own: Mapping[str, Sequence[tuple[str, float]]],
        back: Mapping[str, Sequence[tuple[float, str]]],
        records: Mapping[str, bytes],
    ) -> None:
        """One transaction: neighbour lists (a script, so 40k list edits are one command),
        records, and the change announcement; then skip our own announcement when nobody
        else wrote in between, so the next sync does not re-read what we already have."""
        sim = functools.partial(self.keys.item, field="content_sim")
        payload = {
            "unlink": [[sim(o), item] for item, others in unlink.items() for o in others],
            "own": [[sim(i), [v for m, s in n for v in (repr(s), m)]] for i, n in own.items()],
            "back": [[sim(o), [v for s, m in n for v in (repr(s), m)]] for o, n in back.items()],
        }
        position = self._position
        pipe = self.client.pipeline(transaction=True)
        await self._script(args=[self.params.neighbours, orjson.dumps(payload)], client=pipe)
        if records:
            mapping: dict[Any, Any] = dict(records)
            pipe.hset(self._items_key, mapping=mapping)
        removed = [i for i in ids if i not in records]
        if removed:
            pipe.hdel(self._items_key, *removed)
        chunks = [ids[n : n + _IDS_PER_ENTRY] for n in range(0, len(ids), _IDS_PER_ENTRY)]
        for chunk in chunks:
            pipe.xadd(
                self._stream_key,
                {"items": orjson.dumps(list(chunk))},
                maxlen=self.params.stream_maxlen,
                approximate=True,
            )
        pipe.xinfo_stream(self._stream_key)
        results = await pipe.execute()
        added, last_id = self._stream_state(results[-1])
        mine = position is not None and added == position.added + len(chunks)
        if mine and position is self._position:
            self._position = _Position(last_id, added)

    async def similar(self, item_id: str, k: int) -> list[tuple[str, float]]:
        """The item's content neighbours, best first, never a deleted item."""
        if k <= 0:
            return []
        rows: list[Any] = await self.client.zrevrange(
            self.keys.item(item_id, "content_sim"), 0, 2 * k - 1, withscores=True
        )
        found = [(decoded(m), float(s)) for m, s in rows]
        unknown = [m for m, _ in found if m not in self.model]
        if unknown:  # deleted, or added by another worker since our last sync: ask Redis
            present = await self.client.hmget(self._items_key, unknown)
            gone = {m for m, v in zip(unknown, present, strict=True) if v is None}
            found = [(m, s) for m, s in found if m not in gone]
        return found[:k]

    async def _linked(self, ids: Sequence[str]) -> dict[str, set[str]]:
        """Items whose ``content_sim`` may list each of ``ids``: its own list (cosine is
        symmetric, so mostly they list it back) and its wider local neighbourhood."""
        pipe = self.client.pipeline(transaction=False)
        for item in ids:
            pipe.zrange(self.keys.item(item, "content_sim"), 0, -1)
        stored = await pipe.execute()
        linked: dict[str, set[str]] = {}
        for item, members in zip(ids, stored, strict=True):
            others = {decoded(m) for m in members}
            if item in self.model:
                wide = self.model.similar_items(item, 4 * self.params.neighbours)
                others.update(o for o, _ in wide)
            others.discard(item)
            linked[item] = others
        return linked

    # ---- following the catalogue -------------------------------------------------------------
    async def sync(self) -> int:
        """Bring the local catalogue up to date; returns how many items changed locally.

        The first call loads everything; later ones read the change stream from the last
        position (one round trip when nothing changed). If entries after the position were
        trimmed (or the stream was recreated), the counts disagree and everything is reloaded.
        """
        async with self._lock:
            self._synced_at = self._clock()
            if self._position is None:
                return await self._reload()
            pipe = self.client.pipeline(transaction=True)
            pipe.xinfo_stream(self._stream_key)
            pipe.xread(
                {self._stream_key: self._position.last_id}, count=4 * self.params.stream_maxlen
            )
            info, read = await pipe.execute(raise_on_error=False)
            added, _ = self._stream_state(info)
            entries = read[0][1] if isinstance(read, list) and read else []
            if added != self._position.added + len(entries):
                log.info("content change stream was trimmed past this worker: reloading")
                return await self._reload()
            if not entries:
                return 0
            ids = list(dict.fromkeys(i for _, fields in entries for i in entry_items(fields)))
            values = await self.client.hmget(self._items_key, ids)
            self._position = _Position(decoded(entries[-1][0]), added)
            return self._apply({i: _blob(v) for i, v in zip(ids, values, strict=True)})

    async def sync_if_due(self) -> None:
        if self._clock() - self._synced_at >= self.params.sync_interval_s:
            await self.sync()

    async def _reload(self) -> int:
        # The position first: changes during the scan are replayed by the next sync.
        pipe = self.client.pipeline(transaction=True)
        pipe.xinfo_stream(self._stream_key)
        info = await pipe.execute(raise_on_error=False)
        added, last_id = self._stream_state(info[0])
        loaded: dict[str, bytes | None] = {}
        async for item, value in self.client.hscan_iter(
            self._items_key, count=self.params.scan_count
        ):
            loaded[decoded(item)] = _blob(value)
        for item in set(self.model.item_ids()) - loaded.keys():
            loaded[item] = None
        self._position = _Position(last_id, added)
        return self._apply(loaded)

    def _apply(self, changes: Mapping[str, bytes | None]) -> int:
        """Add, replace or remove items (``None``: gone), with no ``await`` in between."""
        bad = 0
        for item, value in changes.items():
            if value is None:
                self.model.remove_item(item)
                continue
            try:
                self.model.add_item(orjson.loads(value))
            except (ValueError, TypeError, AttributeError):
                bad += 1
        if bad:
            log.warning("skipped %d malformed content records", bad)
        return len(changes) - bad

    @staticmethod
    def _stream_state(info: object) -> tuple[int, str]:
        """(entries-added, last-generated-id); a missing stream has had nothing added."""
        if not isinstance(info, dict):
            return 0, "0-0"
        return int(info["entries-added"]), decoded(info["last-generated-id"])

    # ---- users -------------------------------------------------------------------------------
    def _weight(self, event: Event) -> float:
        return float(self.params.weights.get(event.type, 0.0)) if event.item_id else 0.0

    async def learn(self, events: Sequence[Event], learnt: Learnt | None = None) -> None:
        """Mix each item event into its user's profile: one read and one write per batch."""
        useful = [e for e in events if e.item_id is not None and self._weight(e) != 0.0]
        if not useful:
            return
        await self.sync_if_due()
        users = list(dict.fromkeys(e.user_id for e in useful))
        raws = await self._read_profiles(users)
        written: dict[str, bytes] = {}
        for user in users:
            recent = self._import(user, raws.get(user))
            try:
                changed = False
                for event in (e for e in useful if e.user_id == user):
                    assert event.item_id is not None
                    if self.model.update_profile(
                        user, event.item_id, self._weight(event), event.ts
                    ):
                        recent = [r for r in recent if r[0] != event.item_id]
                        recent.append((event.item_id, event.ts, self._weight(event)))
                        changed = True
                profile = self.model.export_profile(user)
            finally:
                self.model.forget_user(user)
            if changed and profile is not None:
                recent.sort(key=lambda r: (-r[1], r[0]))
                written[user] = pack_profile(profile, recent[: self.params.recent_items])

        def queue(pipe: Any) -> None:
            for user, raw in written.items():
                pipe.set(self.keys.user(user, "content_profile"), raw, ex=self.params.profile_ttl_s)

        await commit(self.client, learnt, queue)  # the marks even if no profile changed

    async def candidates(
        self,
        user_ids: Sequence[str],
        exclude: Mapping[str, frozenset[str]],
        k: int,
        now: float,
    ) -> dict[str, list[Candidate]]:
        """Up to ``k`` items nearest each user's profile, never excluded nor among the user's
        recent content items, each explained by the user's item it resembles most (else
        ``profile_match``). Older items the user saw come through ``exclude``."""
        await self.sync_if_due()
        users = list(dict.fromkeys(user_ids))
        raws = await self._read_profiles(users)
        out: dict[str, list[Candidate]] = {}
        for user in users:
            recent = self._import(user, raws.get(user))
            try:
                own = {item for item, _, _ in recent}
                best = self.model.top_k(user, k, exclude.get(user, frozenset()) | own, now=now)
            finally:
                self.model.forget_user(user)
            out[user] = self._explain(best, recent)
        return out

    async def score(self, user_id: str, item_ids: Sequence[str], now: float) -> Scores:
        """Cosines of the user's profile with ``item_ids`` (0: cold user or unknown item), so
        the assembly can weigh other sources' candidates by content."""
        await self.sync_if_due()
        raws = await self._read_profiles([user_id])
        self._import(user_id, raws.get(user_id))
        try:
            return self.model.score(user_id, item_ids, now)
        finally:
            self.model.forget_user(user_id)

    async def erase(self, user_ids: Sequence[str]) -> dict[str, int]:
        """Delete the users' profiles (item vectors carry no user data)."""
        users = list(dict.fromkeys(user_ids))
        async with self.client.pipeline(transaction=True) as pipe:
            for user in users:
                pipe.delete(self.keys.user(user, "content_profile"))
            gone = await pipe.execute()
        return {u: int(n) for u, n in zip(users, gone, strict=True)}

    async def _read_profiles(self, users: Sequence[str]) -> dict[str, bytes]:
        if not users:
            return {}
        raws = await self.client.mget([self.keys.user(u, "content_profile") for u in users])
        return {u: b for u, r in zip(users, raws, strict=True) if (b := _blob(r)) is not None}

    def _import(self, user: str, raw: bytes | None) -> list[RecentItem]:
        """Load the stored profile into the local model; a bad record counts as cold."""
        if raw is None:
            return []
        try:
            profile, recent = unpack_profile(raw)
            self.model.import_profile(user, profile)
        except ValueError:
            log.warning("unreadable content profile ignored")
            self.model.forget_user(user)
            return []
        return recent

    def _explain(self, best: list[tuple[str, float]], recent: list[RecentItem]) -> list[Candidate]:
        if not best:
            return []
        ids = [item for item, _ in best]
        liked = [item for item, _, w in recent if w > 0 and item in self.model]
        if liked:
            sims = np.stack([self.model.similarities(item, ids) for item in liked])
            nearest = sims.argmax(axis=0)
            closeness = sims.max(axis=0)
        out = []
        for c, (item, score) in enumerate(best):
            if liked and closeness[c] > 0.0:
                out.append(Candidate(item, score, (Reason(liked[int(nearest[c])], score),)))
            else:
                out.append(Candidate(item, score, PROFILE_MATCH))
        return out
