"""``replies fetch --json`` and ``replies record --json``: one document, errors included."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from replies_helpers import drop, reply, run_cli, send_example

from workspace import Workspace


def run_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = run_cli(*args, "--json")
    document = json.loads(out)  # the whole of stdout is one document
    assert document["exit_code"] == code and document["ok"] is (code == 0)
    return code, document


def test_fetch_json_gives_counts_and_each_message(
    workspace: Workspace, replies_folder: Path
) -> None:
    """A partner's reply: counted as replied, listed with its request; never subject or body."""
    sent = send_example(workspace)
    drop(replies_folder, reply(sent["police"], subject="RE: Leo Hartley", body="Body-words"))
    code, document = run_json("replies", "fetch", "--config", str(workspace.config))
    assert code == 0 and document["command"] == "replies fetch" and document["error"] is None
    assert document["counts"] == {
        "replied": 1, "auto_reply": 0, "read_receipt": 0, "bounced": 0, "unmatched": 0,
    }  # fmt: skip
    assert document["needs_attention"] == 0 and document["source"] == "folder"
    [message] = document["messages"]
    assert message["kind"] == "replied" and message["request_ref"] == sent["police"].request_ref
    assert message["partner"] == "police" and message["matched_by"] == "in_reply_to"
    assert message["from_address"] == "officer@testshire.police.uk"
    assert datetime.fromisoformat(message["received_at"]).utcoffset() is not None
    text = json.dumps(document)
    assert "Leo Hartley" not in text and "Body-words" not in text


def test_fetch_json_unmatched_gives_the_domain_only_and_exits_1(
    workspace: Workspace, replies_folder: Path
) -> None:
    """An unmatched message needs a person (exit 1); only its sender's domain is given."""
    sent = send_example(workspace)
    drop(replies_folder, reply(sent["police"], sender="someone@gmail.com"))
    code, document = run_json("replies", "fetch", "--config", str(workspace.config))
    assert code == 1 and document["error"] is None and document["needs_attention"] == 1
    [message] = document["messages"]
    assert message["kind"] == "unmatched" and message["reason"] == "sender_not_partner"
    assert message["from_address"] is None and message["sender_domain"] == "gmail.com"
    assert "someone@" not in json.dumps(document)


def test_fetch_json_without_replies_config_is_an_error_document(workspace: Workspace) -> None:
    """No [replies] table: exit 2 and the error as fields."""
    code, document = run_json("replies", "fetch", "--config", str(workspace.config))
    assert code == 2 and document["error"]["reason"] == "config"
    assert "[replies]" in document["error"]["message"]


def test_record_json_gives_what_was_recorded(workspace: Workspace) -> None:
    """record --json: the request, channel, time with its offset, operator; recorded true."""
    sent = send_example(workspace)
    when = datetime.now(ZoneInfo("Europe/London")).strftime("%Y-%m-%d %H:%M")
    args = ("replies", "record", sent["police"].request_ref, "--received", when)
    code, document = run_json(*args, "--channel", "phone", "--config", str(workspace.config))
    assert code == 0 and document["recorded"] is True
    assert document["request_ref"] == sent["police"].request_ref
    assert document["case_ref"] == "MASH-2026-0412" and document["partner"] == "police"
    assert document["channel"] == "phone" and document["operator"] == "tester"
    assert document["received_at"].startswith(when.replace(" ", "T"))
    code, again = run_json(*args, "--channel", "phone", "--config", str(workspace.config))
    assert code == 0 and again["recorded"] is False


def test_record_json_unknown_reference_is_an_error_document(workspace: Workspace) -> None:
    """An unknown reference: exit 2, the error's reason as a field, nothing recorded."""
    send_example(workspace)
    code, document = run_json(
        "replies", "record", "MASH-2026-0412-POLICE-00000", "--received", "2026-01-01 10:00",
        "--channel", "phone", "--config", str(workspace.config),
    )  # fmt: skip
    assert code == 2 and document["recorded"] is False
    error = document["error"]
    assert error["type"] == "InputError" and error["reason"] == "invalid_input"
    assert "MASH-2026-0412-POLICE-00000" in error["message"]


