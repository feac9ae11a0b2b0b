"""``socialrec eval`` (streams/tools/evaluate/): reading CSV and Taobao files with bad rows, the
catalogue, the JSON output through the CLI entry point, plots, and the real Taobao sample."""

from __future__ import annotations

import doctest
import io
import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from models.recommend import Source
from streams import cli
from streams.tools.evaluate import (
    InputError,
    export,
    export_simulated,
    read_catalog,
    read_events,
    reading,
    replay,
)

TAOBAO_SAMPLE = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "taobao_user_behavior_sample.csv"
)
REQUIRED_KEYS = {"events", "evaluated", "hr@10", "ndcg@10", "mrr", "auc", "coverage", "gini"}
T = 1_700_000_000


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["eval", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json(out: str) -> dict[str, Any]:
    assert out.count("\n") == 1  # one object, nothing else on stdout
    body: dict[str, Any] = json.loads(out)
    return body


@pytest.fixture(scope="module")
def sim_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "sim.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        export_simulated(out, users=60, items=150, events=1500, seed=5)
    return path


@pytest.mark.parametrize("module", [reading, replay, export], ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    # Run the eval package's examples here too, so `pytest tests/unit` alone checks them.
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


# ---- reading ------------------------------------------------------------------------------------


def test_csv_rows_are_validated_counted_and_sorted_by_time() -> None:
    text = (
        "user_id,item_id,event_type,timestamp,target_user_id,stream_id\n"
        f"u1,a,view,{T + 5},,live-1\n"  # 2: ok (later)
        f"u1,b,cart,{T + 1},,\n"  # 3: ok (earlier)
        f"u2,,follow,{T + 2},u1,\n"  # 4: ok: follow rows have no item
        f"u2,,view,{T + 3},,\n"  # 5: a view needs an item
        f"u2,a,teleport,{T + 3},,\n"  # 6: unknown type
        f"u2,a,view,{T * 1000},,\n"  # 7: milliseconds, not seconds
        "u2,a,view,yesterday,,\n"  # 8: not a number
        f"u2,a,view,{T},,x,extra\n"  # 9: more cells than the header
        "\n"  # 10: empty row
        f"u2,,follow,{T + 4},,\n"  # 11: follow without a followee
        f"u3,a,share,{T + 4}\n"  # 12: a share needs its recipient (the contract)
        f"u3,\ufffd,view,{T + 4},,\n"  # 13: undecodable bytes in the file
    )
    loaded = read_events(io.StringIO(text))
    assert [(e.event_id, e.type.value) for e in loaded.events] == [
        ("row-3", "cart"),
        ("row-4", "follow"),
        ("row-2", "view"),
    ]
    assert loaded.events[2].stream_id == "live-1"
    assert loaded.events[1].target_user_id == "u1"
    assert loaded.events[1].item_id is None
    assert loaded.rows == 12
    assert loaded.bad.total == 9
    assert dict(loaded.bad.by_reason) == {
        "missing_field": 3,
        "unknown_type": 1,
        "bad_timestamp": 1,
        "bad_field": 1,
        "bad_columns": 1,
        "empty_row": 1,
        "not_utf8": 1,
    }
    assert loaded.bad.lines == [5, 6, 7, 8, 9, 10, 11, 12, 13]
    # Trailing optional cells may be left out; the required ones may not.
    short = "user_id,item_id,event_type,timestamp,stream_id\nu1,a,view,1700000000\nu1,a,view\n"
    loaded = read_events(io.StringIO(short))
    assert [e.stream_id for e in loaded.events] == [None]
    assert dict(loaded.bad.by_reason) == {"bad_columns": 1}


@pytest.mark.parametrize(
    "ts", ["820454400", "0", "-86400", f"{time.time() + 10 * 365 * 86400:.0f}", "99999999999"]
)
def test_a_file_may_hold_any_era(ts: str) -> None:
    # 1996, the epoch, before it, ten years ahead: the live clock guards live events, not files.
    loaded = read_events(io.StringIO(f"user_id,item_id,event_type,timestamp\nu1,a,view,{ts}\n"))
    assert [e.ts for e in loaded.events] == [float(ts)]
    assert loaded.bad.total == 0


@pytest.mark.parametrize("ts", ["1700000000000", "-100000000001", "nan", "inf"])
def test_a_file_timestamp_must_still_be_finite_seconds(ts: str) -> None:
    loaded = read_events(io.StringIO(f"user_id,item_id,event_type,timestamp\nu1,a,view,{ts}\n"))
    assert loaded.events == []
    assert loaded.bad.total == 1


def test_a_byte_order_mark_is_not_part_of_the_header(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    exported = tmp_path / "excel.csv"
    exported.write_bytes(
        b"\xef\xbb\xbfuser_id,item_id,event_type,timestamp\nu1,a,view,1700000000\n"
        b"u1,b,view,1700000001\n"
    )
    code, out, _ = _run(capsys, str(exported), "--json")
    assert code == 0
    assert _json(out)["evaluated"] == 1


def test_a_missing_header_column_is_an_input_error() -> None:
    with pytest.raises(InputError, match="event_type"):
        read_events(io.StringIO("user_id,item_id,timestamp\nu1,a,1\n"))
    assert read_events(io.StringIO("")).events == []


def test_taobao_format_with_and_without_header() -> None:
    rows = f"1,10,7,pv,{T}\n1,11,8,fav,{T + 1}\n2,10,7,cart,{T + 2}\n2,12,9,buy,{T + 3}\n"
    header = "user_id,item_id,category_id,behavior,timestamp\n"
    for text, first_line in ((rows, 1), (header + rows, 2)):
        loaded = read_events(io.StringIO(text + f"3,13,9,clap,{T}\n"), fmt="taobao")
        assert [e.type.value for e in loaded.events] == ["view", "like", "cart", "purchase"]
        assert [e.user_id for e in loaded.events] == ["1", "1", "2", "2"]
        assert loaded.events[0].event_id == f"row-{first_line}"
        assert dict(loaded.bad.by_reason) == {"unknown_type": 1}
        assert loaded.item_features == {
            "10": {"category_id": "7"},
            "11": {"category_id": "8"},
            "12": {"category_id": "9"},
        }  # item 13 came only in a bad row


def test_catalog_is_parsed_with_bad_rows_reported() -> None:
    text = "item_id,title,category\ni1,Phone,phones\ni2,Case,cases\n,x,y\ni1,Dup,phones\ni3\n"
    catalog = read_catalog(io.StringIO(text))
    assert catalog.items == {
        "i1": {"title": "Phone", "category": "phones"},
        "i2": {"title": "Case", "category": "cases"},
    }
    assert catalog.rows == 5
    assert dict(catalog.bad.by_reason) == {
        "missing_field": 1,
        "duplicate_item": 1,
        "bad_columns": 1,
    }
    with pytest.raises(InputError, match="item_id"):
        read_catalog(io.StringIO("sku,title\n1,x\n"))


# ---- the command --------------------------------------------------------------------------------


def test_json_output_shape(
    capsys: pytest.CaptureFixture[str], sim_csv: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "with_bad_rows.csv"
    bad.write_text(
        sim_csv.read_text(encoding="utf-8") + "u1,i1,teleport,1700000000\nu1,,view,1700000000\n",
        encoding="utf-8",
    )
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("item_id,category\ni1,phones\ni2,cases\n", encoding="utf-8")
    code, out, err = _run(capsys, str(bad), "--json", "--catalog", str(catalog))
    assert code == 0
    body = _json(out)
    assert body.keys() >= REQUIRED_KEYS
    assert REQUIRED_KEYS - {"events"} <= body["baseline"].keys()
    assert body["events"] == 1500
    assert body["mode"] == "full"
    assert body["catalog_items"] == 2
    assert body["bad_rows"]["total"] == 2
    assert body["bad_rows"]["by_reason"] == {"unknown_type": 1, "missing_field": 1}
    assert body["bad_rows"]["first_lines"] == [1502, 1503]
    assert 0 < body["evaluated"] == body["baseline"]["evaluated"] < body["events"]
    for figures in (body, body["baseline"]):
        for key in ("hr@10", "ndcg@10", "mrr", "auc", "coverage", "gini", "long_tail"):
            assert 0.0 <= figures[key] <= 1.0
        sources = set(figures["per_source"])
        assert {"item_cf", "popular"} <= sources <= {s.value for s in Source}
        assert sum(s["hr@10"] for s in figures["per_source"].values()) == pytest.approx(
            figures["hr@10"]
        )
    assert body["baseline"]["per_source"]["item_cf"]["hits"] == 0
    assert "2 of 1,502 rows skipped" in err


@pytest.mark.slow
def test_temporal_split_and_cross_validation(
    capsys: pytest.CaptureFixture[str], sim_csv: Path
) -> None:
    code, out, _ = _run(capsys, str(sim_csv), "--json", "--split", "temporal")
    temporal = _json(out)
    assert code == 0
    assert temporal["mode"] == "temporal"
    assert temporal["learning"] == "continuing"
    assert temporal["train_events"] + temporal["test_events"] == 1500

    code, out, _ = _run(
        capsys, str(sim_csv), "--json", "--split", "temporal", "--frozen", "--train-fraction", "0.5"
    )
    frozen = _json(out)
    assert frozen["learning"] == "frozen"
    assert frozen["train_events"] == pytest.approx(750, abs=5)

    code, out, _ = _run(capsys, str(sim_csv), "--json", "--cv", "3")
    cv = _json(out)
    assert code == 0
    assert cv["mode"] == "cv"
    assert len(cv["per_fold"]) == 3
    assert cv.keys() >= REQUIRED_KEYS
    assert cv["std"].keys() | {"events", "evaluated"} >= REQUIRED_KEYS
    assert "std" in cv["baseline"]
    assert sum(f["evaluated"] for f in cv["per_fold"]) == cv["evaluated"]
    mean_hr = sum(f["hr@10"] for f in cv["per_fold"]) / 3
    assert cv["hr@10"] == pytest.approx(mean_hr)

    _, full_out, _ = _run(capsys, str(sim_csv), "--json")
    # Every fresh interaction is a test case in exactly one fold.
    assert cv["evaluated"] == _json(full_out)["evaluated"]


@pytest.mark.slow
def test_table_output_and_plots(
    capsys: pytest.CaptureFixture[str], sim_csv: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    code, out, err = _run(capsys, str(sim_csv), "--plots", str(tmp_path / "plots"))
    assert code == 0
    assert "hr@10" in out
    assert "popularity (baseline)" in out
    assert "events/s" in out
    for name in ("roc.png", "hr_over_stream.png", "sources.png"):
        png = tmp_path / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plots written" in err


def test_unusable_input_is_reported_not_raised(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _run(capsys, str(tmp_path / "missing.csv"), "--json")
    assert (code, out) == (2, "")
    assert "cannot read" in err
    header_only = tmp_path / "empty.csv"
    header_only.write_text("user_id,item_id,event_type,timestamp\n", encoding="utf-8")
    code, out, err = _run(capsys, str(header_only), "--json")
    assert (code, out) == (2, "")
    assert "no valid events" in err
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n", encoding="utf-8")
    code, _, err = _run(capsys, str(wrong))
    assert code == 2
    assert "header lacks" in err


@pytest.mark.slow
@pytest.mark.skipif(not TAOBAO_SAMPLE.exists(), reason="../shared/data is not beside this clone")
def test_the_real_taobao_sample(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, str(TAOBAO_SAMPLE), "--format", "taobao", "--json")
    body = _json(out)
    assert code == 0
    assert body["events"] == body["rows"] == 4321
    assert body["bad_rows"]["total"] == 0
    assert body["items_with_features"] > 0
    assert 0 < body["evaluated"] < 4321
    assert REQUIRED_KEYS - {"events"} <= body["baseline"].keys()
    # The sample is a handful of users from a huge catalogue: nearly every next item is new.
    assert body["cold_share"] > 0.9


def test_simulate_csv_writes_the_simulators_stream_and_catalogue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``socialrec simulate --csv``: no Kafka, the same rows as :func:`export_simulated`, and
    ``socialrec eval`` reads them."""
    events, catalog = tmp_path / "sim.csv", tmp_path / "catalog.csv"
    flags = ["--users", "40", "--items", "90", "--events", "600", "--seed", "2"]
    assert cli.main(["simulate", "--csv", str(events), "--catalog-csv", str(catalog), *flags]) == 0
    expected, expected_catalog = io.StringIO(), io.StringIO()
    export_simulated(expected, users=40, items=90, events=600, seed=2, catalog_out=expected_catalog)
    assert events.read_text() == expected.getvalue()
    assert catalog.read_text() == expected_catalog.getvalue()
    code, out, _ = _run(capsys, str(events), "--catalog", str(catalog), "--json")
    assert code == 0
    body = _json(out)
    assert body["events"] == 600
    assert body["catalog_items"] == 90


def test_simulate_refuses_a_catalogue_csv_without_the_events_csv() -> None:
    with pytest.raises(SystemExit, match="--catalog-csv goes with --csv"):
        cli.main(["simulate", "--catalog-csv", "catalog.csv"])
