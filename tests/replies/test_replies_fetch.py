"""``replies fetch`` end to end: real sends to the outbox, replies in a folder, the real log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from replies_helpers import drop, example_reply, reply, run_cli, send_example

from mash_requests.audit.events import REPLY_KINDS, EventKind
from mash_requests.config import load_settings
from mash_requests.replies import fetch_replies
from workspace import Workspace


def _reply_events(workspace: Workspace) -> list:  # type: ignore[type-arg]
    return [e for e in workspace.events() if e.kind in REPLY_KINDS]


def test_a_partners_reply_is_recorded_against_its_request(
    workspace: Workspace, replies_folder: Path, log_backend: str
) -> None:
    """A threaded reply from the partner becomes one replied event with the request's fields."""
    sent = send_example(workspace)
    drop(replies_folder, reply(sent["police"], attachments=[("notes.pdf", b"%PDF-1.4 notes")]))
    code, out, _ = run_cli("replies", "fetch", "--config", str(workspace.config))
    assert code == 0, out
    [event] = _reply_events(workspace)
    assert event.kind is EventKind.REPLIED
    assert (event.request_ref, event.partner, event.case_ref) == (
        sent["police"].request_ref,
        "police",
        "MASH-2026-0412",
    )
    assert event.message_id == sent["police"].message_id
    assert event.request_key is None  # never the column: the dispatcher reads it as send state
    assert event.details["request_key"]
    assert event.details["from_address"] == "officer@testshire.police.uk"
    assert event.details["attachments"] == 1
    assert len(str(event.details["attachments_sha256"])) == 64
    assert event.details["matched_by"] == "in_reply_to"
    assert event.details["channel"] == "email"


def test_nothing_of_the_subject_or_body_reaches_the_log_or_the_screen(
    workspace: Workspace, replies_folder: Path
) -> None:
    """Data minimisation: the reply's subject and body are in neither the log nor the output."""
    sent = send_example(workspace)
    drop(
        replies_folder,
        reply(sent["police"], subject="RE: Leo Hartley bruising", body="Secret-body-words"),
    )
    drop(
        replies_folder,
        reply(None, subject="Private: Leo Hartley", body="Other-body", sender="x@gmail.com"),
    )
    code, out, err = run_cli("replies", "fetch", "--config", str(workspace.config))
    assert code == 1  # the second one is unmatched
    log_text = repr([e.to_record() for e in workspace.events()])
    for secret in ("Leo Hartley", "bruising", "Secret-body-words", "Other-body"):
        assert secret not in log_text
        assert secret not in out + err


def test_a_second_fetch_counts_nothing_twice(workspace: Workspace, replies_folder: Path) -> None:
    """Each message is recorded once by its Message-ID; a rerun says "already seen"."""
    sent = send_example(workspace)
    drop(replies_folder, reply(sent["police"]))
    drop(replies_folder, reply(sent["health"], sender="safeguarding@nhs.net"))
    assert run_cli("replies", "fetch", "--config", str(workspace.config))[0] == 0
    code, out, _ = run_cli("replies", "fetch", "--config", str(workspace.config))
    assert code == 0
    assert "0 new message(s)" in out and "2 already seen" in out
    assert len(_reply_events(workspace)) == 2


def test_the_same_message_in_two_files_is_counted_once(
    workspace: Workspace, replies_folder: Path
) -> None:
    """A message saved twice (two rules, a copy) is one message."""
    sent = send_example(workspace)
    data = reply(sent["police"])
    drop(replies_folder, data, "a.eml")
    drop(replies_folder, data, "b.eml")
    result = fetch_replies(load_settings(workspace.config))
    assert (len(result.messages), result.already_seen) == (1, 1)


def test_files_are_left_where_they_are(workspace: Workspace, replies_folder: Path) -> None:
    """The folder source never moves, renames or changes a file."""
    sent = send_example(workspace)
    path = drop(replies_folder, reply(sent["police"]))
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    run_cli("replies", "fetch", "--config", str(workspace.config))
    assert sorted(replies_folder.iterdir()) == [path]
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_dry_run_records_nothing(workspace: Workspace, replies_folder: Path) -> None:
    """--dry-run reads and matches, prints what it would record, and writes no event."""
    sent = send_example(workspace)
    drop(replies_folder, reply(sent["police"]))
    code, out, _ = run_cli("replies", "fetch", "--dry-run", "--config", str(workspace.config))
    assert code == 0 and "would record" in out and sent["police"].request_ref in out
    assert _reply_events(workspace) == []


def test_a_bounce_and_an_unmatched_message_need_a_person(
    workspace: Workspace, replies_folder: Path
) -> None:
    """Exit 1 and a line each: the bounced request, and the unmatched sender's domain."""
    sent = send_example(workspace)
    ndr = example_reply("06-probation-exchange-ndr.eml").decode()
    ndr = ndr.replace(
        "<MASH-2026-0412-PROBATION-65139.0f7a6b5c4d3e2f18@eastbury.gov.uk>",
        sent["health"].message_id,
    )
    ndr = ndr.replace("MASH-2026-0412-PROBATION-65139", sent["health"].request_ref)
    drop(replies_folder, ndr.encode())
    drop(replies_folder, reply(sent["police"], sender="someone@gmail.com"))
    code, out, _ = run_cli("replies", "fetch", "--config", str(workspace.config))
    assert code == 1
    assert f"BOUNCED   {sent['health'].request_ref}" in out and "5.1.1" in out
    assert "UNMATCHED from gmail.com" in out
    kinds = sorted(e.kind for e in _reply_events(workspace))
    assert kinds == [EventKind.BOUNCED, EventKind.UNMATCHED]
    [unmatched] = [e for e in _reply_events(workspace) if e.kind is EventKind.UNMATCHED]
    assert unmatched.request_ref is None and unmatched.case_ref == "(unmatched)"
    assert unmatched.reason == "sender_not_partner"
    assert unmatched.details["claimed_request_ref"] == sent["police"].request_ref


