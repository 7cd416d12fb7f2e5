"""send-batch: validate the whole file first, then send resumably, exactly once per request."""

from __future__ import annotations

import csv
import email
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from mash_requests.audit.events import EventKind
from mash_requests.batch import CSV_COLUMNS, BatchProgress, send_batch
from mash_requests.cli import main
from mash_requests.config import DEFAULT_FILL_MAPPING, load_settings
from mash_requests.referral_form import fill_form
from workspace import EXAMPLES, Workspace


def make_cases(workspace: Workspace, count: int) -> list[dict[str, Any]]:
    """``count`` valid cases, each with its own filled referral form."""
    blank = (EXAMPLES / "forms" / "blank-referral-form.pdf").read_bytes()
    base = workspace.example_case()
    cases = []
    for number in range(count):
        data = json.loads(json.dumps(base))
        data["case_ref"] = f"MASH-2026-{5000 + number}"
        data["contact_id"] = f"CON-{90000 + number}"
        data["referral_form"] = f"forms/{data['case_ref']}.pdf"
        from mash_requests.case import parse_case

        case = parse_case(data, source="generated", base_dir=workspace.root)
        form = fill_form(blank, case.form_values(DEFAULT_FILL_MAPPING))
        (workspace.root / data["referral_form"]).write_bytes(form)
        cases.append(data)
    return cases


def write_jsonl(workspace: Workspace, cases: list[dict[str, Any]]) -> Path:
    path = workspace.root / "batch.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    return path


def invoke(workspace: Workspace, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["send-batch", "--config", str(workspace.config), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_batch_sends_every_request(workspace: Workspace) -> None:
    """Every case's requests go out once, and the summary counts them."""
    batch = write_jsonl(workspace, make_cases(workspace, 3))
    code, out, _ = invoke(workspace, str(batch))
    assert code == 0, out
    assert len(workspace.outbox_files()) == 6
    assert "6 sent" in out


def test_bad_rows_are_all_reported_before_anything_is_sent(workspace: Workspace) -> None:
    """Every bad row is listed with its row number and field; nothing is sent."""
    cases = make_cases(workspace, 4)
    cases[1]["rag"] = "purple"
    cases[3]["child"]["date_of_birth"] = "31/02/2015"
    batch = write_jsonl(workspace, cases)
    code, _, err = invoke(workspace, str(batch))
    assert code == 2
    assert "row 2:" in err
    assert "field rag" in err
    assert "row 4:" in err
    assert "field child.date_of_birth" in err
    assert workspace.outbox_files() == []
    rejected = [e for e in workspace.events() if e.kind is EventKind.REJECTED]
    assert len(rejected) == 2


def test_skip_invalid_sends_the_valid_rows(workspace: Workspace) -> None:
    """--skip-invalid sends the good rows, lists the bad ones and exits 1."""
    cases = make_cases(workspace, 3)
    cases[0]["partners"] = ["police", "mi6"]
    code, _, err = invoke(workspace, str(write_jsonl(workspace, cases)), "--skip-invalid")
    assert code == 1
    assert "unknown partner 'mi6'" in err
    assert len(workspace.outbox_files()) == 4


def test_rerun_sends_nothing_twice(workspace: Workspace) -> None:
    """Running the same batch again skips every request already sent."""
    batch = write_jsonl(workspace, make_cases(workspace, 2))
    assert invoke(workspace, str(batch))[0] == 0
    code, out, _ = invoke(workspace, str(batch))
    assert code == 0
    assert "4 already sent" in out
    assert len(workspace.outbox_files()) == 4


def test_refused_form_in_a_batch_does_not_stop_the_others(workspace: Workspace) -> None:
    """A case whose form is another case's is refused; the other cases are sent."""
    cases = make_cases(workspace, 3)
    cases[1]["referral_form"] = cases[0]["referral_form"]
    code, out, _ = invoke(workspace, str(write_jsonl(workspace, cases)))
    assert code == 1
    assert "refused (wrong_case): 2" in out
    assert len(workspace.outbox_files()) == 4


def test_csv_batch_with_documented_columns(workspace: Workspace) -> None:
    """A CSV file with the README's columns sends like JSON Lines."""
    cases = make_cases(workspace, 2)
    path = workspace.root / "batch.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["case_ref", "contact_id", "rag", "child_name", "child_date_of_birth", "child_address",
             "consent_status", "consent_reason", "consent_given_by", "concerns", "worker_name",
             "worker_role", "worker_email", "partners", "referral_form"]
        )  # fmt: skip
        for c in cases:
            writer.writerow(
                [c["case_ref"], c["contact_id"], c["rag"], c["child"]["name"],
                 c["child"]["date_of_birth"], c["child"]["address"], c["consent"]["status"],
                 c["consent"]["reason"], c["consent"]["given_by"], c["concerns"],
                 c["worker"]["name"], c["worker"]["role"], c["worker"]["email"],
                 ";".join(c["partners"]), c["referral_form"]]
            )  # fmt: skip
    code, out, _ = invoke(workspace, str(path))
    assert code == 0, out
    assert len(workspace.outbox_files()) == 4


