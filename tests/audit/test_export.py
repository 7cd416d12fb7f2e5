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


def test_table_never_cuts_a_reference_and_counts_rows() -> None:
    """Columns are as wide as their content: a long request reference is printed whole and
    the next column lines up after it; the table ends with the row count."""
    long_ref = "MASH-2026-0412-EDUCATION-6B1F0C9A2D"
    states = [
        RequestState(request_ref=long_ref, case_ref="MASH-2026-0412", outcome="sent"),
        RequestState(request_ref="R-1", case_ref="C-1", outcome="sent"),
    ]
    out = io.StringIO()
    write_requests(states, out)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith(long_ref + "  MASH-2026-0412")
    assert lines[2].startswith("R-1".ljust(len(long_ref)) + "  C-1")
    assert "…" not in out.getvalue()
    assert lines[-1] == "(2 requests)"


def test_table_lists_refusals_apart_and_counts_only_requests() -> None:
    """Refusals go under a heading of their own with their own count; the requests' count
    line counts requests only."""
    states = [
        RequestState(request_ref="C-2-police", case_ref="C-2", partner="police", outcome="sent"),
        RequestState(
            request_ref=None,
            case_ref="C-3",
            partner="police",
            outcome="rejected",
            reason="wrong_case",
            record_type="refusal",
        ),
    ]
    out = io.StringIO()
    write_requests(states, out)
    text = out.getvalue()
    requests, refusals = text.split("\n\n")
    assert requests.splitlines()[-1] == "(1 request)"
    assert refusals.startswith("Refused before any request was built")
    assert refusals.splitlines()[1].startswith("CASE  PARTNER  REFUSED (UTC)")
    assert refusals.splitlines()[2].split() == ["C-3", "police", "wrong_case"]
    assert refusals.splitlines()[-1] == "(1 refusal)"


def test_csv_types_each_row(store: EventStore) -> None:
    """In CSV every row says whether it is a request or a refusal."""
    store.append_many(
        [
            prepared(),
            sent(),
            Event(EventKind.REJECTED, "C-1", partner="police", reason="duplicate"),
        ]
    )
    out = io.StringIO(newline="")
    write_requests(request_states(store), out, output_format="csv")
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert [(r["record_type"], r["outcome"]) for r in rows] == [
        ("request", "sent"),
        ("refusal", "rejected"),
    ]


@pytest.mark.parametrize("operator", ["\r=1+1", "jo\n=1+1", "jo\r\n+SUM(A1)", "\n@x"])
def test_csv_quotes_line_breaks_and_neutralises_each_line(store: EventStore, operator: str) -> None:
    """A value holding a bare CR or LF stays one quoted cell, and no line of it starts a
    formula, even for a reader that splits records at every line break."""
    store.append_many([prepared(operator=operator), sent()])
    out = io.StringIO(newline="")
    write_events(store.events(), out, output_format="csv")
    text = out.getvalue()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == 2
    assert rows[0]["operator"].replace("'", "") == operator
    assert f'"{rows[0]["operator"]}"' in text  # quoted
    for piece in re.split(r"\r\n|\r|\n", text):
        for cell in piece.split(","):
            assert not cell.lstrip('"').startswith(("=", "+", "@")), piece


def test_csv_has_crlf_line_ends_and_an_optional_bom(store: EventStore) -> None:
    """CSV records end in CRLF (as Excel writes them); bom=True puts a UTF-8 byte-order
    mark first, and only then."""
    store.append_many([prepared(), sent()])
    plain, marked = io.StringIO(newline=""), io.StringIO(newline="")
    write_requests(request_states(store), plain, output_format="csv")
    write_requests(request_states(store), marked, output_format="csv", bom=True)
    assert plain.getvalue().count("\r\n") == 2
    assert "\n" not in plain.getvalue().replace("\r\n", "")
    assert not plain.getvalue().startswith("\ufeff")
    assert marked.getvalue() == "\ufeff" + plain.getvalue()


def test_bom_is_only_for_csv() -> None:
    """A byte-order mark asked for a table or JSON lines is a ValueError."""
    with pytest.raises(ValueError, match="byte-order mark is for CSV"):
        write_requests([], io.StringIO(), output_format="jsonl", bom=True)


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
        (
            "csv",
            r"seq,recorded_at,kind,case_ref,request_ref,partner,gateway,form_sha256,reason\r\n",
        ),
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
