"""Where the recommender's state lives: one interface, two implementations.

:class:`RedisStore` is production: each micro-batch is one ``EVALSHA`` of streams/lua/state.lua
(one network round trip) that deduplicates by event id, applies every event atomically and
reads back what scoring needs for the users it touched. :class:`MemoryStore` wraps the pure
reference (:class:`models.state.MemoryState`) for unit tests and offline evaluation. The store
contract suite (tests/contract) runs the same checks against both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol, cast

import redis.asyncio as aioredis

from models.events import Event, EventType
from models.state import ErasureReport, MemoryState, Outcome, PopularView, StateParams, UserView
from streams.keys import Keys


@dataclass(frozen=True, slots=True)
class ReadParams:
    """How much to read back per affected user (bounded so scoring cost is bounded)."""

    recent_items: int = 20
    neighbours: int = 20
    popular: int = 100


@dataclass(frozen=True, slots=True)
class BatchResult:
    outcomes: list[Outcome]  # one per event, in order
    views: dict[str, UserView]  # users whose item events were applied, first-seen order
    popular: PopularView


class Store(Protocol):
    async def process_batch(self, events: Sequence[Event]) -> BatchResult: ...

    async def read_users(self, user_ids: Sequence[str]) -> BatchResult: ...

    async def snapshot(self) -> dict[str, Any]: ...

    async def cache_recommendations(self, lists: Mapping[str, bytes]) -> None:
        """Keep each user's latest published list (for pull APIs; erased with the user)."""
        ...

    async def erase_users(self, user_ids: Sequence[str]) -> list[ErasureReport]:
        """Remove each user from every derived state, atomically per call."""
        ...


#: How long a cached recommendation list lives if the user goes quiet.
RECOMMENDATIONS_TTL_S = 7 * 24 * 3600


class MemoryStore:
    """The in-memory reference store (pure state machine behind the async interface)."""

    def __init__(self, params: StateParams, read: ReadParams | None = None) -> None:
        self.state = MemoryState(params)
        self.read = read or ReadParams()
        self.recommendations: dict[str, bytes] = {}

    async def process_batch(self, events: Sequence[Event]) -> BatchResult:
        outcomes = []
        touched: dict[str, None] = {}
        for event in events:
            outcome = self.state.apply(event)
            outcomes.append(outcome)
            if (
                outcome is Outcome.APPLIED
                and event.item_id is not None
                and (event.type not in (EventType.FOLLOW, EventType.UNFOLLOW))
            ):
                touched.setdefault(event.user_id)
        return self._result(outcomes, list(touched))

    async def read_users(self, user_ids: Sequence[str]) -> BatchResult:
        return self._result([], list(user_ids))

    async def cache_recommendations(self, lists: Mapping[str, bytes]) -> None:
        self.recommendations.update(lists)

    async def erase_users(self, user_ids: Sequence[str]) -> list[ErasureReport]:
        reports = []
        for user_id in user_ids:
            reports.append(self.state.erase(user_id))
            self.recommendations.pop(user_id, None)
        return reports

    def _result(self, outcomes: list[Outcome], users: list[str]) -> BatchResult:
        views = {
            user: self.state.user_view(
                user, recent_items=self.read.recent_items, neighbours=self.read.neighbours
            )
            for user in users
        }
        return BatchResult(outcomes, views, self.state.popular(self.read.popular))

    async def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: Sequence[bytes | str]) -> tuple[tuple[str, float], ...]:
    return tuple((_text(flat[k]), float(flat[k + 1])) for k in range(0, len(flat), 2))