def test_an_automatic_reply_is_recorded_but_is_not_an_answer(
    workspace: Workspace, replies_folder: Path
) -> None:
    """An out-of-office is an auto_reply event; the request stays unanswered (listed soon due)."""
    sent = send_example(workspace, rag="red")
    drop(replies_folder, reply(sent["police"], headers={"Auto-Submitted": "auto-replied"}))
    assert run_cli("replies", "fetch", "--config", str(workspace.config))[0] == 0
    assert [e.kind for e in _reply_events(workspace)] == [EventKind.AUTO_REPLY]
    _, out, _ = run_cli(
        "overdue", "--within", "5", "--format", "jsonl", "--config", str(workspace.config)
    )
    assert sent["police"].request_ref in out


def test_a_reply_does_not_change_the_requests_send_outcome(
    workspace: Workspace, replies_folder: Path
) -> None:
    """audit query still shows the request sent (one row) after its reply is recorded."""
    sent = send_example(workspace)
    drop(replies_folder, reply(sent["police"]))
    run_cli("replies", "fetch", "--config", str(workspace.config))
    code, out, _ = run_cli(
        "audit", "query", "--request-ref", sent["police"].request_ref, "--format", "jsonl",
        "--config", str(workspace.config),
    )  # fmt: skip
    assert code == 0
    rows = out.strip().splitlines()
    assert len(rows) == 1 and '"outcome": "sent"' in rows[0]


def test_a_replied_request_can_still_be_refused_as_a_duplicate(
    workspace: Workspace, replies_folder: Path
) -> None:
    """Recording a reply never makes the request look unsent: sending again needs --resend."""
    sent = send_example(workspace)
    drop(replies_folder, reply(sent["police"]))
    run_cli("replies", "fetch", "--config", str(workspace.config))
    case = workspace.cases / "MASH-2026-0412.json"
    code, _, err = run_cli("send-request", "--config", str(workspace.config), "--case", str(case))
    assert code == 2 and "already sent" in err


def test_without_a_replies_table_the_config_error_says_what_to_add(workspace: Workspace) -> None:
    """No [replies]: exit 2 and a line naming the table and an example."""
    code, _, err = run_cli("replies", "fetch", "--config", str(workspace.config))
    assert code == 2
    assert "has no [replies] table" in err and 'source = "folder"' in err


def test_a_missing_folder_is_a_configuration_error(
    workspace: Workspace, replies_folder: Path
) -> None:
    """The folder named in [replies] must exist: exit 2 naming it."""
    send_example(workspace)  # a log to match replies against (without one, that is said)
    replies_folder.rmdir()
    code, _, err = run_cli("replies", "fetch", "--config", str(workspace.config))
    assert code == 2 and str(replies_folder) in err


def test_concurrent_fetches_record_each_message_once(
    workspace: Workspace, replies_folder: Path, log_backend: str
) -> None:
    """Three fetches of the same 150 messages at once: 150 events, each Message-ID once."""
    sent = send_example(workspace)
    for i in range(150):
        target = sent["police"] if i % 2 else sent["health"]
        sender = "officer@testshire.police.uk" if i % 2 else "safeguarding@nhs.net"
        drop(replies_folder, reply(target, sender=sender, message_id=f"<r{i}@partner.example>"))
    command = [
        sys.executable,
        "-m",
        "mash_requests",
        "replies",
        "fetch",
        "--config",
        str(workspace.config),
    ]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    ids = [e.details["reply_message_id"] for e in _reply_events(workspace)]
    assert len(ids) == 150 and len(set(ids)) == 150
    recorded = sum(int(out.split(b": ", 1)[1].split(b" new")[0]) for out, _ in outputs)
    assert recorded == 150  # every run's summary says only what it recorded itself


@pytest.mark.parametrize("name", ["03-health-reply-secure-gateway.eml"])
def test_a_shipped_example_matches_by_subject_when_headers_were_stripped(
    workspace: Workspace, replies_folder: Path, name: str
) -> None:
    """The shipped secure-gateway reply (no In-Reply-To) matches the health request by subject."""
    sent = send_example(workspace)
    data = (
        example_reply(name)
        .decode()
        .replace("MASH-2026-0412-HEALTH-88FB6", sent["health"].request_ref)
    )
    drop(
        replies_folder,
        data.replace("eastbury.safeguarding@nhs.net", "safeguarding@nhs.net").encode(),
    )
    result = fetch_replies(load_settings(workspace.config))
    [message] = result.messages
    assert (message.kind, message.request_ref, message.matched_by) == (
        EventKind.REPLIED,
        sent["health"].request_ref,
        "subject",
    )
