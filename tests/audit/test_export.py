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


def test_table_never_cuts_a_reference() -> None:
    """Columns are as wide as their content: a long request and case reference show whole."""
    ref = "MASH-2026-0412-EDUCATION-6B1F0"
    case_ref = "MASH-2026-0412-LONG-CASE-REFERENCE"
    states = [
        RequestState(request_ref=ref, case_ref=case_ref, partner="education", outcome="sent"),
        RequestState(request_ref="R-1", case_ref="C-1", partner="police", outcome="sent"),
    ]
    out = io.StringIO()
    write_requests(states, out)
    heading, first, second, footer = out.getvalue().splitlines()
    assert first.split()[:3] == [ref, case_ref, "education"]
    assert "…" not in out.getvalue()
    # The columns line up: each row's case reference starts where the heading's does.
    assert first.index(case_ref) == second.index("C-1") == heading.index("CASE")
    assert footer == "(2 requests)"


def test_table_shows_a_value_longer_than_the_measured_rows_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reference wider than every measured row is still shown whole, never cut."""
    monkeypatch.setattr("mash_requests.audit.export.MEASURED_ROWS", 1)
    late = "MASH-2026-0412-EDUCATION-" + "7" * 40
    states = [
        RequestState(request_ref="R-1", case_ref="C-1", outcome="sent"),
        RequestState(request_ref=late, case_ref="C-2", outcome="sent"),
    ]
    out = io.StringIO()
    write_requests(states, out)
    assert out.getvalue().splitlines()[2].split()[:2] == [late, "C-2"]


def test_table_footer_counts_requests_not_refusal_rows(store: EventStore) -> None:
    """Refusals logged before any request was built are counted apart from the requests."""
    store.append_many([prepared(), sent()])
    store.append(Event(EventKind.REJECTED, "C-2", partner="police", reason="wrong_case"))
    store.append(Event(EventKind.REJECTED, "C-2", partner="health", reason="wrong_case"))
    out = io.StringIO()
    write_requests(request_states(store), out)
    assert out.getvalue().splitlines()[-1] == ("(1 request; 2 refusals before a request was built)")


def test_table_shows_the_form_fingerprint_by_its_first_12_digits() -> None:
    """The 64-digit SHA-256 is shown as its first 12 digits; csv and jsonl carry it whole."""
    state = RequestState(request_ref="R-1", case_ref="C-1", form_sha256="ab" * 32)
    out = io.StringIO()
    write_requests([state], out)
    row = out.getvalue().splitlines()[1]
    assert "ab" * 6 in row and "ab" * 7 not in row


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
