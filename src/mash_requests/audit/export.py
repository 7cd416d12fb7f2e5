"""Writing requests or events out for people, spreadsheets and scripts, as they stream in.

>>> from mash_requests.audit.export import write_requests
>>> write_requests(request_states(store, where), sys.stdout, output_format="csv")

Three formats (:data:`FORMATS`):

- ``table``: columns as wide as their content for a terminal (references are never cut;
  only the form's SHA-256 is shown by its first 12 digits, as git shows commits), then a
  count of requests (refusals logged before any request was built counted apart);
- ``csv``: every field, one row each, times in UTC ISO-8601; a cell a spreadsheet would run
  as a formula gets a leading ``'`` (OWASP "CSV injection": server messages come from
  outside);
- ``jsonl``: one JSON object per line with every field, for scripts.

Rows are written as they come, so memory stays flat whatever the log's size: the table
measures its columns on the first :data:`MEASURED_ROWS` rows, and a longer value after them
is still shown whole (pushing the rest of its line to the right), never cut.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from itertools import chain, islice
from typing import Any, TextIO

from mash_requests.audit.events import StoredEvent
from mash_requests.audit.query import RequestState

FORMATS = ("table", "csv", "jsonl")

#: The table's columns are as wide as their widest value among this many first rows.
MEASURED_ROWS = 1000

#: A fingerprint is shown by this many leading hex digits in the table (csv and jsonl
#: carry it whole); ``audit query --form-sha256`` takes the whole value.
_SHA_SHOWN = 12


@dataclass(frozen=True)
class _Layout:
    """What one kind of row looks like in the table format."""

    #: (field, heading); the last column is not padded.
    columns: tuple[tuple[str, str], ...]
    #: What a row is, for the count line: "(3 requests)".
    noun: str
    #: Rows are requests: one without a request reference is a refusal logged before any
    #: request was built, and is counted apart from the requests.
    requests: bool = False

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
    requests=True,
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


def write_requests(
    states: Iterable[RequestState], out: TextIO, *, output_format: str = "table"
) -> None:
    """Write request states (from :func:`~mash_requests.audit.query.request_states`) to ``out``.

    ``output_format`` is one of :data:`FORMATS` (ValueError otherwise).
    """
    rows = ({f.name: getattr(state, f.name) for f in fields(state)} for state in states)
    _write(rows, _REQUESTS, out, output_format)


def write_events(
    events: Iterable[StoredEvent], out: TextIO, *, output_format: str = "table"
) -> None:
    """Write stored events (seq, time, every event field, hash) to ``out``.

    ``output_format`` is one of :data:`FORMATS` (ValueError otherwise).
    """
    rows = (
        {"seq": e.seq, "recorded_at": e.recorded_at, **e.event.to_record(), "hash": e.hash}
        for e in events
    )
    _write(rows, _EVENTS, out, output_format)


def spreadsheet_safe(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would run it as a formula.

    A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula
    to Excel and LibreOffice (OWASP "CSV injection").
    """
    if text and text[0] in "=+-@\t\r":
        return "'" + text
    return text


def _write(rows: Iterator[dict[str, Any]], layout: _Layout, out: TextIO, fmt: str) -> None:
    if fmt == "table":
        _write_table(rows, layout, out)
    elif fmt == "csv":
        _write_csv(rows, layout, out)
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


def _table_cells(row: dict[str, Any], layout: _Layout) -> list[str]:
    values = []
    for name in layout.names:
        value = row.get(name)
        text = _cell(value)
        if isinstance(value, datetime):
            text = text[:19].replace("T", " ")
        elif name == "form_sha256" and len(text) > _SHA_SHOWN:
            text = text[:_SHA_SHOWN]
        values.append(text.replace("\n", " "))
    return values


def _write_table(rows: Iterator[dict[str, Any]], layout: _Layout, out: TextIO) -> None:
    headings = [heading for _, heading in layout.columns]
    measured = [_table_cells(row, layout) for row in islice(rows, MEASURED_ROWS)]
    widths = [max(len(line[i]) for line in [headings, *measured]) for i in range(len(headings))]

    def line(values: list[str]) -> str:
        # Padded to the column, never cut: a longer value pushes the rest of the line right.
        padded = [value.ljust(width) for value, width in zip(values[:-1], widths, strict=False)]
        return "  ".join([*padded, values[-1]]).rstrip()

    out.write(line(headings) + "\n")
    counted = 0
    loose = 0  # refusals logged before a request was built: no request reference
    ref = layout.names.index("request_ref")
    for values in chain(measured, (_table_cells(row, layout) for row in rows)):
        out.write(line(values) + "\n")
        if layout.requests and not values[ref]:
            loose += 1
        else:
            counted += 1
    footer = f"{counted} {layout.noun}{'s' if counted != 1 else ''}"
    if loose:
        footer += f"; {loose} refusal{'s' if loose != 1 else ''} before a request was built"
    out.write(f"({footer})\n")


def _write_csv(rows: Iterator[dict[str, Any]], layout: _Layout, out: TextIO) -> None:
    writer: csv.DictWriter[str] | None = None
    for row in rows:
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(row), lineterminator="\n")
            writer.writeheader()
        writer.writerow({key: spreadsheet_safe(_cell(value)) for key, value in row.items()})
    if writer is None:
        # No rows, so no field names from them: the table's columns say what there would be.
        out.write(",".join(layout.names) + "\n")


def _write_jsonl(rows: Iterator[dict[str, Any]], out: TextIO) -> None:
    for row in rows:
        document = {
            key: _cell(value) if isinstance(value, datetime) else value
            for key, value in row.items()
        }
        out.write(json.dumps(document, ensure_ascii=False, default=list) + "\n")
