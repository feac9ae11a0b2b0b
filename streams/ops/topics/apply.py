"""``socialrec topics apply``: make the broker match topics.yaml.

topics.yaml is the source of truth. ``apply_topics`` creates what is missing and reconciles
drift on what exists: a partition count can only grow (Kafka cannot shrink one), configs are
altered in place, and a replication-factor difference is reported but never changed (that
needs a reassignment plan, not a reconcile loop). Running it twice changes nothing the
second time.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from streams.config import Settings
from streams.ops.topics.broker import (
    TopicNotVisibleError,
    TopicsApplyError,
    admin_client,
    alter_configs,
    create_missing,
    grow_partitions,
    observe,
)
from streams.ops.topics.drift import ApplyReport, TopicAction, describe_new, find_drift
from streams.ops.topics.spec import TopicsFileError, TopicSpec, load_topics
from streams.security import kafka_error_hint

SETTLE_TIMEOUT_S = 15.0
SETTLE_POLL_S = 0.05


async def apply_topics(settings: Settings, dry_run: bool = False) -> ApplyReport:
    """Create missing topics and fix drift so the broker matches topics.yaml.

    Names on the broker are ``settings.topic(logical name)``, so tests can isolate themselves
    with a prefix. In a dry run the report lists what would change and nothing is sent.
    """
    from aiokafka.errors import KafkaError

    specs = [replicated_for(settings, spec) for spec in load_topics(settings.topics_file)]
    admin = admin_client(settings)
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        await admin.close()
        raise TopicsApplyError(await kafka_error_hint(settings, exc)) from exc
    try:
        return await _reconcile(admin, settings, specs, dry_run)
    finally:
        await admin.close()


def replicated_for(settings: Settings, spec: TopicSpec) -> TopicSpec:
    """The topic as the settings' Kafka should hold it: topics.yaml's replication on one
    broker; on a cluster (SOCIALREC_CLUSTER) the cluster's replication factor, and its
    ``min.insync.replicas`` pinned on the topic so acks=all writes survive a broker's loss
    whatever the brokers' default.

    >>> from streams.config import Settings
    >>> spec = load_topics(Settings().topics_file)[0]
    >>> three = "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003"
    >>> clustered = replicated_for(Settings(cluster=True, kafka_bootstrap=three), spec)
    >>> clustered.replication_factor, clustered.broker_configs()["min.insync.replicas"]
    (3, '2')
    """
    if not settings.cluster:
        return spec
    return replace(
        spec,
        replication_factor=settings.cluster_replication_factor,
        config={**spec.config, "min.insync.replicas": str(settings.cluster_min_insync_replicas)},
    )


async def _reconcile(
    admin: Any, settings: Settings, specs: list[TopicSpec], dry_run: bool
) -> ApplyReport:
    by_name = {settings.topic(s.name): s for s in specs}
    existing = set(await admin.list_topics())
    present = [name for name in by_name if name in existing]
    missing = [name for name in by_name if name not in existing]
    created = missing
    if missing and not dry_run:
        # The broker's metadata can lag a topic created moments ago (by us or anyone), so a
        # "missing" topic may already exist: treat those as present and check them for drift.
        raced = await create_missing(admin, {name: by_name[name] for name in missing})
        if raced:
            await _settle(admin, {name: None for name in raced})
        created = [name for name in missing if name not in raced]
        present += raced
    actions = [TopicAction(name, "create", describe_new(by_name[name])) for name in created]
    observed = await observe(admin, present)
    grow: dict[str, int] = {}
    alter: dict[str, dict[str, str]] = {}
    for name in present:
        drift = find_drift(name, by_name[name], observed[name])
        actions += drift
        if any(a.kind == "add_partitions" for a in drift):
            grow[name] = by_name[name].partitions
        if any(a.kind == "alter_configs" for a in drift):
            alter[name] = by_name[name].broker_configs()
    if not dry_run:
        await grow_partitions(admin, grow)
        await alter_configs(admin, alter)
        await _settle(admin, {name: by_name[name] for name in [*created, *grow, *alter]})
    if settings.kafka_frontend_username:  # the frontends' producer user (streams/ops/kafka_acl.py)
        actions += await _grant_frontend(admin, settings, dry_run)
    return ApplyReport(tuple(actions), tuple(by_name), dry_run)


async def _grant_frontend(admin: Any, settings: Settings, dry_run: bool) -> list[TopicAction]:
    from streams.ops.kafka_acl import KafkaAclError, grant_frontend

    try:
        granted = await grant_frontend(admin, settings, dry_run)
    except KafkaAclError as exc:
        raise TopicsApplyError(str(exc)) from None
    principal = f"User:{settings.kafka_frontend_username}"
    detail = f"{' and '.join(granted)} to {principal}"
    return [TopicAction(settings.topic("events"), "grant", detail)] if granted else []


async def _settle(admin: Any, topics: Mapping[str, TopicSpec | None]) -> None:
    """Wait until the broker's metadata shows our changes, so apply returns only when done.

    KRaft acknowledges a change once the controller commits it; the broker that answers
    metadata and config requests catches up a few milliseconds later. Without this wait an
    immediate second apply (or a producer) could see the old state. ``None`` as a spec means
    "just wait until the topic is visible".
    """
    if not topics:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    names = list(topics)
    while True:
        metadata = await admin.describe_topics(names)
        visible = {t["topic"] for t in metadata if t["error_code"] == 0 and t["partitions"]}
        if visible >= set(names):
            try:
                observed = await observe(admin, names)
            except TopicNotVisibleError:
                # Each request may reach another broker, one that has not caught up yet.
                observed = None
            if observed is not None and not any(
                action.fixable
                for name, spec in topics.items()
                if spec is not None
                for action in find_drift(name, spec, observed[name])
            ):
                return
        if loop.time() > deadline:
            raise TopicsApplyError(
                f"changes to {', '.join(sorted(names))} were accepted but not visible after "
                f"{SETTLE_TIMEOUT_S:.0f}s; run `socialrec topics apply` again"
            )
        await asyncio.sleep(SETTLE_POLL_S)


def run_apply(settings: Settings, dry_run: bool = False) -> int:
    """``socialrec topics apply``: print the report; exit 1 if drift could not be fixed."""
    try:
        report = asyncio.run(apply_topics(settings, dry_run=dry_run))
    except (TopicsFileError, TopicsApplyError) as exc:
        print(f"socialrec topics: error: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 1 if report.problems else 0
