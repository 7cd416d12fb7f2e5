"""``overdue``: requests sent and not answered, past due, due soon or bounced."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from replies_helpers import run_cli

from mash_requests.audit import open_store
from mash_requests.audit.events import Event, EventKind, EventStore
from mash_requests.audit.sqlite import SQLiteEventStore
from mash_requests.cli import main
from mash_requests.config import Settings, load_settings
from mash_requests.replies import overdue, write_overdue
from mash_requests.replies.overdue import OverdueRequest
from mash_requests.replies.tracking import OpenRequests, open_requests
from workspace import Workspace

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # a Monday, 10:00 in London (GMT)


class Log:
    """Writes the events a send (and what follows) would have written, with chosen due times."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.count = 0

    def request(
        self,
        partner: str = "police",
        *,
        due: datetime,
        rag: str = "red",
        outcome: EventKind | None = EventKind.SENT,
        key: str | None = None,
    ) -> str:
        self.count += 1
        ref = f"MASH-2026-{self.count:04d}-{partner.upper()}-{self.count:05X}"
        fields = self.fields(ref, partner, key)
        events = [Event(EventKind.PREPARED, details={"rag": rag, "due": due.isoformat()}, **fields)]
        if outcome is not None:
            events.append(Event(outcome, **fields))
        self.store.append_many(events)
        return ref

    def fields(self, ref: str, partner: str = "police", key: str | None = None) -> dict[str, Any]:
        return {
            "case_ref": ref.rsplit("-", 2)[0],
            "request_ref": ref,
            "request_key": key or f"key-{ref}",
            "partner": partner,
            "message_id": f"<{ref}.0123456789abcdef@testbury.gov.uk>",
        }

    def after(self, ref: str, kind: EventKind, **details: Any) -> None:
        fields = self.fields(ref)
        fields.pop("request_key")
        partner = ref.rsplit("-", 2)[1].lower()
        fields["partner"] = partner
        self.store.append(Event(kind, details=details, **fields))


@pytest.fixture
def config(workspace: Workspace) -> Settings:
    return load_settings(workspace.config)


@pytest.fixture
def log(config: Settings) -> Iterator[Log]:
    store = open_store(config.log)
    yield Log(store)
    store.close()


def refs(items: list[Any]) -> list[str]:
    return [item.request_ref for item in items]


def test_a_sent_unanswered_request_past_due_is_overdue(config: Settings, log: Log) -> None:
    """Red, elapsed hours: 3 hours past due is "overdue", 3.0 hours late."""
    ref = log.request(due=NOW - timedelta(hours=3))
    [item] = overdue(config, now=NOW)
    assert (item.request_ref, item.state, item.hours_late, item.hours_basis) == (
        ref,
        "overdue",
        3.0,
        "elapsed",
    )
    assert (item.partner, item.partner_name, item.rag, item.chasers, item.bounced) == (
        "police", "Testshire Police", "red", 0, False,
    )  # fmt: skip


def test_elapsed_lateness_across_the_clocks_change_is_real_hours(
    config: Settings, log: Log
) -> None:
    """Due Thursday 25 March 2027 19:00 UTC (GMT), seen Sunday 28 March 14:30 UTC, after
    the clocks went forward: 67.5 hours late, not the 68.5 the wall clock shows."""
    log.request(due=datetime(2027, 3, 25, 19, 0, tzinfo=UTC))
    [item] = overdue(config, now=datetime(2027, 3, 28, 14, 30, tzinfo=UTC))
    assert (item.hours_late, item.hours_basis) == (67.5, "elapsed")


def test_due_soon_only_with_within(config: Settings, log: Log) -> None:
    """A request due in 2 hours is listed only when --within reaches it."""
    ref = log.request(due=NOW + timedelta(hours=2))
    assert overdue(config, now=NOW) == []
    assert overdue(config, now=NOW, within_hours=1) == []
    [item] = overdue(config, now=NOW, within_hours=3)
    assert (item.request_ref, item.state, item.hours_late) == (ref, "due_soon", -2.0)