def test_api_reports_progress(workspace: Workspace) -> None:
    """The Python API calls the progress callback with running totals."""
    batch = write_jsonl(workspace, make_cases(workspace, 2))
    seen: list[int] = []

    def progress(state: BatchProgress) -> None:
        seen.append(state.done)
        assert state.total_requests == 4

    result = send_batch(load_settings(workspace.config), batch, progress=progress)
    assert seen == [2, 4]
    assert result.counts["sent"] == 4


def test_non_tty_progress_is_plain_lines(workspace: Workspace) -> None:
    """Off a terminal, progress is plain lines, not a redrawn bar."""
    batch = write_jsonl(workspace, make_cases(workspace, 2))
    _, _, err = invoke(workspace, str(batch))
    assert "progress: 4/4 requests" in err
    assert "\r" not in err


class _SlowSink:
    """An SMTP handler that keeps every message and takes a little time over each."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        time.sleep(0.05)
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK queued"


@pytest.mark.slow
def test_ctrl_c_then_rerun_sends_every_request_exactly_once(workspace: Workspace) -> None:
    """Interrupting a batch mid-way and running it again delivers each request exactly once."""
    sink = _SlowSink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        workspace.config.write_text(
            workspace.config.read_text()
            + f"""
[gateway]
type = "smtp"

