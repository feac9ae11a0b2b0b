"""The admin requests topics apply makes: read a topic's layout and configs, create, grow, alter.

Every broker error becomes a TopicsApplyError naming what was being done; a topic the
answering broker does not know (yet) is the narrower TopicNotVisibleError.
"""

from __future__ import annotations

from typing import Any

from streams.config import Settings
from streams.ops.topics.drift import ObservedTopic
from streams.ops.topics.spec import TopicSpec
from streams.security import kafka_client_kwargs

# DescribeConfigs ``config_source`` for a per-topic override (DYNAMIC_TOPIC_CONFIG).
TOPIC_OVERRIDE_SOURCE = 1
ADMIN_TIMEOUT_MS = 30_000


class TopicsApplyError(RuntimeError):
    """The broker refused a change or could not be reached; the message says which."""


class TopicNotVisibleError(TopicsApplyError):
    """The broker that answered does not know the topic (yet, right after a create)."""


def admin_client(settings: Settings) -> Any:
    """An unstarted admin client for the settings' Kafka, as topics apply and clean-up use it."""
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(
        **kafka_client_kwargs(settings),
        client_id="socialrec-topics",
        request_timeout_ms=ADMIN_TIMEOUT_MS,
    )


async def observe(admin: Any, names: list[str]) -> dict[str, ObservedTopic]:
    """Partition count, replication factor and configs of existing topics."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    if not names:
        return {}
    metadata = await admin.describe_topics(names)
    layout: dict[str, tuple[int, int]] = {}
    for topic in metadata:
        raise_for_code(topic["error_code"], f"describing topic {topic['topic']}")
        partitions = topic["partitions"]
        replicas = max((len(p["replicas"]) for p in partitions), default=0)
        layout[topic["topic"]] = (len(partitions), replicas)
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    )
    configs: dict[str, dict[str, str]] = {}
    overrides: dict[str, set[str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            topic = resource["resource_name"]
            raise_for_code(resource["error_code"], f"describing configs of {topic}")
            entries = resource["config_entries"]
            configs[topic] = {e["config_names"]: e["config_value"] for e in entries}
            overrides[topic] = {
                e["config_names"]
                for e in entries
                if e.get("config_source") == TOPIC_OVERRIDE_SOURCE
            }
    return {
        name: ObservedTopic(
            partitions=layout[name][0],
            replication_factor=layout[name][1],
            configs=configs.get(name, {}),
            overrides=frozenset(overrides.get(name, set())),
        )
        for name in names
    }


async def create_missing(admin: Any, specs: dict[str, TopicSpec]) -> list[str]:
    """Create topics; return the names the broker says already exist (created concurrently)."""
    from aiokafka.admin import NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    response = await admin.create_topics(
        [
            NewTopic(
                name=name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                topic_configs=spec.broker_configs(),
            )
            for name, spec in specs.items()
        ],
        timeout_ms=ADMIN_TIMEOUT_MS,
    )
    raced = []
    for item in response.to_object()["topic_errors"]:
        if item["error_code"] == TopicAlreadyExistsError.errno:
            raced.append(item["topic"])
            continue
        raise_for_code(
            item["error_code"], f"creating topic {item['topic']}", item.get("error_message")
        )
    return raced


async def grow_partitions(admin: Any, totals: dict[str, int]) -> None:
    from aiokafka.admin import NewPartitions
    from aiokafka.errors import KafkaError

    if not totals:
        return
    try:
        await admin.create_partitions(
            {name: NewPartitions(total_count=count) for name, count in totals.items()},
            timeout_ms=ADMIN_TIMEOUT_MS,
        )
    except KafkaError as exc:
        raise TopicsApplyError(f"adding partitions failed: {exc}") from exc


async def alter_configs(admin: Any, configs: dict[str, dict[str, str]]) -> None:
    """Set each topic's full declared config set.

    AlterConfigs (non-incremental) replaces a topic's overrides with exactly the set sent, so
    sending the whole declared set also removes overrides topics.yaml does not declare.
    """
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    if not configs:
        return
    responses = await admin.alter_configs(
        [
            ConfigResource(ConfigResourceType.TOPIC, name, configs=values)
            for name, values in configs.items()
        ]
    )
    for response in responses:
        for resource in response.to_object()["resources"]:
            raise_for_code(
                resource["error_code"],
                f"altering configs of {resource['resource_name']}",
                resource.get("error_message"),
            )


def raise_for_code(code: int, doing: str, message: str | None = None) -> None:
    from aiokafka.errors import UnknownTopicOrPartitionError, for_code

    if code:
        error = for_code(code)
        text = f"{doing}: {error.__name__}{f' ({message})' if message else ''}"
        if error is UnknownTopicOrPartitionError:
            raise TopicNotVisibleError(text)
        raise TopicsApplyError(text)
