"""``socialrec eval``: offline quality of the recommender on a CSV of events.

Reads the events (:mod:`.reading`), replays them in time order through the worker's own model
code (:mod:`.build`, :mod:`models.evaluation`; in-process, no Kafka) next to a popularity
baseline (:mod:`.replay`), and prints the figures (:mod:`.output`): a rich table, or one JSON
object with ``--json``. Progress and warnings go to stderr, so ``--json`` output can be piped.
``--plots DIR`` writes PNGs (ROC curve, HR@10 along the stream, per-source contribution).
:mod:`.export` writes the simulator's stream in the same CSV format
(``socialrec simulate --csv``).
"""

from __future__ import annotations

from streams.tools.evaluate.build import MODEL_NAMES, ReplayPlan, build_models
from streams.tools.evaluate.command import run_eval
from streams.tools.evaluate.export import export_simulated
from streams.tools.evaluate.reading import InputError, content_records, read_catalog, read_events
from streams.tools.evaluate.replay import EVAL_K, Outcome, evaluate, ghost_followees, knob_values

__all__ = [
    "EVAL_K",
    "MODEL_NAMES",
    "InputError",
    "Outcome",
    "ReplayPlan",
    "build_models",
    "content_records",
    "evaluate",
    "export_simulated",
    "ghost_followees",
    "knob_values",
    "read_catalog",
    "read_events",
    "run_eval",
]
