"""Writing requests or events out for people, spreadsheets and scripts, as they stream in.

>>> from mash_requests.audit.export import write_requests
>>> write_requests(request_states(store, where), sys.stdout, output_format="csv")

Three formats (:data:`FORMATS`):

- ``table``: columns as wide as their content for a terminal (nothing is cut), then a count;
  requests and refusals in sections of their own, each with its count;
- ``csv``: every field, one row each, times in UTC ISO-8601, CRLF line ends (RFC 4180, as
  Excel writes them); a cell holding a line break is quoted, and a cell (or a line within
  one) that a spreadsheet would run as a formula gets a leading ``'`` (OWASP "CSV
  injection": server messages and operator names come from outside). ``bom=True`` starts
  the output with a UTF-8 byte-order mark, which Excel needs to read UTF-8;
- ``jsonl``: one JSON object per line with every field, for scripts.

Rows are written as they come, so memory stays flat whatever the log's size.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from itertools import chain, islice
from typing import Any, TextIO

from mash_requests.audit.events import StoredEvent
from mash_requests.audit.query import RequestState

FORMATS = ("table", "csv", "jsonl")


@dataclass(frozen=True)
class _Layout:
    """What one kind of row looks like in the table format."""

    #: (field, heading) of each column shown.
    columns: tuple[tuple[str, str], ...]
    #: What a row is, for the count line: "(3 requests)".
    noun: str
    #: A line above the headings, for a second section of the same output.
    title: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


# csv and jsonl carry every field; the table shows these.
_REQUESTS = _Layout(
    (
        ("request_ref", "REQUEST"),
        ("case_ref", "CASE"),
        ("partner", "PARTNER"),
        ("outcome", "OUTCOME"),
        ("prepared_at", "PREPARED (UTC)"),
        ("sent_at", "SENT (UTC)"),
        ("attempts", "TRIES"),
        ("form_sha256", "FORM SHA-256"),
        ("reason", "REASON"),
    ),
    "request",
)
_REFUSALS = _Layout(
    (
        ("case_ref", "CASE"),
        ("partner", "PARTNER"),
        ("last_event_at", "REFUSED (UTC)"),
        ("form_sha256", "FORM SHA-256"),
        ("reason", "REASON"),
    ),
    "refusal",
    title="Refused before any request was built (not requests; one row per refusal):",
)
_EVENTS = _Layout(
    (
        ("seq", "SEQ"),
        ("recorded_at", "RECORDED (UTC)"),
        ("kind", "KIND"),
        ("case_ref", "CASE"),
        ("request_ref", "REQUEST"),
        ("partner", "PARTNER"),
        ("gateway", "GATEWAY"),
        ("form_sha256", "FORM SHA-256"),
        ("reason", "REASON"),
    ),
    "event",
)

#: The table format sizes its columns to the widest value among this many first rows; a
#: longer value further down is still printed whole (its row is then out of line).
TABLE_SIZING_ROWS = 10_000


def write_requests(
    states: Iterable[RequestState],
    out: TextIO,
    *,
    output_format: str = "table",
    bom: bool = False,
) -> None:
    """Write request states (from :func:`~mash_requests.audit.query.request_states`) to ``out``.

    ``output_format`` is one of :data:`FORMATS` (ValueError otherwise); ``bom`` (CSV only)
    starts the output with a UTF-8 byte-order mark. Give ``out`` opened with
    ``newline=""``: the CSV's CRLF line ends are written as they are.
    """
    rows = ({f.name: getattr(state, f.name) for f in fields(state)} for state in states)
    _write(rows, _REQUESTS, out, output_format, bom=bom)


def write_events(
    events: Iterable[StoredEvent],
    out: TextIO,
    *,
    output_format: str = "table",
    bom: bool = False,
) -> None:
    """Write stored events (seq, time, every event field, hash) to ``out``.

    ``output_format`` and ``bom`` as for :func:`write_requests`.
    """
    rows = (
        {"seq": e.seq, "recorded_at": e.recorded_at, **e.event.to_record(), "hash": e.hash}
        for e in events
    )
    _write(rows, _EVENTS, out, output_format, bom=bom)


#: What starts a formula in Excel and LibreOffice (OWASP "CSV injection").
_FORMULA_STARTS = "=+-@\t\r"
#: A line break inside a cell followed by a formula start: a reader that splits records at
#: a bare CR or LF (older importers, some scripts) would begin a new cell there.
_FORMULA_AFTER_BREAK = re.compile(r"(?:\r\n|\r|\n)(?=[=+\-@\t])")


def spreadsheet_safe(text: str) -> str:
    """``text`` with a leading ``'`` wherever a spreadsheet could run it as a formula.

    A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula
    to Excel and LibreOffice (OWASP "CSV injection"). Each line inside a cell that holds
    line breaks is treated the same way, so a reader that splits the record at a bare CR or
    LF still never meets a formula.
    """
    if text and text[0] in _FORMULA_STARTS:
        text = "'" + text
    if "\r" in text or "\n" in text:
        text = _FORMULA_AFTER_BREAK.sub(r"\g<0>'", text)
    return text


def _write(
    rows: Iterator[dict[str, Any]], layout: _Layout, out: TextIO, fmt: str, *, bom: bool = False
) -> None:
    if bom and fmt != "csv":
        raise ValueError(f"a byte-order mark is for CSV output, not {fmt}")
    if fmt == "table":
        _write_table(rows, layout, out)
    elif fmt == "csv":
        _write_csv(rows, layout, out, bom=bom)
    elif fmt == "jsonl":
        _write_jsonl(rows, out)
    else:
        raise ValueError(f"output format must be one of {', '.join(FORMATS)}; got {fmt!r}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, tuple | list):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _write_table(rows: Iterator[dict[str, Any]], layout: _Layout, out: TextIO) -> None:
    """Columns as wide as their content (references are never cut), then a count line.

    For requests, refusals (rows with ``record_type`` "refusal", which the query lists
    last) go in a section of their own with their own count: the first count is of
    requests only.
    """
    if layout is not _REQUESTS:
        _write_section(rows, layout, out)
        return
    refusals: list[dict[str, Any]] = []

    def requests_only() -> Iterator[dict[str, Any]]:
        for row in rows:
            if row.get("record_type") == "refusal":
                refusals.append(row)
                refusals.extend(rows)  # the query lists every refusal after the requests
                return
            yield row

    _write_section(requests_only(), _REQUESTS, out)
    if refusals:
        out.write("\n")
        _write_section(iter(refusals), _REFUSALS, out)


def _write_section(rows: Iterator[dict[str, Any]], layout: _Layout, out: TextIO) -> None:
    def cells(row: dict[str, Any]) -> list[str]:
        values = []
        for name in layout.names:
            value = row.get(name)
            text = _cell(value)
            if isinstance(value, datetime):
                text = text[:19].replace("T", " ")
            values.append(text.replace("\r", " ").replace("\n", " "))
        return values

    headings = [heading for _, heading in layout.columns]
    first = [cells(row) for row in islice(rows, TABLE_SIZING_ROWS)]
    widths = [max(len(line[i]) for line in (headings, *first)) for i in range(len(headings))]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    if layout.title:
        out.write(layout.title + "\n")
    out.write(line(headings) + "\n")
    count = 0
    for values in chain(first, (cells(row) for row in rows)):
        out.write(line(values) + "\n")
        count += 1
    out.write(f"({count} {layout.noun}{'s' if count != 1 else ''})\n")


def write_csv(
    rows: Iterable[Mapping[str, Any]],
    out: TextIO,
    *,
    fieldnames: Sequence[str],
    bom: bool = False,
) -> None:
    """CSV for spreadsheets, the same for every export: a header row, then one row each.

    UTF-8 as ``out`` encodes it, CRLF line ends (RFC 4180, as Excel writes them; give ``out``
    opened with ``newline=""`` so they are written as they are), ``bom=True`` starts with a
    UTF-8 byte-order mark (Excel reads UTF-8 on double-click only then). Values as in the
    audit CSV: times in UTC ISO 8601, lists joined by ``;``, booleans ``yes``/``no``, nothing
    empty; a cell holding a line break is quoted, and one a spreadsheet would run as a formula
    gets a leading ``'`` (:func:`spreadsheet_safe`).
    """
    if bom:
        out.write("\ufeff")
    # CRLF, as RFC 4180 and Excel have it; with both characters in the line terminator,
    # the writer quotes any cell holding a CR or an LF.
    writer = csv.DictWriter(out, fieldnames=list(fieldnames), lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: spreadsheet_safe(_cell(value)) for key, value in row.items()})


def _write_csv(
    rows: Iterator[dict[str, Any]], layout: _Layout, out: TextIO, *, bom: bool = False
) -> None:
    first = next(rows, None)
    if first is None:
        # No rows, so no field names from them: the table's columns say what there would be.
        write_csv((), out, fieldnames=layout.names, bom=bom)
        return
    write_csv(chain([first], rows), out, fieldnames=list(first), bom=bom)


def _write_jsonl(rows: Iterator[dict[str, Any]], out: TextIO) -> None:
    for row in rows:
        document = {
            key: _cell(value) if isinstance(value, datetime) else value
            for key, value in row.items()
        }
        out.write(json.dumps(document, ensure_ascii=False, default=list) + "\n")