def test_lateness_counts_working_hours_where_the_rating_does(workspace: Workspace) -> None:
    """Amber in working hours, due Friday 16:00, seen Monday 10:00: 2 working hours late."""
    text = workspace.config.read_text().replace(
        "[directory]", '[timescales]\nworking_hours = ["amber"]\n\n[directory]'
    )
    workspace.config.write_text(text)
    config = load_settings(workspace.config)
    store = open_store(config.log)
    try:
        Log(store).request(rag="amber", due=datetime(2026, 11, 27, 16, 0, tzinfo=UTC))
    finally:
        store.close()
    [item] = overdue(config, now=NOW)
    assert (item.hours_late, item.hours_basis) == (2.0, "working")


def test_an_answered_request_is_not_listed(config: Settings, log: Log) -> None:
    """A replied event (email or recorded) takes a request off the list."""
    answered = log.request(due=NOW - timedelta(hours=5))
    waiting = log.request(due=NOW - timedelta(hours=5))
    log.after(answered, EventKind.REPLIED, channel="email")
    assert refs(overdue(config, now=NOW)) == [waiting]


def test_automatic_replies_and_receipts_do_not_answer(config: Settings, log: Log) -> None:
    """An out-of-office or a read receipt leaves the request overdue."""
    ref = log.request(due=NOW - timedelta(hours=1))
    log.after(ref, EventKind.AUTO_REPLY, auto_type="out_of_office")
    log.after(ref, EventKind.READ_RECEIPT)
    assert refs(overdue(config, now=NOW)) == [ref]


def test_a_bounced_request_is_listed_whatever_its_due_time(config: Settings, log: Log) -> None:
    """Bounced means the partner never got it: listed now, due in a day or not."""
    ref = log.request(due=NOW + timedelta(days=1))
    log.after(ref, EventKind.BOUNCED, status="5.1.1")
    [item] = overdue(config, now=NOW)
    assert (item.state, item.bounced, item.bounce_status) == ("bounced", True, "5.1.1")


def test_requests_not_sent_or_unconfirmed_are_not_listed(config: Settings, log: Log) -> None:
    """Failed, pending and unconfirmed requests are settled elsewhere, not chased."""
    log.request(due=NOW - timedelta(hours=1), outcome=EventKind.FAILED)
    log.request(due=NOW - timedelta(hours=1), outcome=None)
    unconfirmed = log.request(due=NOW - timedelta(hours=1), outcome=EventKind.UNCONFIRMED)
    assert overdue(config, now=NOW) == []
    log.after(unconfirmed, EventKind.RECONCILED, outcome="sent")
    assert refs(overdue(config, now=NOW)) == [unconfirmed]


def test_a_resend_replaces_the_earlier_request(config: Settings, log: Log) -> None:
    """After --resend only the new request is listed; a reply to either answers it."""
    first = log.request(due=NOW - timedelta(hours=9), key="same")
    second = log.request(due=NOW - timedelta(hours=1), key="same")
    assert refs(overdue(config, now=NOW)) == [second]
    log.after(first, EventKind.REPLIED, channel="email")
    assert overdue(config, now=NOW) == []


def test_chasers_are_counted(config: Settings, log: Log) -> None:
    """Each chased event is one reminder sent."""
    ref = log.request(due=NOW - timedelta(hours=1))
    log.after(ref, EventKind.CHASED)
    log.after(ref, EventKind.CHASED)
    assert overdue(config, now=NOW)[0].chasers == 2


def test_the_most_urgent_come_first(config: Settings, log: Log) -> None:
    """Bounced, then overdue (earliest due first, red before green), then due soon."""
    soon = log.request(due=NOW + timedelta(hours=1))
    late_green = log.request(due=NOW - timedelta(hours=2), rag="green")
    late_red = log.request(due=NOW - timedelta(hours=2), rag="red")
    later = log.request(due=NOW - timedelta(hours=8))
    bounced = log.request(due=NOW + timedelta(hours=30))
    log.after(bounced, EventKind.BOUNCED)
    assert refs(overdue(config, now=NOW, within_hours=2)) == [
        bounced,
        later,
        late_red,
        late_green,
        soon,
    ]


