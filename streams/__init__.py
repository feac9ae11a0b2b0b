"""Everything in socialrec that does I/O: Kafka, Redis, the Faust worker, HTTP, the CLI.

Folders by concern (README.md, "Architecture"): streams/runtime/ the live path (the worker, the
learner and what they run), with the parts it runs beside it (streams/pipeline/,
streams/sources/, streams/store/); streams/http/ the HTTP surface; streams/ops/ the local
servers and the topics; streams/tools/ the benchmark, the chaos run, the demo and the
evaluation. Settings, the CLI, Redis key names, connections and metrics stay at the top.
"""

import os

# One BLAS thread per process, unless the environment says otherwise. socialrec runs a process
# per core (worker, learner, api), and OpenBLAS's own threads spin on the cores those
# processes need: MF's scores over 50,000 items (a 50,000 × 32 matrix-vector product) took
# 5.8 ms with them on a busy two-core machine and 0.14 ms without (docs/live-path.md). Set
# here, before anything imports numpy: `python -m streams.cli` imports this package first.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