class RedisStore:
    """Production store: all state in Redis, one Lua call per batch."""

    def __init__(
        self,
        client: aioredis.Redis,
        params: StateParams,
        read: ReadParams | None = None,
        keys: Keys | None = None,
    ) -> None:
        self.client = client
        self.params = params
        self.read = read or ReadParams()
        self.keys = keys or Keys()
        source = resources.files("streams").joinpath("lua/state.lua").read_text()
        self._script = client.register_script(source)
        p = params
        self._header: list[str | int | float] = [
            self.keys.prefix,
            p.history_size,
            p.neighbours,
            p.cooccurrence_cap,
            p.dedupe_window,
            repr(float(p.affinity_cap)),
            repr(float(p.half_life_s)),
            p.popularity_cap,
            0,
            self.read.recent_items,
            self.read.neighbours,
            self.read.popular,
        ]

    async def process_batch(self, events: Sequence[Event]) -> BatchResult:
        args: list[str | int | float] = ["process", *self._header, len(events)]
        for e in events:
            args += [
                e.event_id,
                e.type.value,
                e.user_id,
                e.item_id or "",
                e.target_user_id or "",
                repr(e.ts),
                repr(self.params.weight(e.type)),
            ]
        return self._decode(await self._script(keys=[], args=args))

    async def read_users(self, user_ids: Sequence[str]) -> BatchResult:
        args: list[str | int | float] = ["read", *self._header, len(user_ids), *user_ids]
        return self._decode(await self._script(keys=[], args=args))

    async def cache_recommendations(self, lists: Mapping[str, bytes]) -> None:
        if not lists:
            return
        pipe = self.client.pipeline(transaction=False)
        for user_id, body in lists.items():
            pipe.set(self.keys.user(user_id, "recommendations"), body, ex=RECOMMENDATIONS_TTL_S)
        await pipe.execute()

    async def erase_users(self, user_ids: Sequence[str]) -> list[ErasureReport]:
        args: list[str | int | float] = ["erase", *self._header, len(user_ids), *user_ids]
        raw = await self._script(keys=[], args=args)
        return [ErasureReport(int(h), int(e), int(f)) for h, e, f in raw]

    def _decode(self, raw: list[Any]) -> BatchResult:
        outcomes_raw, popular_raw, landmark_raw, views_raw = raw
        outcomes = [Outcome.APPLIED if o == 1 else Outcome.DUPLICATE for o in outcomes_raw]
        views: dict[str, UserView] = {}
        for user_raw, recent_raw, aff_raw, neigh_raw, seen, bought, hidden in views_raw:
            recent = tuple(
                (_text(item), float(aff)) for item, aff in zip(recent_raw, aff_raw, strict=True)
            )
            user = _text(user_raw)
            views[user] = UserView(
                user_id=user,
                recent=recent,
                neighbours={
                    item: _pairs(n) for (item, _), n in zip(recent, neigh_raw, strict=True)
                },
                seen=frozenset(_text(s) for s in seen),
                bought=frozenset(_text(b) for b in bought),
                hidden=frozenset(_text(h) for h in hidden),
            )
        landmark = float(landmark_raw) if landmark_raw not in (b"", "") else 0.0
        return BatchResult(outcomes, views, PopularView(_pairs(popular_raw), landmark))

    async def snapshot(self) -> dict[str, Any]:
        """Every socialrec key parsed into the same shape as MemoryState.snapshot().

        A key that does not parse raises, which is how tests prove no state hides outside
        the documented key layout.
        """
        users: dict[str, dict[str, Any]] = {}
        items: dict[str, dict[str, dict[str, float]]] = {"dot": {}, "sim": {}}
        result: dict[str, Any] = {"users": users, "landmark": None}
        async for raw_key in self.client.scan_iter(match=f"{self.keys.prefix}*", count=1000):
            key = _text(raw_key)
            scope, entity, field = self.keys.parse(key)
            value = await self._read_key(key, text_values=field in ("event_log",))
            if scope == "user":
                users.setdefault(entity, {}).update({field: value})
            elif scope == "item":
                items[field][entity] = value
            elif field == "landmark":
                result["landmark"] = float(value)
            else:
                result[field] = value
        for user in users.values():
            for field, empty in _USER_DEFAULTS.items():
                user.setdefault(field, empty())
        result.update(items)
        result.setdefault("norm2", {})
        result.setdefault("popularity", {})
        return result

    async def _read_key(self, key: str, *, text_values: bool = False) -> Any:
        kind = _text(await self.client.type(key))
        if kind == "hash" and text_values:
            return {_text(k): _text(v) for k, v in (await self.client.hgetall(key)).items()}
        if kind == "zset":
            members = await self.client.zrange(key, 0, -1, withscores=True)
            return {_text(m): float(s) for m, s in cast(list[tuple[bytes, float]], members)}
        if kind == "hash":
            return {_text(k): float(v) for k, v in (await self.client.hgetall(key)).items()}
        if kind == "set":
            return {_text(m) for m in await self.client.smembers(key)}
        value = await self.client.get(key)
        return "" if value is None else _text(value)


_USER_DEFAULTS: Mapping[str, type] = {
    "history": dict,
    "affinity": dict,
    "seen_events": dict,
    "event_log": dict,
    "bought": set,
    "hidden": set,
    "following": set,
    "followers": set,
}