[gateway.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
mailbox = "mash@testbury.gov.uk"

[rate_limit]
per_minute = 100000
""",
            encoding="utf-8",
        )
        cases = make_cases(workspace, 15)
        batch = write_jsonl(workspace, cases)
        command = [sys.executable, "-m", "mash_requests", "send-batch", str(batch),
                   "--config", str(workspace.config)]  # fmt: skip
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(sink.messages) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        first.send_signal(signal.SIGINT)
        _, first_err = first.communicate(timeout=60)
        assert first.returncode == 1, first_err
        assert b"interrupted" in first_err
        delivered_first = len(sink.messages)
        assert 8 <= delivered_first < 30

        second = subprocess.run(command, capture_output=True, timeout=120, check=False)
        assert second.returncode == 0, second.stderr
        per_request = Counter((m["X-MASH-Case-Ref"], m["To"]) for m in sink.messages)
        assert len(per_request) == 30
        assert set(per_request.values()) == {1}
    finally:
        controller.stop()


@pytest.fixture(autouse=True)
def _no_inherited_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASH_REQUESTS_CONFIG", raising=False)
    monkeypatch.setitem(os.environ, "PYTHONUNBUFFERED", "1")


def test_csv_without_a_required_column_is_one_error(workspace: Workspace) -> None:
    """A CSV whose header lacks a column is refused once, naming the column."""
    path = workspace.root / "batch.csv"
    path.write_text("case_ref,contact_id\nMASH-1,CON-1\nMASH-2,CON-2\n", encoding="utf-8")
    code, _, err = invoke(workspace, str(path))
    assert code == 2
    assert err.count("Error:") == 1
    assert "no column rag" in err


def test_csv_with_an_unclosed_quote_is_a_clear_error(workspace: Workspace) -> None:
    """A CSV broken by an unclosed quote is refused with a hint, not a traceback."""
    header = ",".join(
        ["case_ref", "contact_id", "rag", "child_name", "child_date_of_birth", "child_address",
         "consent_status", "concerns", "worker_name", "worker_role", "worker_email", "partners"]
    )  # fmt: skip
    path = workspace.root / "batch.csv"
    path.write_text(header + '\nMASH-1,"CON-1' + "x" * 200_000 + "\n", encoding="utf-8")
    code, _, err = invoke(workspace, str(path))
    assert code == 2
    assert "unclosed quote" in err


CSV_HEADER = (
    "case_ref,contact_id,rag,child_name,child_date_of_birth,child_address,consent_status,"
    "consent_reason,consent_given_by,concerns,worker_name,worker_role,worker_email,partners,"
    "referral_form"
)


def test_csv_row_with_more_fields_than_the_header_says_so(workspace: Workspace) -> None:
    """A row an unquoted comma has shifted is reported as having too many fields (with the
    quoting advice), not as a bad value in a later column; and neither the error nor the
    log repeats what the row holds."""
    path = workspace.root / "shift.csv"
    row = (
        "MASH-2026-0413,CON-1,red,Amira Novak,2012-11-23,Flat 3, 27 Kestrel Court Eastbury "
        "EB1 4LN,given,,Mother,concerns text,Sam Okafor,SW,sam.okafor@eastbury.gov.uk,police,"
        "forms/MASH-2026-0413.pdf"
    )
    path.write_text(f"{CSV_HEADER}\n{row}\n", encoding="utf-8")
    code, out, err = invoke(workspace, str(path))
    assert code == 2
    assert (
        f"row 2: {path} row 2 has 16 fields, the header has 15: a comma inside a cell (an "
        "address, the concerns) was not quoted; put that cell in double quotes"
    ) in err
    assert "consent" not in err
    for word in ("Kestrel", "Novak"):
        assert word not in out + err
        assert word.encode() not in workspace.log_path.read_bytes()


def test_csv_row_with_a_name_in_a_reference_column_is_not_repeated(workspace: Workspace) -> None:
    """A child's name in contact_id is refused as not a reference, without repeating it in
    the error or the log, and the refusal is logged under no case reference it made up."""
    path = workspace.root / "names.csv"
    row = (
        "Amira Novak,Amira Novak,red,x,2012-11-23,addr,given,,Mother,c,Sam Okafor,SW,"
        "sam.okafor@eastbury.gov.uk,police,forms/MASH-2026-0414.pdf"
    )
    path.write_text(f"{CSV_HEADER}\n{row}\n", encoding="utf-8")
    code, out, err = invoke(workspace, str(path), "--json")
    assert code == 2
    (bad,) = json.loads(out)["bad_rows"]
    assert bad["case_ref"] == "(unknown)"
    assert "field case_ref: expected a reference" in bad["message"]
    assert "got a text of 11 characters (it contains a space or a line break)" in bad["message"]
    assert "Novak" not in out + err
    assert b"Novak" not in workspace.log_path.read_bytes()
    assert [e.case_ref for e in workspace.events()] == ["(unknown)"]


def test_batch_file_that_is_a_named_pipe_is_refused_unopened(workspace: Workspace) -> None:
    """A named pipe given as the batch file is refused at once (exit 2), not waited on."""
    from test_send_request import fifo

    path = fifo(workspace.root / "batch.jsonl")
    code, _, err = invoke(workspace, str(path))
    assert code == 2
    assert f"batch file {path}: is a named pipe (FIFO), not a regular file" in err


def test_row_whose_form_is_a_named_pipe_is_a_bad_row(workspace: Workspace) -> None:
    """A row whose referral_form is a named pipe is a bad row saying so, not "not found"."""
    from test_send_request import fifo

    cases = make_cases(workspace, 1)
    fifo(workspace.root / cases[0]["referral_form"].replace(".pdf", "-pipe.pdf"))
    cases[0]["referral_form"] = cases[0]["referral_form"].replace(".pdf", "-pipe.pdf")
    code, _, err = invoke(workspace, str(write_jsonl(workspace, cases)))
    assert code == 2
    assert "is not a file (a folder, a named pipe or a device)" in err


def test_encrypted_forms_in_a_batch_say_where_the_password_goes(workspace: Workspace) -> None:
    """send-batch has no password option: its summary points to the config's keys."""
    from test_referral_form import rewrite

    cases = make_cases(workspace, 1)
    form = workspace.root / cases[0]["referral_form"]
    form.write_bytes(rewrite(form.read_bytes(), password="s3cret"))
    code, out, err = invoke(workspace, str(write_jsonl(workspace, cases)))
    assert code == 1
    assert "refused (encrypted): 2" in out
    assert "[form] password_env or password_file" in err


def test_csv_rows_of_empty_cells_are_skipped_and_not_counted(workspace: Workspace) -> None:
    """Rows whose cells are all empty, as Excel leaves after the last case, are no rows."""
    cases = make_cases(workspace, 2)
    path = workspace.root / "batch.csv"
    columns = list(CSV_COLUMNS)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerow([""] * len(columns))  # between cases too
        for c in cases:
            row = {
                "child_name": c["child"]["name"],
                "child_date_of_birth": c["child"]["date_of_birth"],
                "child_address": c["child"]["address"],
                "consent_status": c["consent"]["status"],
                "consent_reason": c["consent"]["reason"],
                "consent_given_by": c["consent"]["given_by"],
                "worker_name": c["worker"]["name"],
                "worker_role": c["worker"]["role"],
                "worker_email": c["worker"]["email"],
                "partners": ";".join(c["partners"]),
            }
            writer.writerow([row.get(column, c.get(column, "")) for column in columns])
        writer.writerow([""] * len(columns))
        writer.writerow([" "] * len(columns))
        writer.writerow([""] * (len(columns) + 2))  # wider than the header, still empty
    result = send_batch(load_settings(workspace.config), path)
    assert result.problems == []
    assert result.validated_rows == 2
    assert result.counts == Counter({"sent": 4})


def test_blank_json_lines_are_skipped_and_not_counted(workspace: Workspace) -> None:
    """Blank lines of a JSON Lines file (spaces, a trailing one) are no rows."""
    cases = make_cases(workspace, 2)
    path = workspace.root / "batch.jsonl"
    lines = ["", json.dumps(cases[0]), "   \t", json.dumps(cases[1]), "", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    result = send_batch(load_settings(workspace.config), path)
    assert result.problems == []
    assert result.validated_rows == 2
    assert result.counts == Counter({"sent": 4})
