"""Where a batch's time goes: from a real run's own metrics, and replayed in-process.

``worker_profile`` reads the worker's histograms and Redis's counters around a real run;
``stage_profile`` (scenario c) replays the throughput events through the worker's own stages
without Kafka, each timed on its own.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from models.simulator import World, generate_events
from streams.config import Settings
from streams.security import redis_client_for
from streams.tools.processes import (
    BATCH_SECONDS,
    BATCH_SIZE,
    LATENCY,
    REDIS_RTT,
    STAGE_SECONDS,
    MetricsSnapshot,
    histogram_quantile,
)


def worker_profile(
    before: dict[str, Any], after: dict[str, Any], snap: MetricsSnapshot | None, cpu: float | None
) -> dict[str, Any]:
    """Where the worker's time went, from its histograms and Redis's own counters."""
    out: dict[str, Any] = {"worker_cpu_s": round(cpu, 2) if cpu is not None else None}
    if snap is not None:
        batches = snap.total(f"{BATCH_SIZE}_count")
        redis_calls = snap.total(f"{REDIS_RTT}_count")
        batch_s = snap.total(f"{BATCH_SECONDS}_sum")
        redis_s = snap.total(f"{REDIS_RTT}_sum")
        out.update(
            batches=int(batches),
            mean_batch_events=round(snap.total(f"{BATCH_SIZE}_sum") / batches, 1)
            if batches
            else None,
            batch_processing_s=round(batch_s, 2),
            redis_roundtrip_s=round(redis_s, 2),
            redis_calls=int(redis_calls),
            python_and_kafka_in_batch_s=round(batch_s - redis_s, 2),
            worker_histogram_p50_ms=_hist_ms(snap, 0.5),
            worker_histogram_p99_ms=_hist_ms(snap, 0.99),
            # Wall time per stage of the batches (socialrec_stage_seconds): where a batch waits.
            stage_s={
                stage: round(seconds, 2)
                for stage, seconds in snap.by_label(f"{STAGE_SECONDS}_sum", "stage").items()
            },
        )
    lua_calls = _stat(after, "cmdstat_evalsha", "calls") - _stat(before, "cmdstat_evalsha", "calls")
    lua_usec = _stat(after, "cmdstat_evalsha", "usec") - _stat(before, "cmdstat_evalsha", "usec")
    redis_cpu = sum(
        float(after.get(k, 0.0)) - float(before.get(k, 0.0))
        for k in ("used_cpu_user", "used_cpu_sys")
    )
    out.update(
        redis_server_lua_calls=int(lua_calls),
        redis_server_lua_s=round(lua_usec / 1e6, 2),
        redis_server_cpu_s=round(redis_cpu, 2),
        redis_commands_in_window={
            name: {"calls": calls, "seconds": round(usec / 1e6, 2)}
            for name, (calls, usec) in redis_commands(before, after).items()
        },
    )
    return out


def redis_commands(
    before: dict[str, Any], after: dict[str, Any], top: int = 10
) -> dict[str, tuple[int, float]]:
    """The ``top`` commands by Redis's time between two ``INFO all`` replies: name ->
    (calls, microseconds), the most time first. Scripts (``evalsha``) are left out: the
    commands a script runs are counted in commandstats too, so this is a script's time by
    command.

    >>> redis_commands({"cmdstat_get": {"calls": 1, "usec": 5}},
    ...                {"cmdstat_get": {"calls": 4, "usec": 20}, "cmdstat_hset": {"calls": 2,
    ...                 "usec": 30}, "cmdstat_evalsha": {"calls": 1, "usec": 90}})
    {'hset': (2, 30.0), 'get': (3, 15.0)}
    """
    inside: dict[str, tuple[int, float]] = {}
    for name in after:
        if not name.startswith("cmdstat_") or name == "cmdstat_evalsha":
            continue
        calls = _stat(after, name, "calls") - _stat(before, name, "calls")
        if calls > 0:
            usec = _stat(after, name, "usec") - _stat(before, name, "usec")
            inside[name.removeprefix("cmdstat_")] = (int(calls), usec)
    return dict(sorted(inside.items(), key=lambda kv: -kv[1][1])[:top])


def _stat(info: dict[str, Any], name: str, key: str) -> float:
    """One counter of one ``INFO`` section entry (``cmdstat_evalsha``'s ``calls``), or 0."""
    value = info.get(name, {})
    return float(value.get(key, 0.0)) if isinstance(value, dict) else 0.0


def _hist_ms(snap: MetricsSnapshot, q: float) -> float | None:
    value = histogram_quantile(q, snap.buckets(LATENCY))
    return None if value is None else round(value * 1000.0, 1)


async def _scripts_usec(client: Any) -> float:
    """Redis's server-side time in scripts so far (commandstats), in microseconds."""
    stats = await client.info("commandstats")
    return float(stats.get("cmdstat_evalsha", {}).get("usec", 0))


async def _redis_cpu_s(client: Any) -> float:
    """Redis's own CPU so far (user + system seconds)."""
    stats = await client.info("cpu")
    return float(stats["used_cpu_user"]) + float(stats["used_cpu_sys"])


async def stage_profile(
    settings: Settings, world: World, seed: int, events: int, batch: int, redis_url: str
) -> dict[str, Any]:
    """Replay the throughput events through the worker's own stages, without Kafka.

    Same store (one Lua call per batch), same ranking and JSON as streams/pipeline/, timed
    separately; the Lua script's server-side time comes from Redis's commandstats, so the
    store call splits into "Redis executing the script" and "client side" (argument encoding,
    reply parsing by redis-py, decoding into views).
    """
    from models.recommend import excluded_items, recommend
    from streams.metrics import WorkerMetrics
    from streams.pipeline import InboundRecord, recommend_params, recommendations_json
    from streams.runtime.worker import state_params
    from streams.sources.factory import build_sources
    from streams.store import RedisStore

    client = redis_client_for(settings, redis_url)
    store = RedisStore(
        client,
        state_params(settings),
        neighbours_ttl_s=settings.neighbours_ttl_s,
        popular_ttl_s=settings.popular_ttl_s,
    )
    sources, _ = build_sources(client, settings, store.params, WorkerMetrics())
    # learn, candidates, Redis's CPU during both (the learner's cost to the publish path)
    source_s = {m.source.value: [0.0, 0.0, 0.0] for m in sources.models}
    # The worker's ranking parameters, without a category cap: the bench sends no catalog.
    params = dataclasses.replace(recommend_params(settings), category_cap=0)
    stream = list(generate_events(world, seed, count=events, start_ts=time.time(), mean_gap_s=0))
    trigger = InboundRecord(None, None, settings.topic("events"), 0, 0, time.time())
    store_s = rank_s = json_s = lua_s = 0.0
    lists = 0
    try:
        for start in range(0, len(stream), batch):
            chunk = stream[start : start + batch]
            # The store's script alone: the sources run scripts of their own (item-CF).
            before = await _scripts_usec(client)
            t0 = time.perf_counter()
            result = await store.process_batch(chunk)
            t1 = time.perf_counter()
            lua_s += (await _scripts_usec(client) - before) / 1e6
            now = time.time()
            exclude = {u: excluded_items(v, params) for u, v in result.views.items()}
            extra = await _time_sources(client, sources, chunk, exclude, now, source_s)
            t1b = time.perf_counter()
            ranked = [
                recommend(v, result.popular, params, now=now, extra=extra[u])
                for u, v in result.views.items()
            ]
            t2 = time.perf_counter()
            for recs in ranked:
                recommendations_json(recs, trigger, chunk[-1].event_id, settings.model_version)
            t3 = time.perf_counter()
            store_s, rank_s, json_s = store_s + t1 - t0, rank_s + t2 - t1b, json_s + t3 - t2
            lists += len(ranked)
    finally:
        await client.aclose()
    timed = {"store": store_s, "lua": lua_s, "ranking": rank_s, "json": json_s}
    return _stage_figures(len(stream), batch, lists, timed, source_s)


async def _time_sources(
    client: Any,
    sources: Any,
    chunk: list[Any],
    exclude: dict[str, Any],
    now: float,
    source_s: dict[str, list[float]],
) -> dict[str, dict[Any, Any]]:
    """Each source's learn and candidates for one batch, timed on its own into ``source_s``
    (the worker gathers them; their time is mostly Python, so it adds up on one event loop
    anyway); returns each user's candidate pools by source. The batch is learnt in the
    learner's order (one partition's users after another's)."""
    from models.recommend import source_pool
    from streams.keys import Keys
    from streams.sources.writes import partition_order

    learnt = partition_order(Keys(), chunk)

    extra: dict[str, dict[Any, Any]] = {u: {} for u in exclude}
    for model in sources.models:
        c0 = await _redis_cpu_s(client)
        s0 = time.perf_counter()
        await model.learn(learnt)
        s1 = time.perf_counter()
        found = await model.candidates(list(exclude), exclude, sources.k, now)
        s2 = time.perf_counter()
        spent = source_s[model.source.value]
        spent[0] += s1 - s0
        spent[1] += s2 - s1
        spent[2] += await _redis_cpu_s(client) - c0
        for user, candidates in found.items():
            extra[user][model.source] = source_pool(model.source, candidates)
    return extra


def _stage_figures(
    events: int,
    batch: int,
    lists: int,
    timed: dict[str, float],
    source_s: dict[str, list[float]],
) -> dict[str, Any]:
    """The stage profile's figures from its summed seconds (``timed``: store, lua, ranking,
    json) and each source's (learn, candidates, Redis CPU) seconds."""
    import redis.utils

    store_s, lua_s, rank_s, json_s = timed["store"], timed["lua"], timed["ranking"], timed["json"]
    sources_total = sum(learn + cands for learn, cands, _redis in source_s.values())
    total = store_s + sources_total + rank_s + json_s
    return {
        "events": events,
        "batch_events": batch,
        "lists_ranked": lists,
        "hiredis": bool(redis.utils.HIREDIS_AVAILABLE),
        "store_call_s": round(store_s, 2),
        "redis_lua_server_s": round(lua_s, 2),
        "store_client_side_s": round(store_s - lua_s, 2),
        "sources_s": round(sources_total, 2),
        "sources_ms_per_event": {
            name: {
                "learn": round(learn / events * 1e3, 3),
                "candidates": round(cands / events * 1e3, 3),
                "redis_cpu": round(redis / events * 1e3, 3),
            }
            for name, (learn, cands, redis) in source_s.items()
        },
        "ranking_s": round(rank_s, 2),
        "json_s": round(json_s, 2),
        "events_per_s_without_kafka": round(events / total, 1) if total else None,
    }
