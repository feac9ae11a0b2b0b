"""Start, stop and inspect the local Kafka broker and Redis that tests, the demo and the
benchmark run against.

These machines have no Docker engine, so the project runs real servers itself: Apache Kafka's
own jars as a single-node KRaft broker (:mod:`.kafka`) and Debian's ``redis-server``
(:mod:`.redis_server`). Everything lives under ``settings.data_dir``; nothing here touches a
server this package did not start (:mod:`.pids`). Readiness is proved by talking to the server
(:mod:`.services`), never by sleeping a fixed time. The commands are in :mod:`.commands`.
"""

from __future__ import annotations

from streams.ops.infra.base import SERVICES, InfraError, ServiceStatus
from streams.ops.infra.commands import down, kill, parse_services, run_command, status, up
from streams.ops.infra.kafka import (
    ensure_kafka_libs,
    kafka_answers,
    kafka_cluster_id_is_valid,
    kafka_log4j2_properties,
    kafka_server_properties,
    new_cluster_id,
    slf4j_problem,
)
from streams.ops.infra.redis_server import redis_answers

__all__ = [
    "SERVICES",
    "InfraError",
    "ServiceStatus",
    "down",
    "ensure_kafka_libs",
    "kafka_answers",
    "kafka_cluster_id_is_valid",
    "kafka_log4j2_properties",
    "kafka_server_properties",
    "kill",
    "new_cluster_id",
    "parse_services",
    "redis_answers",
    "run_command",
    "slf4j_problem",
    "status",
    "up",
]
