"""Everything in socialrec that does I/O: Kafka, Redis, the Faust worker, HTTP, the CLI.

Folders by concern (README.md, "Architecture"): streams/runtime/ the live path (the worker, the
learner and what they run), with the parts it runs beside it (streams/pipeline/,
streams/sources/, streams/store/); streams/http/ the HTTP surface; streams/ops/ the local
servers and the topics; streams/tools/ the benchmark, the chaos run, the demo and the
evaluation. Settings, the CLI, Redis key names, connections and metrics stay at the top.
"""