def test_jsonl_has_the_documented_fields(workspace: Workspace, log: Log) -> None:
    """Each line: request_ref, case_ref, partner, rag, due (ISO 8601), state, chasers …; exit 1."""
    ref = log.request(due=datetime.now(UTC) - timedelta(hours=1))
    code, out, _ = run_cli("overdue", "--format", "jsonl", "--config", str(workspace.config))
    assert code == 1
    [line] = out.splitlines()
    item = json.loads(line)
    assert {"request_ref", "case_ref", "partner", "rag", "due", "state", "chasers"} <= set(item)
    assert item["request_ref"] == ref and item["state"] == "overdue" and item["chasers"] == 0
    assert datetime.fromisoformat(item["due"]).tzinfo is not None


def test_nothing_overdue_exits_0_even_with_requests_due_soon(
    workspace: Workspace, log: Log
) -> None:
    """Exit 0 when nothing is overdue or bounced; due soon is listed but fine."""
    log.request(due=datetime.now(UTC) + timedelta(hours=1))
    code, out, _ = run_cli("overdue", "--within", "2", "--config", str(workspace.config))
    assert code == 0
    assert "due_soon" in out and "(1 request: 1 due soon)" in out


def test_the_table_never_cuts_a_reference(workspace: Workspace, log: Log) -> None:
    """Columns fit their content: the whole request reference is printed."""
    ref = log.request(partner="education", due=datetime.now(UTC) - timedelta(hours=1))
    _, out, _ = run_cli("overdue", "--config", str(workspace.config))
    assert ref in out


def test_csv_has_a_header_and_one_row_per_request(workspace: Workspace, log: Log) -> None:
    """CSV for spreadsheets: a header row, then the same fields as jsonl."""
    log.request(due=datetime.now(UTC) - timedelta(hours=1))
    _, out, _ = run_cli("overdue", "--format", "csv", "--config", str(workspace.config))
    header, row = out.splitlines()
    assert header.startswith("request_ref,case_ref,partner,partner_name,rag,due,state,")
    assert ",overdue," in row


def test_csv_opens_in_excel_as_the_audit_export_does(workspace: Workspace, log: Log) -> None:
    """CSV as ``audit query`` writes it (issue 12.11): UTF-8 bytes, CRLF line ends, a
    byte-order mark with --bom, yes/no for bounced; a partner name a spreadsheet would run
    as a formula gets a leading '."""
    ref = log.request(due=datetime.now(UTC) - timedelta(hours=1))
    result = CliRunner().invoke(
        main, ["overdue", "--format", "csv", "--bom", "--config", str(workspace.config)]
    )
    assert result.exit_code == 1, result.output  # something is overdue
    data = result.stdout_bytes
    assert data.startswith("\ufeff".encode())
    text = data.decode("utf-8-sig")
    assert text.count("\r\n") == 2 and "\n" not in text.replace("\r\n", "")
    [row] = list(csv.DictReader(io.StringIO(text, newline="")))
    assert row["request_ref"] == ref and row["bounced"] == "no" and row["state"] == "overdue"
    # Without --bom: no byte-order mark, the same CRLF rows.
    plain = CliRunner().invoke(
        main, ["overdue", "--format", "csv", "--config", str(workspace.config)]
    )
    assert plain.stdout_bytes == data[len("\ufeff".encode()) :]


def test_csv_cells_that_look_like_formulas_are_neutralised() -> None:
    """write_overdue's CSV goes through the audit export's spreadsheet_safe."""
    item = OverdueRequest(
        request_ref="MASH-2026-0001-POLICE-00001",
        case_ref="MASH-2026-0001",
        partner="police",
        partner_name='=HYPERLINK("http://x")',
        rag="red",
        due=NOW,
        state="overdue",
        hours_late=1.5,
        hours_basis="elapsed",
        chasers=0,
        bounced=True,
        bounce_status="5.1.1",
        sent_at=None,
        message_id=None,
    )
    out = io.StringIO(newline="")
    write_overdue([item], out, output_format="csv")
    [row] = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert row["partner_name"].startswith("'=")
    assert row["bounced"] == "yes" and row["sent_at"] == "" and row["hours_late"] == "1.5"
    assert out.getvalue().endswith("\r\n")


