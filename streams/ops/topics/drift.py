"""Drift between topics.yaml and the broker: what differs, what can be fixed, the report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from streams.ops.topics.spec import TopicSpec

ActionKind = Literal["create", "add_partitions", "alter_configs", "grant", "cannot_fix"]


@dataclass(frozen=True)
class TopicAction:
    """One difference between topics.yaml and the broker, and whether it was (or will be) fixed.

    ``detail`` names configs and counts only; it never contains message data.
    """

    topic: str
    kind: ActionKind
    detail: str

    @property
    def fixable(self) -> bool:
        return self.kind != "cannot_fix"


@dataclass(frozen=True)
class ApplyReport:
    """What ``apply_topics`` found and did. In a dry run nothing was changed."""

    actions: tuple[TopicAction, ...]
    checked: tuple[str, ...]
    dry_run: bool = False

    @property
    def changes(self) -> tuple[TopicAction, ...]:
        return tuple(a for a in self.actions if a.fixable)

    @property
    def problems(self) -> tuple[TopicAction, ...]:
        return tuple(a for a in self.actions if not a.fixable)

    @property
    def changed(self) -> bool:
        return bool(self.changes) and not self.dry_run

    def lines(self) -> list[str]:
        verb = "would " if self.dry_run else ""
        out = [f"{a.topic}: {verb}{a.kind.replace('_', ' ')}: {a.detail}" for a in self.changes]
        out += [f"{a.topic}: CANNOT FIX: {a.detail}" for a in self.problems]
        if not self.actions:
            out.append(f"{len(self.checked)} topics match topics.yaml; no changes")
        return out


@dataclass(frozen=True)
class ObservedTopic:
    """A topic as the broker reports it; ``overrides`` are the per-topic config keys set."""

    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict, hash=False)
    overrides: frozenset[str] = frozenset()


def describe_new(spec: TopicSpec) -> str:
    """The detail of a "create" action: the layout and every config the topic gets."""
    configs = ", ".join(f"{k}={v}" for k, v in sorted(spec.broker_configs().items()))
    return f"{spec.partitions} partitions, replication {spec.replication_factor}, {configs}"


def find_drift(name: str, spec: TopicSpec, seen: ObservedTopic) -> list[TopicAction]:
    """Compare one declared topic with what the broker reports."""
    actions: list[TopicAction] = []
    if seen.partitions < spec.partitions:
        actions.append(
            TopicAction(name, "add_partitions", f"grow from {seen.partitions} to {spec.partitions}")
        )
    elif seen.partitions > spec.partitions:
        actions.append(
            TopicAction(
                name,
                "cannot_fix",
                f"has {seen.partitions} partitions, topics.yaml declares {spec.partitions}; "
                "Kafka cannot remove partitions (recreate the topic or update topics.yaml)",
            )
        )
    if seen.replication_factor != spec.replication_factor:
        actions.append(
            TopicAction(
                name,
                "cannot_fix",
                f"replication factor is {seen.replication_factor}, topics.yaml declares "
                f"{spec.replication_factor}; change it with a partition reassignment",
            )
        )
    wanted = spec.broker_configs()
    diffs = [
        f"{key} {seen.configs.get(key)!r} -> {value!r}"
        for key, value in sorted(wanted.items())
        if not _same_config(key, seen.configs.get(key), value)
    ]
    diffs += [f"remove undeclared override {key}" for key in sorted(seen.overrides - set(wanted))]
    if diffs:
        actions.append(TopicAction(name, "alter_configs", "; ".join(diffs)))
    return actions


def _same_config(key: str, current: str | None, wanted: str) -> bool:
    """Compare config values the way Kafka means them (cleanup.policy is an unordered list)."""
    if current is None:
        return False
    if key == "cleanup.policy":
        return sorted(p.strip() for p in current.split(",")) == wanted.split(",")
    return current == wanted
