"""send-batch as councils run it: Excel exports, reruns, cases held in memory."""

from __future__ import annotations

import csv
import io
from typing import Any

from click.testing import CliRunner

from mash_requests.audit.events import EventKind
from mash_requests.batch import send_batch
from mash_requests.cli import main
from mash_requests.config import load_settings
from test_batch import make_cases, write_jsonl
from workspace import Workspace

HEADER = ["case_ref", "contact_id", "rag", "child_name", "child_date_of_birth", "child_address",
          "consent_status", "consent_reason", "consent_given_by", "concerns", "worker_name",
          "worker_role", "worker_email", "partners", "referral_form"]  # fmt: skip


def csv_text(cases: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for c in cases:
        writer.writerow(
            [c["case_ref"], c["contact_id"], c["rag"], c["child"]["name"],
             c["child"]["date_of_birth"], c["child"]["address"], c["consent"]["status"],
             c["consent"]["reason"], c["consent"]["given_by"], c["concerns"],
             c["worker"]["name"], c["worker"]["role"], c["worker"]["email"],
             ";".join(c["partners"]), c["referral_form"]]
        )  # fmt: skip
    return out.getvalue()


def invoke(workspace: Workspace, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["send-batch", "--config", str(workspace.config), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def excel_cases(workspace: Workspace) -> list[dict[str, Any]]:
    cases = make_cases(workspace, 2)
    cases[0]["child"]["name"] = "Zoë Brontë"  # é and ë are single bytes in cp1252
    cases[1]["concerns"] = "Seen at the café – twice"  # the en dash is 0x96 in cp1252
    return cases


def test_cp1252_export_is_refused_naming_the_option(workspace: Workspace) -> None:
    """A CSV saved by Excel as cp1252 is refused (exit 2), naming --encoding cp1252 and the
    line of the first byte that is not UTF-8; nothing is sent."""
    path = workspace.root / "export.csv"
    path.write_bytes(csv_text(excel_cases(workspace)).encode("cp1252"))
    code, _, err = invoke(workspace, str(path))
    assert code == 2
    assert "--encoding cp1252" in err
    assert "not UTF-8 text (byte 0xeb on line 2)" in err
    assert workspace.outbox_files() == []


def test_cp1252_export_sends_with_the_option(workspace: Workspace) -> None:
    """The same cp1252 file sends with --encoding cp1252, and the names arrive intact."""
    path = workspace.root / "export.csv"
    path.write_bytes(csv_text(excel_cases(workspace)).encode("cp1252"))
    code, out, _ = invoke(workspace, str(path), "--encoding", "cp1252")
    assert code == 0, out
    assert len(workspace.outbox_files()) == 4


def test_utf8_with_byte_order_mark_reads_by_default(workspace: Workspace) -> None:
    """A 'CSV UTF-8' export (with a byte-order mark) sends without any option."""
    path = workspace.root / "export.csv"
    path.write_bytes(csv_text(excel_cases(workspace)).encode("utf-8-sig"))
    code, out, _ = invoke(workspace, str(path))
    assert code == 0, out
    assert len(workspace.outbox_files()) == 4


def test_unknown_encoding_is_a_usage_error(workspace: Workspace) -> None:
    """An encoding name Python does not know is refused with exit 2 before anything."""
    path = write_jsonl(workspace, make_cases(workspace, 1))
    code, _, err = invoke(workspace, str(path), "--encoding", "klingon")
    assert code == 2
    assert "unknown text encoding 'klingon'" in err


def test_rerun_does_not_log_an_unchanged_refusal_again(workspace: Workspace) -> None:
    """A refused case run twice unchanged is logged once, and reported refused both times."""
    cases = make_cases(workspace, 2)
    cases[1]["referral_form"] = cases[0]["referral_form"]  # another case's form
    batch = write_jsonl(workspace, cases)
    first = invoke(workspace, str(batch))
    rejected = [e for e in workspace.events() if e.kind is EventKind.REJECTED]
    second = invoke(workspace, str(batch))
    assert first[0] == second[0] == 1
    assert "refused (wrong_case): 2" in first[1] and "refused (wrong_case): 2" in second[1]
    again = [e for e in workspace.events() if e.kind is EventKind.REJECTED]
    assert len(rejected) == 2 and len(again) == 2


def test_changed_refusal_is_logged_again(workspace: Workspace) -> None:
    """A refusal whose reason changed since the last one is a new refusal in the log."""
    cases = make_cases(workspace, 1)
    cases[0]["partners"] = ["police", "mi6"]
    batch = write_jsonl(workspace, cases)
    invoke(workspace, str(batch), "--skip-invalid")
    cases[0]["partners"] = ["police", "mi5"]
    batch = write_jsonl(workspace, cases)
    invoke(workspace, str(batch), "--skip-invalid")
    rejected = [e for e in workspace.events() if e.kind is EventKind.REJECTED]
    assert len(rejected) == 2


def test_unconfirmed_from_an_earlier_run_is_not_counted_already_sent(
    workspace: Workspace,
) -> None:
    """A rerun counts a request left unconfirmed as unconfirmed (exit 1), never as sent."""
    from mash_requests.claims import REQUEST_FIELDS
    from mash_requests.dispatch import Dispatcher

    batch = write_jsonl(workspace, make_cases(workspace, 2))
    assert invoke(workspace, str(batch))[0] == 0
    settings = load_settings(workspace.config)
    sent = [e for e in workspace.events() if e.kind is EventKind.SENT]
    with Dispatcher(settings) as writer:  # as if a gateway had lost its answer for one
        fields = {f: getattr(sent[0], f) for f in REQUEST_FIELDS}
        from mash_requests.audit.events import Event

        writer.store.append(Event(kind=EventKind.UNCONFIRMED, reason="lost", **fields))
    code, out, err = invoke(workspace, str(batch))
    assert code == 1
    assert "3 already sent" in out and "1 unconfirmed" in out
    assert "1 request(s) unconfirmed" in err and sent[0].request_ref in err


def test_batch_of_cases_in_memory(workspace: Workspace) -> None:
    """send_batch takes mappings (relative forms against base_dir) and paths, validated
    like file rows, without writing a batch file."""
    cases = make_cases(workspace, 2)
    path = workspace.write_case(cases[1] | {"referral_form": f"../{cases[1]['referral_form']}"})
    result = send_batch(load_settings(workspace.config), [cases[0], path], base_dir=workspace.root)
    assert result.counts["sent"] == 4 and result.all_sent
    bad = dict(cases[0], rag="purple")
    result = send_batch(load_settings(workspace.config), [bad], skip_invalid=True)
    assert [p.message for p in result.problems] == [
        "case 1: case file (mapping): field rag: expected one of red, amber, green, got a text "
        "of 6 characters"
    ]


def test_summary_lists_every_category(workspace: Workspace) -> None:
    """The summary names each category, zero or not, so a reader sees what did not happen."""
    code, out, _ = invoke(workspace, str(write_jsonl(workspace, make_cases(workspace, 1))))
    assert code == 0
    assert out.startswith(
        "Summary: 2 sent, 0 already sent, 0 in flight in another run, 0 unconfirmed, "
        "0 failed, 0 refused; 0 bad row(s)."
    )
