"""The scaled-out layout's side of the settings (SOCIALREC_CLUSTER, docs/cluster.md): its own
defaults for what the caller left unset, and what keeps its settings from working.

Applied when settings are read (streams/config.py), so a process fails at start-up naming the
variables to change.

>>> with_cluster_defaults({"cluster": "1", "kafka_heap": "-Xmx1g"})["kafka_heap"]
'-Xmx1g'
>>> with_cluster_defaults({"cluster": "false"})
{'cluster': 'false'}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

if TYPE_CHECKING:
    from streams.config import Settings

#: What the scaled-out layout (SOCIALREC_CLUSTER) changes when the variable itself is not set:
#: three brokers (one per address) beside the single broker's ports, so both layouts can run
#: at once, smaller heaps, since three JVMs share the machine, and the state on the Redis
#: Cluster.
CLUSTER_DEFAULTS: dict[str, object] = {
    "kafka_bootstrap": "127.0.0.1:19192,127.0.0.1:19193,127.0.0.1:19194",
    "kafka_controller_port": 19292,
    "kafka_heap": "-Xms128m -Xmx512m",
    "redis_cluster": True,
}


def with_cluster_defaults(data: object) -> object:
    """In cluster mode, the layout's own defaults for what the caller left unset."""
    if isinstance(data, dict) and _is_true(data.get("cluster", False)):
        return {**CLUSTER_DEFAULTS, **data}
    return data


def cluster_problems(settings: Settings) -> list[str]:
    """What keeps the cluster settings from working, each naming the variables to change."""
    s = settings
    if not s.cluster:
        return []
    problems = []
    brokers = len(s.kafka_ports)
    if brokers < s.cluster_replication_factor:
        problems.append(
            f"SOCIALREC_KAFKA_BOOTSTRAP lists {brokers} broker(s) but "
            f"SOCIALREC_CLUSTER_REPLICATION_FACTOR={s.cluster_replication_factor} needs at least "
            "as many: list every broker, or lower the replication factor"
        )
    if s.cluster_min_insync_replicas >= s.cluster_replication_factor > 1:
        problems.append(
            f"SOCIALREC_CLUSTER_MIN_INSYNC_REPLICAS={s.cluster_min_insync_replicas} must be below "
            f"SOCIALREC_CLUSTER_REPLICATION_FACTOR={s.cluster_replication_factor}, or writes stop "
            "whenever one broker is down"
        )
    return problems


def _is_true(value: object) -> bool:
    """A boolean setting's raw value (True, "true", "1", ...) as pydantic will read it; a
    value it will reject counts as false here and is reported by the field's own check."""
    try:
        return TypeAdapter(bool).validate_python(value)
    except ValidationError:
        return False
