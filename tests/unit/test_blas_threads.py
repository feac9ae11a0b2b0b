"""socialrec's processes run one BLAS thread each unless told otherwise (streams/__init__.py):
OpenBLAS's own threads spin on the cores the worker and the learner need."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = (
    "import streams, os; print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_NUM_THREADS'])"
)


def _probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_streams_asks_blas_for_one_thread() -> None:
    assert _probe() == "1 1"


@pytest.mark.parametrize("threads", ["2", "4"])
def test_a_thread_count_in_the_environment_is_kept(threads: str) -> None:
    assert _probe(OPENBLAS_NUM_THREADS=threads) == f"{threads} 1"
