"""``mash-requests audit``: verify, checkpoint, query and report, with their exit codes."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_helpers import RawLog, log_section, prepared, sent
from click.testing import CliRunner, Result

from mash_requests.audit import Event, EventKind, EventStore
from mash_requests.cli import main

Run = Callable[..., Result]


@pytest.fixture
def run(backend: str, store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """Runs ``mash-requests audit …`` with a config whose [log] is ``store``."""
    config = tmp_path / "mash-requests.toml"
    config.write_text(
        f'[mash]\nname = "Testbury MASH"\nsender = "mash@testbury.gov.uk"\n'
        f'data_dir = "data"\n\n{log_section(backend, store, monkeypatch)}',
        encoding="utf-8",
    )

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["audit", *args, "--config", str(config)])

    return invoke


def fill(store: EventStore) -> None:
    store.append_many(
        [
            prepared("C-1"),
            sent("C-1"),
            prepared("C-2", partner="health", request_ref="C-2-health"),
            Event(
                EventKind.FAILED,
                "C-2",
                request_ref="C-2-health",
                partner="health",
                reason="permanent",
                server_message="=cmd|' /C calc'!A0",
            ),
            Event(EventKind.REJECTED, "C-3", partner="police", reason="form_missing"),
        ]
    )


# -- verify --------------------------------------------------------------------------------


def test_verify_intact_log_exits_0(run: Run, store: EventStore) -> None:
    """verify prints 'intact' with the head and exits 0."""
    fill(store)
    result = run("verify")
    assert result.exit_code == 0, result.output
    assert "intact: 5 events, head seq 5 hash" in result.stdout


def test_verify_json_of_an_intact_log(run: Run, store: EventStore) -> None:
    """verify --json prints one JSON document: status, counts, head, range, database check."""
    fill(store)
    result = run("verify", "--json")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    doc = json.loads(line)
    assert (doc["command"], doc["ok"], doc["exit_code"], doc["error"]) == (
        "audit verify",
        True,
        0,
        None,
    )
    assert doc["status"] == "intact" and doc["intact"] is True
    assert doc["events"] == 5
    assert doc["head"]["seq"] == 5 and len(doc["head"]["hash"]) == 64
    assert doc["verified_now"] == {"from": 1, "to": 5}
    assert doc["verified_earlier"] is None and doc["break"] is None
    assert doc["rows_outside_chain"] == {"count": 0, "seqs": []}
    assert doc["log_table_problems"] == []
    assert doc["database_check"]["ran"] is True and doc["database_check"]["ok"] is True
    assert doc["checkpoint"] is None


def test_verify_json_of_a_broken_log(run: Run, store: EventStore, raw: RawLog) -> None:
    """A break and rows outside the chain are in the document; exit 1 as without --json."""
    fill(store)
    raw.delete(4)
    raw.execute(
        "INSERT INTO events (seq, recorded_at, kind, case_ref, prev_hash, hash, record)"
        " SELECT -5, recorded_at, kind, 'FORGED', prev_hash, hash, record FROM events"
        " WHERE seq = 2"
    )
    result = run("verify", "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "broken" and doc["intact"] is False
    assert doc["break"]["seq"] == 4 and doc["break"]["problem"] == "removed"
    assert doc["verified_now"] == {"from": 1, "to": 3}
    assert doc["rows_outside_chain"] == {"count": 1, "seqs": [-5]}


def test_verify_json_when_the_log_cannot_be_opened(tmp_path: Path) -> None:
    """No log: exit 2, the same keys (null) and the error; 'Error:' still on stderr."""
    config = tmp_path / "mash-requests.toml"
    config.write_text(
        f'[mash]\nname = "T"\nsender = "m@t.gov.uk"\n\n[log]\npath = "{tmp_path / "none.db"}"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["audit", "verify", "--json", "--config", str(config)])
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert (doc["ok"], doc["exit_code"], doc["status"], doc["events"]) == (False, 2, None, None)
    assert doc["error"]["reason"] == "config"
    assert "no dispatch log at" in doc["error"]["message"]
    assert result.stderr.startswith("Error: no dispatch log at")


def test_verify_broken_log_exits_1_with_details(run: Run, store: EventStore, raw: RawLog) -> None:
    """verify of a tampered log prints where and how it is broken and exits 1."""
    fill(store)
    raw.delete(2)
    result = run("verify")
    assert result.exit_code == 1
    assert "BROKEN at seq 2 (removed): event 2 is missing" in result.stdout
    assert "1 event(s) verified; last intact seq 1" in result.stdout


def test_checkpoint_then_verify_catches_removed_tail(
    run: Run, store: EventStore, raw: RawLog, tmp_path: Path
) -> None:
    """A checkpoint written by the CLI lets verify catch the newest event's removal."""
    fill(store)
    out = tmp_path / "cp.json"
    written = run("checkpoint", "--out", str(out))
    assert written.exit_code == 0, written.output
    assert "5 events, head seq 5" in written.stdout
    assert run("verify", "--checkpoint", str(out)).exit_code == 0
    raw.delete(5)
    result = run("verify", "--checkpoint", str(out))
    assert result.exit_code == 1
    assert "BROKEN at seq 5 (removed)" in result.stdout


