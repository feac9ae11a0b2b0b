"""Per-run isolation: each run's own topics, Faust app id, web port and Redis database.

Every run gets unique topic prefixes (``bench-<run>.``; deleted afterwards), its own Faust
app id and web port, and an empty Redis database claimed for the run and flushed afterwards,
so runs neither see nor disturb other data. A Redis Cluster (``SOCIALREC_REDIS_CLUSTER``) has
one database: the whole cluster is claimed, and only when it is empty.
"""

from __future__ import annotations

from typing import Any, Final

from streams.config import Settings, redis_url_with_db
from streams.security import kafka_client_kwargs, redis_client_for
from streams.tools.processes import free_port

CLAIM_KEY: Final = "socialrec:bench:claim"


class BenchError(RuntimeError):
    """The benchmark could not produce trustworthy figures; the message says why."""


async def claim_redis_db(settings: Settings, run_id: str) -> tuple[int, str]:
    """Find an empty database (14 down to 1) and mark it ours for the run.

    Database 0 is the demo's and 15 the test suite's (flushed before every test). A Redis
    Cluster has only its database 0, claimed whole.
    """
    dbs = [0] if settings.redis_cluster else range(14, 0, -1)
    for db in dbs:
        url = redis_url_with_db(settings.redis_url, db)
        client = redis_client_for(settings, url)
        try:
            if await client.dbsize() == 0 and await client.set(CLAIM_KEY, run_id, nx=True, ex=7200):
                return db, url
        finally:
            await client.aclose()
    if settings.redis_cluster:
        raise BenchError("the Redis Cluster holds data; the bench runs on an empty one")
    raise BenchError("no empty Redis database (1-14) to run in; free one with FLUSHDB")


async def reset_redis_db(
    settings: Settings, url: str, run_id: str, *, release: bool = False
) -> None:
    """Empty our database (fresh state for each worker run), keeping the claim unless done."""
    client = redis_client_for(settings, url)
    try:
        owner = await client.get(CLAIM_KEY)
        if owner is not None and owner not in (run_id, run_id.encode()):
            raise BenchError("the bench's Redis database was claimed by another run")
        await client.flushdb()
        if not release:
            await client.set(CLAIM_KEY, run_id, ex=7200)
    finally:
        await client.aclose()


async def redis_info(settings: Settings, url: str | None = None) -> dict[str, Any]:
    """Server-wide Redis counters (CPU, Lua calls): a profile of where batch time goes. On a
    Redis Cluster, every node's numbers summed (replicas apply every write too)."""
    client = redis_client_for(settings, url)
    try:
        if not settings.redis_cluster:
            info: dict[str, Any] = await client.info("all")
            return info
        nodes = await client.info("all", target_nodes="all")
        summed: dict[str, Any] = {}
        for node in nodes.values():
            for key, value in node.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    summed[key] = summed.get(key, 0) + value
                elif isinstance(value, dict):
                    inner = summed.setdefault(key, {})
                    for k, v in value.items():
                        if isinstance(v, (int, float)):
                            inner[k] = inner.get(k, 0) + v
        return summed
    finally:
        await client.aclose()


def redis_cpu_s(info: dict[str, Any]) -> float:
    """Redis's own CPU seconds so far (user + system), from an ``INFO`` reply."""
    return float(info.get("used_cpu_user", 0.0)) + float(info.get("used_cpu_sys", 0.0))


def run_settings(
    base: Settings, run_id: str, scenario: str, system: str, redis_url: str
) -> Settings:
    """Settings for one (scenario, system) run: own topics, app id, port and Redis db."""
    return base.model_copy(
        update={
            "topic_prefix": f"bench-{run_id}.{scenario}-{system}.",
            "app_id": f"socialrec-bench-{run_id}-{scenario}-{system}",
            "web_port": free_port(base.web_host),
            "redis_url": redis_url,
        }
    )


async def use_log_append_time(settings: Settings, logical: str) -> None:
    """Make an output topic stamp records with broker time, like the events topic.

    AlterConfigs replaces a topic's overrides wholesale, so the declared set is sent too.
    """
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from streams.ops.topics import load_topics

    spec = next(s for s in load_topics(settings.topics_file) if s.name == logical)
    configs = {**spec.broker_configs(), "message.timestamp.type": "LogAppendTime"}
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        responses = await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.topic(logical), configs=configs)]
        )
        for response in responses:
            for resource in response.to_object()["resources"]:
                if resource["error_code"]:
                    raise BenchError(f"could not set LogAppendTime: {resource}")
    finally:
        await admin.close()
