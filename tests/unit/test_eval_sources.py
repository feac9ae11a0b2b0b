"""``socialrec eval --jobs 2``: the hybrid's extra sources in a second process.

The promise is exact: the same figures as one process, in every mode, with several hybrids
sharing the child. And a child that fails, or a replay that diverges from it, is an error
that says so, never a silently different number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.events import Event, EventType
from models.hybrid import HybridSources, source_requests
from models.state import StateParams
from models.usercf import UserCF
from streams import cli
from streams.tools.eval_sources import SourcesProcess, SourcesProcessError
from streams.tools.evaluate import export_simulated

#: Figures that depend on the run, not on the model.
RUN_KEYS = {"elapsed_s", "events_per_s", "jobs"}


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("jobs")
    events, catalog = folder / "events.csv", folder / "catalog.csv"
    with (
        events.open("w", encoding="utf-8", newline="") as out,
        catalog.open("w", encoding="utf-8", newline="") as cat,
    ):
        export_simulated(out, users=80, items=200, events=2500, seed=11, catalog_out=cat)
    return events, catalog


def _figures(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert cli.main(["eval", *argv, "--json"]) == 0
    body: dict[str, Any] = json.loads(capsys.readouterr().out)
    return {key: value for key, value in body.items() if key not in RUN_KEYS}


@pytest.mark.parametrize(
    "mode",
    [
        [],
        ["--split", "temporal", "--frozen", "--train-fraction", "0.6"],
        ["--split", "temporal"],
        ["--cv", "3"],
    ],
    ids=["full", "temporal-frozen", "temporal", "cv"],
)
@pytest.mark.slow
def test_two_processes_give_exactly_the_figures_of_one(
    capsys: pytest.CaptureFixture[str], stream: tuple[Path, Path], mode: list[str]
) -> None:
    events, catalog = stream
    args = [str(events), "--catalog", str(catalog), "--models", "hybrid,hybrid+ranker,itemcf"]
    one = _figures(capsys, *args, *mode, "--jobs", "1")
    two = _figures(capsys, *args, *mode, "--jobs", "2")
    assert one["evaluated"] > 100
    if "--cv" not in mode:  # (K-fold reports per fold; its replay is the full one above)
        # The child's sources filled slots, so the comparison covers what it computed.
        per_source = one["per_source"]
        slots = {s: per_source.get(s, {}).get("slots", 0) for s in ("content", "user_cf")}
        assert all(n > 0 for n in slots.values()), slots
    assert two == one


def test_jobs_other_than_one_or_two_is_refused(
    capsys: pytest.CaptureFixture[str], stream: tuple[Path, Path]
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["eval", str(stream[0]), "--jobs", "3"])
    assert "--jobs" in capsys.readouterr().err


def _events() -> list[Event]:
    pairs = [("ann", "phone"), ("ann", "case"), ("bob", "phone"), ("bob", "case")] * 3
    return [
        Event(f"e{n}", EventType.PURCHASE, user, 1e9 + n, item_id=item)
        for n, (user, item) in enumerate(pairs)
    ]


def _sources() -> HybridSources:
    return HybridSources(StateParams().weights, usercf=UserCF())


def test_the_child_streams_what_an_in_process_replay_computes() -> None:
    events = _events()
    expected = list(source_requests(events, _sources()))
    with SourcesProcess(events, _sources) as process:
        first, second = process.reader(), process.reader()
        for user, ts, excluded_hash, pools in expected:
            # Readers are independent: the second may lag the first by the whole stream.
            got = first.pools(user, _excluded(events, user, ts), ts)
            assert got == pools
            assert excluded_hash == hash(_excluded(events, user, ts))
        for user, ts, _, pools in expected:
            assert second.pools(user, _excluded(events, user, ts), ts) == pools


def _excluded(events: list[Event], user: str, ts: float) -> frozenset[str]:
    return frozenset(e.item_id or "" for e in events if e.user_id == user and e.ts < ts)


def test_a_request_the_child_did_not_compute_is_an_error() -> None:
    events = _events()
    expected = list(source_requests(events, _sources()))
    with SourcesProcess(events, _sources) as process:
        reader = process.reader()
        with pytest.raises(SourcesProcessError, match="disagree"):
            reader.pools("someone-else", frozenset(), expected[0][1])
    with SourcesProcess(events, _sources) as process:
        reader = process.reader()
        for user, ts, _, _ in expected:
            reader.pools(user, _excluded(events, user, ts), ts)
        with pytest.raises(SourcesProcessError, match="more requests"):
            reader.pools("ann", frozenset(), 2e9)


def _broken() -> HybridSources:
    raise RuntimeError("catalogue unreadable")


def test_a_child_that_fails_reports_its_traceback() -> None:
    with (
        SourcesProcess(_events(), _broken) as process,
        pytest.raises(SourcesProcessError, match="catalogue unreadable"),
    ):
        process.reader().pools("ann", frozenset(), 0.0)