def test_checkpoint_of_broken_log_exits_1_and_writes_nothing(
    run: Run, store: EventStore, raw: RawLog, tmp_path: Path
) -> None:
    """checkpoint refuses a broken log: exit 1, no file."""
    fill(store)
    raw.set_column(3, "partner", "housing")
    out = tmp_path / "cp.json"
    result = run("checkpoint", "--out", str(out))
    assert result.exit_code == 1
    assert "Error: not written: the log is broken: BROKEN at seq 3 (changed)" in result.stderr
    assert not out.exists()


def test_verify_with_unreadable_checkpoint_exits_2(run: Run, tmp_path: Path) -> None:
    """A checkpoint file that does not exist is a usage error (2), not a broken log."""
    result = run("verify", "--checkpoint", str(tmp_path / "missing.json"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: checkpoint {tmp_path / 'missing.json'}: cannot read")


def test_verify_unopenable_log_exits_2(tmp_path: Path) -> None:
    """A log that cannot be opened exits 2, keeping 1 for 'broken'."""
    (tmp_path / "log").write_text("not a database " * 100)
    config = tmp_path / "c.toml"
    config.write_text(f'[log]\npath = "{tmp_path / "log"}"\n')
    result = CliRunner().invoke(main, ["audit", "verify", "--config", str(config)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: dispatch log {tmp_path / 'log'}: cannot open")


def test_bad_config_exits_2(tmp_path: Path) -> None:
    """A misspelt [log] key exits 2 naming it."""
    config = tmp_path / "c.toml"
    config.write_text('[log]\npathh = "x"\n')
    result = CliRunner().invoke(main, ["audit", "verify", "--config", str(config)])
    assert result.exit_code == 2
    assert "[log] pathh: unknown key" in result.stderr


# -- query ---------------------------------------------------------------------------------


def test_query_table_lists_requests(run: Run, store: EventStore) -> None:
    """query prints one row per request with its outcome and counts requests; the refusal
    (no request was built) follows in a section of its own with its own count."""
    fill(store)
    result = run("query")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["REQUEST", "CASE", "PARTNER", "OUTCOME"]
    assert lines[1].split()[:4] == ["C-1-police", "C-1", "police", "sent"]
    assert lines[2].split()[:4] == ["C-2-health", "C-2", "health", "failed"]
    assert lines[3] == "(2 requests)"
    assert lines[5].startswith("Refused before any request was built")
    assert lines[7].split()[:2] == ["C-3", "police"]
    assert lines[7].split()[-1] == "form_missing"
    assert lines[-1] == "(1 refusal)"


def test_query_filters_by_case_and_outcome(run: Run, store: EventStore) -> None:
    """--case-ref and --outcome narrow the requests listed."""
    fill(store)
    assert run("query", "--case-ref", "C-2").stdout.splitlines()[-1] == "(1 request)"
    out = run("query", "--outcome", "sent", "--outcome", "rejected").stdout
    assert "(1 request)" in out.splitlines()
    assert out.splitlines()[-1] == "(1 refusal)"
    assert "C-2-health" not in out


def test_query_events_csv_neutralises_formulas(run: Run, store: EventStore) -> None:
    """--events --format csv gives every event field; a formula-like cell gets a quote."""
    fill(store)
    result = run("query", "--events", "--format", "csv", "--partner", "health")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["kind"] for r in rows] == ["prepared", "failed"]
    assert rows[1]["server_message"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["seq"] == "3"
    assert len(rows[0]["hash"]) == 64


def test_query_jsonl_is_one_object_per_line(run: Run, store: EventStore) -> None:
    """--format jsonl prints one JSON object per request with every field."""
    fill(store)
    lines = run("query", "--format", "jsonl", "--form-sha256", "AB" * 32).stdout.splitlines()
    (document,) = [json.loads(line) for line in lines]
    assert document["request_ref"] == "C-1-police"
    assert document["recipients"] == ["mash@police.uk"]
    assert document["sent_at"].endswith("Z")


def test_query_by_date_includes_the_whole_to_day(run: Run, store: EventStore) -> None:
    """--from/--to DATE select the events recorded on those UTC days."""
    fill(store)
    day = next(store.events()).recorded_at.date().isoformat()
    out = run("query", "--from", day, "--to", day).stdout
    assert "(2 requests)" in out.splitlines()
    assert out.splitlines()[-1] == "(1 refusal)"
    assert run("query", "--to", "2000-01-01").stdout.splitlines()[-1] == "(0 requests)"


def test_query_outcome_with_events_is_a_usage_error(run: Run) -> None:
    """--outcome with --events exits 2 and says why."""
    result = run("query", "--events", "--outcome", "sent")
    assert result.exit_code == 2
    assert "--outcome selects requests" in result.stderr


def test_query_bad_date_is_a_usage_error(run: Run) -> None:
    """A date that is not a date exits 2 naming the option."""
    result = run("query", "--from", "31/12/2026")
    assert result.exit_code == 2
    assert "Invalid value for --from: expected YYYY-MM-DD" in result.stderr


def test_query_csv_for_excel(run: Run, store: EventStore) -> None:
    """--format csv --bom writes UTF-8 bytes starting with the byte-order mark, CRLF line
    ends, and a CR in the operator's name quoted and neutralised, never a new record."""
    store.append_many([prepared("C-1", operator="\r=1+1"), sent("C-1")])
    result = run("query", "--events", "--format", "csv", "--bom")
    assert result.exit_code == 0, result.output
    data = result.stdout_bytes
    assert data.startswith("\ufeff".encode())
    text = data.decode("utf-8-sig")
    assert text.count("\r\n") == 3  # header and two events; the CR inside is quoted
    assert "\"'\r'=1+1\"" in text
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [r["kind"] for r in rows] == ["prepared", "sent"]


def test_query_bom_without_csv_is_a_usage_error(run: Run) -> None:
    """--bom with the table format exits 2 and says to add --format csv."""
    result = run("query", "--bom")
    assert result.exit_code == 2
    assert "--bom is for CSV output; add --format csv" in result.stderr


def test_query_of_empty_csv_has_a_header(run: Run) -> None:
    """An empty result in CSV still prints the header line."""
    result = run("query", "--format", "csv")
    assert result.stdout.startswith("request_ref,case_ref,partner,outcome")


# -- report --------------------------------------------------------------------------------


def test_report_writes_html_and_summarises(run: Run, store: EventStore, tmp_path: Path) -> None:
    """report writes the HTML file and prints the attachment rate and verification."""
    fill(store)
    out = tmp_path / "r" / "report.html"
    result = run("report", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "1 request(s) sent, 100% (1 of 1) with the referral form attached" in result.stdout
    assert "log: intact: 5 events" in result.stdout
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert '<h2 id="timeliness">Timeliness of answers</h2>' in page


def test_report_after_verify_says_what_it_verified_now_and_earlier(
    run: Run, store: EventStore, tmp_path: Path
) -> None:
    """After audit verify and two new events, report prints both ranges and the time."""
    fill(store)
    assert run("verify").exit_code == 0
    store.append_many([prepared("C-9"), sent("C-9")])
    result = run("report", "--out", str(tmp_path / "report.html"))
    assert result.exit_code == 0, result.output
    assert "log: intact: 7 events (seq 6..7 verified now, 1..5 verified earlier at " in (
        result.stdout
    )
    assert "     verified now: seq 6..7" in result.stdout
    assert "     verified earlier: seq 1..5 at " in result.stdout
    assert "not keyed" in result.stdout


def test_report_on_broken_log_exits_1(
    run: Run, store: EventStore, raw: RawLog, tmp_path: Path
) -> None:
    """A report is still written for a broken log, which it states; exit code 1."""
    fill(store)
    raw.delete(1)
    out = tmp_path / "report.html"
    result = run("report", "--out", str(out))
    assert result.exit_code == 1
    assert "BROKEN at event 1 (removed)" in out.read_text(encoding="utf-8")


# -- what the config needs -----------------------------------------------------------------

_GATEWAY_WITH_UNSET_SECRET = """
[gateway]
type = "graph"

[gateway.graph]
mailbox = "mash@testbury.gov.uk"
tenant_id = "tenant"
client_id = "client"
client_secret_env = "MASH_TEST_UNSET_GRAPH_SECRET"
"""


@pytest.mark.parametrize(
    "command",
    [["verify"], ["query"], ["report", "--out", "r.html"], ["checkpoint", "--out", "cp.json"]],
    ids=lambda c: c[0],
)
def test_audit_commands_need_no_gateway_secret(
    backend: str,
    store: EventStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    """An auditor's config whose gateway secret variable is unset still reads the log."""
    monkeypatch.delenv("MASH_TEST_UNSET_GRAPH_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)
    fill(store)
    config = tmp_path / "auditor.toml"
    config.write_text(
        f'[mash]\nname = "Testbury MASH"\n{_GATEWAY_WITH_UNSET_SECRET}\n'
        f"{log_section(backend, store, monkeypatch)}",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["audit", *command, "--config", str(config)])
    assert result.exit_code == 0, result.output


def test_report_title_defaults_to_the_mash_name(
    run: Run, store: EventStore, tmp_path: Path
) -> None:
    """Without --title the report is titled from [mash] name."""
    fill(store)
    out = tmp_path / "report.html"
    assert run("report", "--out", str(out)).exit_code == 0
    assert "<title>Testbury MASH: requests for information</title>" in out.read_text("utf-8")


def _report_config(
    tmp_path: Path, backend: str, store: EventStore, monkeypatch: pytest.MonkeyPatch, extra: str
) -> Path:
    config = tmp_path / "council.toml"
    config.write_text(
        f'[mash]\nname = "Testbury MASH"\n{extra}\n{log_section(backend, store, monkeypatch)}',
        encoding="utf-8",
    )
    return config


def test_report_uses_the_councils_template(
    backend: str, store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report.html.j2 in the [mash] templates folder replaces the shipped one, and what it
    prints from the log is escaped."""
    fill(store)
    folder = tmp_path / "ours"
    folder.mkdir()
    (folder / "report.html.j2").write_text(
        "<!DOCTYPE html><p>Eastshire brand: {{ title }}, {{ totals.sent }} sent, {{ '<b>' }}</p>\n",
        encoding="utf-8",
    )
    config = _report_config(tmp_path, backend, store, monkeypatch, 'templates = "ours"')
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        main, ["audit", "report", "--out", str(out), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text("utf-8") == (
        "<!DOCTYPE html><p>Eastshire brand: Testbury MASH: requests for information, "
        "1 sent, &lt;b&gt;</p>\n"
    )


def test_report_names_partners_and_carries_the_marking_from_the_config(
    backend: str, store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report names agencies from [partners.KEY] name and shows [mash] marking."""
    fill(store)
    extra = (
        'marking = "OFFICIAL-SENSITIVE PERSONAL"\n\n[directory]\nallowed_domains = ["police.uk"]'
        '\n\n[partners.police]\nname = "Eastshire Police"\naddresses = ["mash@police.uk"]\n'
    )
    config = _report_config(tmp_path, backend, store, monkeypatch, extra)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        main, ["audit", "report", "--out", str(out), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text("utf-8")
    assert '<th scope="row">Eastshire Police</th>' in page
    assert page.count(">OFFICIAL-SENSITIVE PERSONAL</p>") == 2


def test_report_with_a_broken_template_exits_2_naming_it(
    backend: str, store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A council template with a syntax error stops the report with exit 2, naming the
    file and line; no report is written."""
    fill(store)
    folder = tmp_path / "ours"
    folder.mkdir()
    (folder / "report.html.j2").write_text("line one\n{% if %}\n", encoding="utf-8")
    config = _report_config(tmp_path, backend, store, monkeypatch, 'templates = "ours"')
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        main, ["audit", "report", "--out", str(out), "--config", str(config)]
    )
    assert result.exit_code == 2
    assert "Error: template" in result.stderr
    assert "report.html.j2: syntax error at line 2" in result.stderr
    assert not out.exists()


def test_cli_choices_match_the_library() -> None:
    """The CLI's copies of the outcome and format names (kept for a fast --help) are current."""
    import importlib

    from mash_requests.audit.export import FORMATS
    from mash_requests.audit.query import OUTCOMES

    # By module name: mash_requests.cli.audit as an attribute is the click group.
    audit_cli = importlib.import_module("mash_requests.cli.audit")
    assert audit_cli._OUTCOMES == OUTCOMES
    assert audit_cli._FORMATS == FORMATS
