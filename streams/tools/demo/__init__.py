"""``socialrec demo``: the whole system on one screen.

The demo brings up Kafka and Redis (only if they are not already answering), applies the
topics, runs a real worker as a subprocess, feeds it the deterministic simulator at ``--rate``
events/s, and shows what a user of the product would see: throughput, event-to-publish
latency, dead letters, batch sizes, and a few shoppers' recommendations changing as they act.

Everything shown comes from the same interfaces production uses: rates and latency from the
worker's Prometheus ``/metrics`` page (differences between scrapes, so the view reflects the
last few seconds rather than the whole run), recommendations from the ``recommendations``
topic. Nothing is read from the worker's memory or Redis directly.

Shutdown is symmetric with start-up: Ctrl-C, SIGTERM, SIGHUP (the terminal closed) or
``--seconds`` elapsing stops the simulator, the consumer and the worker (SIGTERM, wait,
SIGKILL), and stops Kafka/Redis only if this demo started them, so a developer's long-running
servers are left alone. The process helpers are :mod:`streams.tools.processes`, shared with
``socialrec bench``, which must drive the worker exactly the way the demo does.
"""

from __future__ import annotations

from streams.tools.demo.run import run_demo

__all__ = ["run_demo"]
