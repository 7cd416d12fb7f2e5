"""Writing requests or events out for people, spreadsheets and scripts, as they stream in.

>>> from mash_requests.audit.export import write_requests
>>> write_requests(request_states(store, where), sys.stdout, output_format="csv")

Three formats (:data:`FORMATS`):

- ``table``: fixed-width columns for a terminal, long values cut with "…", then a count;
- ``csv``: every field, one row each, times in UTC ISO-8601; a cell a spreadsheet would run
  as a formula gets a leading ``'`` (OWASP "CSV injection": server messages come from
  outside);
- ``jsonl``: one JSON object per line with every field, for scripts.

Rows are written as they come, so memory stays flat whatever the log's size.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, TextIO

from mash_requests.audit.events import StoredEvent
from mash_requests.audit.query import RequestState

FORMATS = ("table", "csv", "jsonl")


@dataclass(frozen=True)
class _Layout:
    """What one kind of row looks like in the table format."""

    #: (field, heading, width); width 0: the last column, never cut.
    columns: tuple[tuple[str, str, int], ...]
    #: What a row is, for the count line: "(3 requests)".
    noun: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.columns)


# csv and jsonl carry every field; the table shows these.
_REQUESTS = _Layout(
    (
        ("request_ref", "REQUEST", 28),
        ("case_ref", "CASE", 16),
        ("partner", "PARTNER", 10),
        ("outcome", "OUTCOME", 11),
        ("prepared_at", "PREPARED (UTC)", 19),
        ("sent_at", "SENT (UTC)", 19),
        ("attempts", "TRIES", 5),
        ("form_sha256", "FORM SHA-256", 12),
        ("reason", "REASON", 0),
    ),
    "request",
)
_EVENTS = _Layout(
    (
        ("seq", "SEQ", 7),
        ("recorded_at", "RECORDED (UTC)", 19),
        ("kind", "KIND", 14),
        ("case_ref", "CASE", 16),
        ("request_ref", "REQUEST", 28),
        ("partner", "PARTNER", 10),
        ("gateway", "GATEWAY", 7),
        ("form_sha256", "FORM SHA-256", 12),
        ("reason", "REASON", 0),
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


def _write_table(rows: Iterator[dict[str, Any]], layout: _Layout, out: TextIO) -> None:
    def line(values: list[str]) -> str:
        parts = []
        for (_, _, width), value in zip(layout.columns, values, strict=True):
            if width and len(value) > width:
                value = value[: width - 1] + "…"
            parts.append(value.ljust(width) if width else value)
        return "  ".join(parts).rstrip()

    out.write(line([heading for _, heading, _ in layout.columns]) + "\n")
    count = 0
    for row in rows:
        values = []
        for name in layout.names:
            value = row.get(name)
            text = _cell(value)
            if isinstance(value, datetime):
                text = text[:19].replace("T", " ")
            values.append(text.replace("\n", " "))
        out.write(line(values) + "\n")
        count += 1
    out.write(f"({count} {layout.noun}{'s' if count != 1 else ''})\n")


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
