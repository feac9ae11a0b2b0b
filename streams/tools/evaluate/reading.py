"""Reading ``socialrec eval``'s input: events (our CSV or Taobao UserBehavior) and a catalogue.

* ``csv`` (default): header ``user_id,item_id,event_type,timestamp`` plus optional
  ``target_user_id,stream_id``; types and required fields as in the event contract
  (:mod:`models.events`; ``follow`` rows have no item), ``timestamp`` in Unix seconds.
* ``taobao``: ``user_id,item_id,category_id,behavior,timestamp`` (header optional, as in the
  published files), behaviours ``pv/fav/cart/buy`` read as ``view/like/cart/purchase``.

A row that cannot be read is counted by reason and reported (the first line numbers too, never
the row's content); it never stops the run. Each row gets the event id ``row-<line>``.

>>> import io
>>> text = "user_id,item_id,event_type,timestamp\\nu1,a,view,1700000000\\nu1,,view,1700000001\\n"
>>> loaded = read_events(io.StringIO(text))
>>> [e.item_id for e in loaded.events], dict(loaded.bad.by_reason), loaded.bad.lines
(['a'], {'missing_field': 1}, [3])
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, Final

import orjson

from models.content import parse_record
from models.events import Event, EventType, Rejection, parse_event

EVENT_COLUMNS: Final = ("user_id", "item_id", "event_type", "timestamp")
OPTIONAL_COLUMNS: Final = ("target_user_id", "stream_id")
TAOBAO_COLUMNS: Final = ("user_id", "item_id", "category_id", "behavior", "timestamp")
TAOBAO_BEHAVIOURS: Final = {
    "pv": EventType.VIEW,
    "fav": EventType.LIKE,
    "cart": EventType.CART,
    "buy": EventType.PURCHASE,
}

#: real stream passes, while milliseconds (10^12 and more since 1973) are still caught.
FILE_TS_LIMIT_S: Final = 1e11
#: How many offending line numbers a report keeps (enough to find them, never the content).
KEPT_LINES: Final = 20


class InputError(Exception):
    """The file as a whole cannot be read (missing, or without the required header)."""


@dataclass
class BadRows:
    """Rows that could not be read: how many, why, and where (line numbers, 1-based)."""

    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    lines: list[int] = field(default_factory=list)

    def add(self, line: int, reason: str) -> None:
        self.total += 1
        self.by_reason[reason] += 1
        if len(self.lines) < KEPT_LINES:
            self.lines.append(line)

    def as_dict(self) -> dict[str, object]:
        return {"total": self.total, "by_reason": dict(self.by_reason), "first_lines": self.lines}


@dataclass
class LoadedEvents:
    """Valid events in time order (file order among equal timestamps) and what was not."""

    events: list[Event]
    rows: int
    bad: BadRows
    item_features: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Catalog:
    items: dict[str, dict[str, str]]
    rows: int
    bad: BadRows


def _rows(stream: IO[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) for every record; a record spanning lines gets its first line."""
    reader = csv.reader(stream)
    line = 1
    for row in reader:
        yield line, row
        line = reader.line_num + 1


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # the contract's check then rejects it as a bad field


def read_events(stream: IO[str], *, fmt: str = "csv") -> LoadedEvents:
    """Read and validate events; sort them by time.

    Every check of the event contract applies except the live path's clock: a file may hold
    a stream of any era (a 1990s data set, a simulation dated in the future), so a timestamp
    only has to be Unix seconds, within :data:`FILE_TS_LIMIT_S` of 1970 either way.

    >>> import io
    >>> tb = "1,10,7,pv,1511544070\\n1,11,7,buy,1511544080\\n2,10,7,teleport,1511544090\\n"
    >>> loaded = read_events(io.StringIO(tb), fmt="taobao")
    >>> [(e.user_id, e.type.value, e.item_id) for e in loaded.events]
    [('1', 'view', '10'), ('1', 'purchase', '11')]
    >>> dict(loaded.bad.by_reason), loaded.item_features["10"]
    ({'unknown_type': 1}, {'category_id': '7'})
    """
    bad = BadRows()
    events: list[Event] = []
    features: dict[str, dict[str, str]] = {}
    rows = _rows(stream)
    first = next(rows, None)
    if first is None:
        return LoadedEvents([], 0, bad)
    columns, convert, rows = _format(fmt, first, rows, features)
    required = EVENT_COLUMNS if fmt == "csv" else TAOBAO_COLUMNS
    needed = 1 + max(list(columns).index(c) for c in required)
    count = 0
    for line, cells in rows:
        count += 1
        parsed = _parse_row(line, cells, columns, needed, convert)
        if isinstance(parsed, str):
            bad.add(line, parsed)
        else:
            events.append(parsed)
    events.sort(key=lambda e: e.ts)  # stable: file order among equal timestamps
    return LoadedEvents(events, count, bad, features)


#: Turns a row (its line and its cells by column) into an event body, or the reason it cannot.
Converter = Callable[[int, dict[str, str]], "dict[str, object] | str"]


def _format(
    fmt: str,
    first: tuple[int, list[str]],
    rows: Iterator[tuple[int, list[str]]],
    features: dict[str, dict[str, str]],
) -> tuple[Sequence[str], Converter, Iterator[tuple[int, list[str]]]]:
    """The columns and converter of ``fmt`` given the file's first row, and the rows to read
    (the first one again when it is data: Taobao's published files have no header)."""
    header = [cell.strip() for cell in first[1]]
    if fmt == "taobao":
        if header[: len(TAOBAO_COLUMNS)] != list(TAOBAO_COLUMNS):
            rows = _chain([first], rows)
        return TAOBAO_COLUMNS, partial(_taobao_body, features), rows
    if fmt == "csv":
        missing = [c for c in EVENT_COLUMNS if c not in header]
        if missing:
            raise InputError(
                f"the header lacks {', '.join(missing)}: expected "
                f"{','.join(EVENT_COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)}]"
            )
        return header, _csv_body, rows
    raise InputError(f"unknown format {fmt!r} (csv or taobao)")


