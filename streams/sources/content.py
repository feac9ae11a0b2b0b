"""Content-based source: catalogue vectors shared through Redis, profiles per user.

Why this source exists: it is the first personal signal a new user gets (one event already
makes a profile, while item-CF needs co-occurrences), and the only one that can place a new
item the moment its catalogue record arrives (no user has to touch it first).

The catalogue (records, change stream, ``content_sim`` lists) is followed by
:class:`streams.sources.content_catalogue.ContentCatalogue`; this module holds the users' side.
``u:{user}:content_profile`` (string, streams/sources/content_records.py) holds the decayed
profile plus the user's last few content items (to explain candidates and to keep them out of
the user's own list). It is the only per-user state; erasure deletes it. Only the worker owning
the user's partition writes it, so a read-modify-write per batch is safe.

The local model holds a profile only for the duration of one synchronous computation (import,
score, forget, with no ``await`` in between): no user state stays in worker memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import redis.asyncio as aioredis

from models.content import CatalogRecord, ContentModel, Scores
from models.events import Event
from models.hybrid import PROFILE_MATCH
from models.recommend import Candidate, Reason, Source
from streams.keys import Keys
from streams.sources.content_catalogue import ContentCatalogue
from streams.sources.content_records import (
    ContentParams,
    RecentItem,
    blob,
    pack_profile,
    unpack_profile,
)
from streams.sources.handoff import Handoffs
from streams.sources.progress import Marks
from streams.sources.writes import ByPartition

log = logging.getLogger(__name__)


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
        self.catalogue = ContentCatalogue(client, self.keys, self.params, self.model, clock)
        self.handoffs = Handoffs(client, self.keys, self.source.value)

    @property
    def source(self) -> Source:
        return Source.CONTENT

    # ---- catalogue (streams/sources/content_catalogue.py) ------------------------------------
    async def put_items(self, records: Sequence[CatalogRecord]) -> None:
        """Store records, announce them, and give each its content neighbours right away."""
        await self.catalogue.put_items(records)

    async def delete_items(self, item_ids: Sequence[str]) -> None:
        """Forget delisted items: vector, own neighbours, and their place in others' lists."""
        await self.catalogue.delete_items(item_ids)

    async def similar(self, item_id: str, k: int) -> list[tuple[str, float]]:
        """The item's content neighbours, best first, never a deleted item."""
        return await self.catalogue.similar(item_id, k)

    async def sync(self) -> int:
        """Bring the local catalogue up to date; returns how many items changed locally."""
        return await self.catalogue.sync()

    # ---- users -------------------------------------------------------------------------------
    def _weight(self, event: Event) -> float:
        return float(self.params.weights.get(event.type, 0.0)) if event.item_id else 0.0

    async def learn(self, events: Sequence[Event], learnt: Marks | None = None) -> None:
        """Mix each item event into its user's profile: one read, and one step per partition
        (in one round trip) writing its users' profiles with its marks."""
        useful = [e for e in events if e.item_id is not None and self._weight(e) != 0.0]
        if not useful:
            return
        await self.catalogue.sync_if_due()
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

        writes = ByPartition(self.keys)
        for user, raw in written.items():
            key = self.keys.user(user, "content_profile")
            writes.user(user).add("SET", key, raw, "EX", self.params.profile_ttl_s)
        # A partition whose profiles did not change moves its marks alone (SourceSet.learn).
        await self.handoffs.run(writes.steps(learnt))

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
        await self.catalogue.sync_if_due()
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
        await self.catalogue.sync_if_due()
        raws = await self._read_profiles([user_id])
        self._import(user_id, raws.get(user_id))
        try:
            return self.model.score(user_id, item_ids, now)
        finally:
            self.model.forget_user(user_id)

    async def erase(self, user_ids: Sequence[str]) -> dict[str, int]:
        """Delete the users' profiles (item vectors carry no user data): a command each."""
        users = list(dict.fromkeys(user_ids))
        async with self.client.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.delete(self.keys.user(user, "content_profile"))
            gone = await pipe.execute()
        return {u: int(n) for u, n in zip(users, gone, strict=True)}

    async def _read_profiles(self, users: Sequence[str]) -> dict[str, bytes]:
        if not users:
            return {}
        raws = await self.client.mget([self.keys.user(u, "content_profile") for u in users])
        return {u: b for u, r in zip(users, raws, strict=True) if (b := blob(r)) is not None}

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
