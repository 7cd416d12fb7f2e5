"""Writing requests and events as a table, CSV or JSON lines (mash_requests.audit.export)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from audit_helpers import prepared, sent

from mash_requests.audit import Event, EventKind, EventStore
from mash_requests.audit.export import spreadsheet_safe, write_events, write_requests
from mash_requests.audit.query import RequestState, request_states


@pytest.mark.parametrize("text", ["=1+1", "+44 20", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_formula_like_text_gets_a_leading_quote(text: str) -> None:
    """A cell a spreadsheet would run as a formula is prefixed with '."""
    assert spreadsheet_safe(text) == "'" + text


@pytest.mark.parametrize("text", ["", "C-1", "mash@police.uk", "a=b", " =x"])
def test_ordinary_text_is_left_alone(text: str) -> None:
    """Text that does not start a formula is written as it is."""
    assert spreadsheet_safe(text) == text


def test_csv_neutralises_formulas_in_event_fields(store: EventStore) -> None:
    """write_events in CSV quotes a server message that looks like a formula."""
    store.append(Event(EventKind.FAILED, "C-1", server_message='=HYPERLINK("x")'))
    out = io.StringIO()
    write_events(store.events(), out, output_format="csv")
    (row,) = csv.DictReader(io.StringIO(out.getvalue()))
    assert row["server_message"] == '\'=HYPERLINK("x")'


def test_table_cuts_long_values_and_counts_rows() -> None:
    """The table cuts a value wider than its column with … and ends with the row count."""
    state = RequestState(request_ref="R" * 40, case_ref="C-1", outcome="sent")
    out = io.StringIO()
    write_requests([state], out)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("R" * 27 + "…  C-1")
    assert lines[-1] == "(1 request)"


def test_jsonl_keeps_every_field_with_utc_times(store: EventStore) -> None:
    """write_requests in JSON lines gives every field, times as ISO-8601 UTC with Z."""
    store.append_many([prepared(), sent()])
    out = io.StringIO()
    write_requests(request_states(store), out, output_format="jsonl")
    (document,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert document["outcome"] == "sent"
    assert document["recipients"] == ["mash@police.uk"]
    assert document["sent_at"].endswith("Z")
    assert "times_sent" in document


@pytest.mark.parametrize(
    ("output_format", "expected"),
    [
        ("table", r"SEQ +RECORDED \(UTC\) +KIND .*\n\(0 events\)\n"),
        ("csv", r"seq,recorded_at,kind,case_ref,request_ref,partner,gateway,form_sha256,reason\n"),
        ("jsonl", r""),
    ],
)
def test_no_rows_still_says_what_there_would_be(output_format: str, expected: str) -> None:
    """Nothing to write gives headings and a count (table), a header (csv), nothing (jsonl)."""
    out = io.StringIO()
    write_events([], out, output_format=output_format)
    assert re.fullmatch(expected, out.getvalue())


def test_unknown_format_is_refused() -> None:
    """An output format that is not table, csv or jsonl raises ValueError naming them."""
    with pytest.raises(ValueError, match="table, csv, jsonl; got 'xlsx'"):
        write_requests([], io.StringIO(), output_format="xlsx")