def _parse_row(
    line: int, cells: list[str], columns: Sequence[str], needed: int, convert: Converter
) -> Event | str:
    """The row's event, or the reason it has none."""
    if not cells or cells == [""]:
        return "empty_row"
    if not needed <= len(cells) <= len(columns):
        return "bad_columns"
    # Trailing optional cells may be left out (some writers drop empty trailing fields).
    record = dict(zip(columns, cells, strict=False))
    if any("\ufffd" in cell for cell in cells):
        return "not_utf8"
    body = convert(line, record)
    if isinstance(body, str):
        return body
    parsed = parse_event(
        orjson.dumps(body),
        now=FILE_TS_LIMIT_S,
        max_bytes=1 << 20,
        max_future_skew_s=0.0,
        min_ts=-FILE_TS_LIMIT_S,
    )
    return parsed.reason.value if isinstance(parsed, Rejection) else parsed


def _chain(
    head: Iterable[tuple[int, list[str]]], tail: Iterator[tuple[int, list[str]]]
) -> Iterator[tuple[int, list[str]]]:
    yield from head
    yield from tail


def _csv_body(line: int, record: dict[str, str]) -> dict[str, object] | str:
    """Our CSV's row as an event body."""
    body: dict[str, object] = {"event_id": f"row-{line}", "type": record["event_type"].strip()}
    for name in ("user_id", "item_id", *OPTIONAL_COLUMNS):
        value = record.get(name, "").strip()
        if value:  # empty or left out = absent; the contract says which types need which fields
            body[name] = value
    body["ts"] = _number(record["timestamp"].strip())
    return body


def _taobao_body(
    features: dict[str, dict[str, str]], line: int, record: dict[str, str]
) -> dict[str, object] | str:
    """A Taobao row as an event body; its item's category goes into ``features``."""
    kind = TAOBAO_BEHAVIOURS.get(record["behavior"].strip())
    if kind is None:
        return "unknown_type"
    body: dict[str, object] = {"event_id": f"row-{line}", "type": kind.value}
    for name in ("user_id", "item_id"):
        value = record[name].strip()
        if value:
            body[name] = value
    body["ts"] = _number(record["timestamp"].strip())
    item, category = record["item_id"].strip(), record["category_id"].strip()
    if item and category:
        features[item] = {"category_id": category}
    return body


def read_catalog(stream: IO[str]) -> Catalog:
    """Item features keyed by ``item_id`` (every other column is kept as text).

    >>> import io
    >>> cat = read_catalog(io.StringIO("item_id,category\\na,phones\\n,x\\na,cases\\nb\\n"))
    >>> cat.items, dict(cat.bad.by_reason)
    ({'a': {'category': 'phones'}}, {'missing_field': 1, 'duplicate_item': 1, 'bad_columns': 1})
    """
    bad = BadRows()
    items: dict[str, dict[str, str]] = {}
    rows = _rows(stream)
    first = next(rows, None)
    if first is None:
        return Catalog(items, 0, bad)
    header = [cell.strip() for cell in first[1]]
    if "item_id" not in header:
        raise InputError("the catalog header lacks item_id")
    count = 0
    for line, cells in rows:
        count += 1
        if len(cells) != len(header):
            bad.add(line, "bad_columns")
            continue
        record = dict(zip(header, cells, strict=True))
        item = record.pop("item_id").strip()
        if not item:
            bad.add(line, "missing_field")
        elif item in items:
            bad.add(line, "duplicate_item")
        else:
            items[item] = record
    return Catalog(items, count, bad)


def content_records(
    items: Mapping[str, Mapping[str, str]],
) -> tuple[dict[str, dict[str, object]], int]:
    """Catalogue rows as content records (price a number, ``tags`` split on ``|``), and how
    many rows the content model cannot use (they are left out of content, nothing else).

    >>> content_records({"a": {"category": "phones", "price": "9.5", "tags": "5g|dual-sim"},
    ...                  "b": {"category": "x", "price": "cheap"}})
    ({'a': {'category': 'phones', 'price': 9.5, 'tags': ['5g', 'dual-sim'], 'item_id': 'a'}}, 1)
    """
    records: dict[str, dict[str, object]] = {}
    rejected = 0
    for item_id, row in items.items():
        record: dict[str, object] = {k: v for k, v in row.items() if v.strip()}
        try:
            if "price" in record:
                record["price"] = float(str(record["price"]))
            if "tags" in record:
                record["tags"] = [t for t in str(record["tags"]).split("|") if t]
            record["item_id"] = item_id
            parse_record(record)
        except ValueError:
            rejected += 1
            continue
        records[item_id] = record
    return records, rejected


def reasons_text(bad: Mapping[str, Any]) -> str:
    """A bad-rows report's reasons as text: ``"bad_columns 2, empty_row 1"``."""
    return ", ".join(f"{reason} {n}" for reason, n in sorted(bad["by_reason"].items()))


def open_input(path: Path) -> IO[str]:
    """``path`` opened for reading rows; :class:`InputError` if it cannot be."""
    try:
        # Undecodable bytes become U+FFFD, so one bad row is reported instead of ending the run.
        # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first column name.
        return path.open(encoding="utf-8-sig", errors="replace", newline="")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