def test_bom_is_only_for_csv(workspace: Workspace) -> None:
    """--bom without --format csv: exit 2 saying what to add; from Python, a ValueError."""
    code, _, err = run_cli("overdue", "--bom", "--config", str(workspace.config))
    assert code == 2
    assert "--bom is for CSV output; add --format csv" in err
    with pytest.raises(ValueError, match="byte-order mark is for CSV"):
        write_overdue([], io.StringIO(), output_format="jsonl", bom=True)


def test_a_negative_within_is_bad_input(workspace: Workspace) -> None:
    """--within -1: exit 2."""
    assert run_cli("overdue", "--within", "-1", "--config", str(workspace.config))[0] == 2


# -- the cache of open requests --------------------------------------------------------------


def test_the_cache_is_used_and_extended(config: Settings, log: Log) -> None:
    """A second listing reads only what is new since the first, and sees it."""
    first = log.request(due=NOW - timedelta(hours=1))
    assert refs(overdue(config, now=NOW)) == [first]
    [cache] = (config.data_dir / "cache").glob("open-requests-*.json")
    seq = json.loads(cache.read_text())["state"]["seq"]
    second = log.request(due=NOW - timedelta(hours=2))
    assert refs(overdue(config, now=NOW)) == [second, first]
    assert json.loads(cache.read_text())["state"]["seq"] > seq


def test_an_edited_cache_is_ignored(config: Settings, log: Log) -> None:
    """A cache whose checksum does not hold is rebuilt from the log, never believed."""
    ref = log.request(due=NOW - timedelta(hours=1))
    overdue(config, now=NOW)
    [cache] = (config.data_dir / "cache").glob("open-requests-*.json")
    document = json.loads(cache.read_text())
    document["state"]["requests"] = []  # hide the overdue request
    cache.write_text(json.dumps(document))
    assert refs(overdue(config, now=NOW)) == [ref]


def test_a_cache_of_another_log_is_ignored(config: Settings, log: Log, tmp_path: Path) -> None:
    """The event the cache ends with must be in this log with that hash, or it is rebuilt."""
    other = SQLiteEventStore(tmp_path / "other.sqlite3")
    try:
        Log(other).request(due=NOW - timedelta(hours=1))
        stale = open_requests(
            other, cache_dir=config.data_dir / "cache", location=str(config.log.path)
        )
        assert len(stale.by_key) == 1
    finally:
        other.close()
    mine = log.request(partner="health", due=NOW - timedelta(hours=1))
    assert refs(overdue(config, now=NOW)) == [mine]


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(
            ["prepare", "sent", "failed", "unconfirmed", "replied", "bounced", "chased", "resend"]
        ),
        st.integers(min_value=0, max_value=3),
    ),
    max_size=30,
)


@given(operations=OPERATIONS, cut=st.integers(min_value=0, max_value=60))
@settings(max_examples=60, deadline=None)
def test_continuing_from_a_cache_gives_what_reading_everything_gives(
    operations: list[tuple[str, int]], cut: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Folding the log from the cache at any point equals folding it from the first event."""
    folder = tmp_path_factory.mktemp("fold")
    store = SQLiteEventStore(folder / "log.sqlite3")
    try:
        log = Log(store)
        latest: dict[int, str] = {}
        events: list[tuple[str, int]] = operations
        for index, (op, n) in enumerate(events):
            if index == cut:
                open_requests(store, cache_dir=folder / "cache", location="x")
            if op in ("prepare", "resend") or n not in latest:
                latest[n] = log.request(due=NOW, outcome=None, key=f"k{n}")
                continue
            kind = {
                "sent": EventKind.SENT, "failed": EventKind.FAILED,
                "unconfirmed": EventKind.UNCONFIRMED, "replied": EventKind.REPLIED,
                "bounced": EventKind.BOUNCED, "chased": EventKind.CHASED,
            }[op]  # fmt: skip
            log.after(latest[n], kind)
        cached = open_requests(store, cache_dir=folder / "cache", location="x")
        fresh = OpenRequests()
        fresh.fold(store.events())
        assert cached.to_json() == fresh.to_json()
    finally:
        store.close()