def test_readme_examples_have_the_keys_real_runs_have(
    workspace: Workspace, replies_folder: Path
) -> None:
    """The README's replies fetch and record examples have exactly a real run's keys."""
    from test_json_output import readme_example

    sent = send_example(workspace)
    drop(replies_folder, reply(sent["police"]))
    _, fetched = run_json("replies", "fetch", "--config", str(workspace.config))
    shown = readme_example("replies fetch")
    assert list(shown) == list(fetched)
    assert list(shown["messages"][0]) == list(fetched["messages"][0])
    assert list(shown["counts"]) == list(fetched["counts"])
    when = datetime.now(ZoneInfo("Europe/London")).strftime("%Y-%m-%d %H:%M")
    _, recorded = run_json(
        "replies", "record", sent["health"].request_ref, "--received", when,
        "--channel", "phone", "--config", str(workspace.config),
    )  # fmt: skip
    assert list(readme_example("replies record")) == list(recorded)


def test_overdue_json_is_one_document_of_the_jsonl_objects(workspace: Workspace) -> None:
    """overdue --json: the --format jsonl objects in "requests", with counts by state."""
    sent = send_example(workspace, rag="red")
    config = ("--config", str(workspace.config))
    code, document = run_json("overdue", "--within", "5", *config)
    assert code == 0 and document["command"] == "overdue" and document["error"] is None
    assert document["within_hours"] == 5
    assert document["counts"] == {"bounced": 0, "overdue": 0, "due_soon": 2}
    _, lines, _ = run_cli("overdue", "--within", "5", "--format", "jsonl", *config)
    objects = [json.loads(line) for line in lines.splitlines()]
    assert [list(r) for r in document["requests"]] == [list(o) for o in objects]
    refs = {r["request_ref"] for r in document["requests"]}
    assert refs == {sent["police"].request_ref, sent["health"].request_ref}


def test_overdue_json_with_another_format_is_a_usage_error(workspace: Workspace) -> None:
    """--json and --format csv together: exit 2, reason usage, one document."""
    code, document = run_json("overdue", "--format", "csv", "--config", str(workspace.config))
    assert code == 2 and document["error"]["reason"] == "usage"


def test_readme_overdue_example_has_the_keys_of_a_real_run(workspace: Workspace) -> None:
    """The README's overdue --json example has exactly a real run's keys."""
    from test_json_output import readme_example

    send_example(workspace, rag="red")
    _, document = run_json("overdue", "--within", "5", "--config", str(workspace.config))
    shown = readme_example("overdue", ok=False)
    assert list(shown) == list(document)
    assert list(shown["requests"][0]) == list(document["requests"][0])


def test_a_reply_quoting_a_resends_subject_matches_the_resend(
    workspace: Workspace, replies_folder: Path
) -> None:
    """A resend's subject carries one reference, its own: a reply that only quotes the
    subject (no In-Reply-To) is matched to the resend, not left ambiguous."""
    from email.parser import BytesHeaderParser
    from email.policy import compat32

    from replies_helpers import Sent

    first = send_example(workspace)
    case = workspace.cases / "MASH-2026-0412.json"
    code, _, _ = run_cli(
        "send-request", "--config", str(workspace.config), "--case", str(case),
        "--partner", "police", "--resend", "--reason", "bounced",
    )  # fmt: skip
    assert code == 0
    headers = [
        BytesHeaderParser(policy=compat32).parsebytes(path.read_bytes())
        for path in workspace.outbox_files()
    ]
    [resent] = [
        Sent("police", str(h["X-MASH-Request-Ref"]), str(h["Message-ID"]), str(h["Subject"]))
        for h in headers
        if str(h["X-MASH-Request-Ref"]).startswith("MASH-2026-0412-POLICE-")
        and str(h["X-MASH-Request-Ref"]) != first["police"].request_ref
    ]
    assert resent.subject.startswith("OFFICIAL-SENSITIVE: [RESEND] ")
    assert first["police"].request_ref not in resent.subject
    drop(replies_folder, reply(resent, threaded=False))
    code, document = run_json("replies", "fetch", "--config", str(workspace.config))
    [message] = document["messages"]
    assert message["kind"] == "replied" and message["matched_by"] == "subject"
    assert message["request_ref"] == resent.request_ref
