"""``socialrec bench``: throughput and latency of the real path, and the bench's other runs.

Modules, by concern:

* ``command``: the command itself (infrastructure, which run, the JSON written);
* ``scenarios``: (a) throughput, (b) latency, (c) the stage profile and (d) serving, in order;
* ``run``: one (scenario, system) run: start, feed, wait, measure;
* ``readback``: reading the topics back after a run (broker append times, latencies);
* ``isolation``: each run's own topics, app id, port and Redis database;
* ``figures``: the statistics (quantiles, summaries) every run reports;
* ``stages``: where a batch's time goes (the worker's own metrics; in-process replay);
* ``report``: the printed table and the JSON's envelope;
* ``procfs``: a process's CPU, memory and children, from /proc;
* ``baselines``: the systems the worker is measured against (run as their own processes);
* ``scale`` (``--workers``) and ``soak`` (``--soak``): the two other runs.

This module imports nothing, so a baseline's process (``python -m streams.tools.bench.baselines``)
loads only what it runs.
"""
