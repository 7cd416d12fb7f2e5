"""send-request end to end: case file -> outbox .eml files -> dispatch log."""

from __future__ import annotations

import email
import hashlib
import json
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mash_requests.audit.events import EventKind
from mash_requests.cli import main
from mash_requests.cli.send import send_request
from workspace import Workspace


def run(workspace: Workspace, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["send-request", "--config", str(workspace.config), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def parse(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_sends_one_message_per_partner_with_the_form(workspace: Workspace) -> None:
    """Each partner gets one .eml carrying the exact form bytes, marking first in the subject."""
    case = workspace.write_case(workspace.example_case())
    code, out, _ = run(workspace, "--case", str(case))
    assert code == 0, out
    files = workspace.outbox_files()
    assert len(files) == 2
    form_sha = hashlib.sha256((workspace.forms / "MASH-2026-0412.pdf").read_bytes()).hexdigest()
    recipients = set()
    for path in files:
        message = parse(path)
        assert message["Subject"].startswith("OFFICIAL-SENSITIVE: ")
        assert "MASH-2026-0412" in message["Subject"]
        assert message.get_content_type() == "multipart/mixed"
        (attachment,) = list(message.iter_attachments())
        assert attachment.get_content_type() == "application/pdf"
        assert "MASH-2026-0412" in attachment.get_filename()
        assert hashlib.sha256(attachment.get_content()).hexdigest() == form_sha
        recipients.add(message["To"])
    assert recipients == {
        "mash@testshire.police.uk",
        "safeguarding@nhs.net, second.mailbox@nhs.net",
    }
    assert "2 of 2 request(s) sent" in out


def test_log_holds_prepared_then_sent_for_each_request(workspace: Workspace) -> None:
    """The dispatch log has a prepared and a sent event per request, with the form fingerprint."""
    case = workspace.write_case(workspace.example_case())
    run(workspace, "--case", str(case))
    events = workspace.events()
    assert [e.kind for e in events].count(EventKind.SENT) == 2
    assert [e.kind for e in events].count(EventKind.PREPARED) == 2
    sent = [e for e in events if e.kind is EventKind.SENT]
    form_sha = hashlib.sha256((workspace.forms / "MASH-2026-0412.pdf").read_bytes()).hexdigest()
    assert {e.form_sha256 for e in sent} == {form_sha}
    assert {e.partner for e in sent} == {"police", "health"}
    assert all(e.message_id and e.gateway == "outbox" and e.operator == "tester" for e in sent)


def test_log_holds_no_body_or_child_details(workspace: Workspace) -> None:
    """Nothing of the child's details or the concerns reaches the dispatch log file."""
    data = workspace.example_case()
    case = workspace.write_case(data)
    run(workspace, "--case", str(case))
    raw = workspace.log_path.read_bytes()
    for secret in (data["child"]["name"], data["child"]["address"], data["concerns"][:30]):
        assert secret.encode() not in raw


def test_dry_run_sends_nothing(workspace: Workspace) -> None:
    """--dry-run checks and renders every request, writes nothing and says so; the refs it
    shows are never a real request's, and it says that too (no one should quote them)."""
    case = workspace.write_case(workspace.example_case())
    code, out, _ = run(workspace, "--case", str(case), "--dry-run")
    assert code == 0
    assert "nothing was sent" in out
    assert "request refs above are not kept" in out
    assert workspace.outbox_files() == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("rag"), "field rag: is missing"),
        (lambda d: d.update(rag="purple"), "field rag: expected one of red, amber, green"),
        (lambda d: d["child"].update(date_of_birth="2015-02-31"), "field child.date_of_birth"),
        (lambda d: d.update(partners="police"), "field partners: expected a list"),
        (lambda d: d["worker"].update(email="not-an-address"), "field worker.email"),
        (lambda d: d["consent"].update(givenby="Mother"), "field consent.givenby: unknown"),
    ],
)
def test_bad_case_file_is_refused_and_logged(workspace: Workspace, mutate, expected) -> None:  # type: ignore[no-untyped-def]
    """A bad case file gives one clear error naming the field, exit 2, nothing sent, logged."""
    data = workspace.example_case()
    mutate(data)
    case = workspace.write_case(data)
    code, _, err = run(workspace, "--case", str(case))
    assert code == 2
    assert err.startswith("Error: case file ")
    assert expected in err
    assert "Traceback" not in err
    assert workspace.outbox_files() == []
    rejected = [e for e in workspace.events() if e.kind is EventKind.REJECTED]
    assert rejected and rejected[0].reason == "invalid_case"


def test_case_file_that_is_not_json_is_refused(workspace: Workspace) -> None:
    """A case file that is not JSON names the line and column."""
    case = workspace.write_case("{ not json")
    code, _, err = run(workspace, "--case", str(case))
    assert code == 2
    assert "not valid JSON at line 1" in err


def test_unknown_partner_is_refused(workspace: Workspace) -> None:
    """A partner key outside the directory is refused, listing the known keys; nothing sent."""
    case = workspace.write_case(workspace.example_case())
    code, _, err = run(workspace, "--case", str(case), "--partner", "police", "--partner", "mi6")
    assert code == 2
    assert "unknown partner 'mi6'" in err
    assert "education, health, police" in err
    assert workspace.outbox_files() == []
    assert {e.kind for e in workspace.events()} == {EventKind.REJECTED}


def test_missing_form_is_refused(workspace: Workspace) -> None:
    """A referral form that does not exist stops the case with exit 2 and a rejected event."""
    data = workspace.example_case()
    data["referral_form"] = "../forms/nope.pdf"
    code, _, err = run(workspace, "--case", str(workspace.write_case(data)))
    assert code == 2
    assert "nope.pdf" in err
    assert workspace.outbox_files() == []
    assert [e.kind for e in workspace.events()] == [EventKind.REJECTED, EventKind.REJECTED]


def test_corrupt_form_is_refused_with_its_reason(workspace: Workspace) -> None:
    """A corrupt PDF is refused; the rejected event carries the reason code and fingerprint."""
    bad = workspace.forms / "MASH-2026-0412.pdf"
    bad.write_bytes(bad.read_bytes()[:1024])
    code, _, err = run(workspace, "--case", str(workspace.write_case(workspace.example_case())))
    assert code == 2
    assert "refused" in err
    assert workspace.outbox_files() == []
    events = workspace.events()
    assert {e.kind for e in events} == {EventKind.REJECTED}
    assert events[0].reason in {"unreadable", "not_pdf", "case_ref_missing"}
    assert events[0].form_sha256 == hashlib.sha256(bad.read_bytes()).hexdigest()


def test_another_cases_form_is_refused(workspace: Workspace) -> None:
    """Attaching another child's form is refused before anything is sent."""
    data = workspace.example_case()
    data["referral_form"] = "../forms/MASH-2026-0413.pdf"
    code, _, err = run(workspace, "--case", str(workspace.write_case(data)))
    assert code == 2
    assert "wrong_case" in err or "case_ref_missing" in err
    assert workspace.outbox_files() == []


def test_second_send_of_the_same_request_is_refused(workspace: Workspace) -> None:
    """Sending the same case to the same partner with the same form twice needs --resend."""
    case = workspace.write_case(workspace.example_case())
    assert run(workspace, "--case", str(case))[0] == 0
    code, _, err = run(workspace, "--case", str(case), "--partner", "police")
    assert code == 2
    assert "already sent" in err and "--resend" in err
    assert len(workspace.outbox_files()) == 2


def test_resend_with_reason_is_sent_and_the_reason_logged(workspace: Workspace) -> None:
    """--resend --reason sends again and records the reason."""
    case = workspace.write_case(workspace.example_case())
    run(workspace, "--case", str(case))
    code, _, _ = run(
        workspace, "--case", str(case), "--partner", "police", "--resend", "--reason", "bounced"
    )
    assert code == 0
    assert len(workspace.outbox_files()) == 3
    prepared = [e for e in workspace.events() if e.kind is EventKind.PREPARED]
    assert prepared[-1].details["resend_reason"] == "bounced"


def _stored_events(workspace: Workspace) -> list[Any]:
    from mash_requests.audit import open_store
    from mash_requests.config import load_settings

    store = open_store(load_settings(workspace.config).log)
    try:
        return list(store.events())
    finally:
        store.close()


def _message_for(workspace: Workspace, request_ref: str) -> EmailMessage:
    [message] = [
        m for m in map(parse, workspace.outbox_files()) if m["X-MASH-Request-Ref"] == request_ref
    ]
    return message


def test_resend_says_which_request_it_replaces_and_when_it_was_sent(
    workspace: Workspace,
) -> None:
    """A resend's subject has [RESEND] after the marking; its body names the earlier request."""
    from mash_requests.config import load_settings
    from mash_requests.rendering import format_due

    case = workspace.write_case(workspace.example_case())
    run(workspace, "--case", str(case))
    code, _, _ = run(
        workspace, "--case", str(case), "--partner", "police", "--resend", "--reason", "bounced"
    )
    assert code == 0
    sent = [s for s in _stored_events(workspace) if s.event.kind is EventKind.SENT]
    [first] = [s for s in sent[:2] if s.event.partner == "police"]
    earlier_ref = first.event.request_ref
    resend_ref = sent[-1].event.request_ref
    assert resend_ref != earlier_ref
    timezone = load_settings(workspace.config).timescales.timezone
    sentence = (
        f"This replaces request {earlier_ref} sent on "
        f"{format_due(first.recorded_at.astimezone(timezone))}."
    )
    resend = _message_for(workspace, resend_ref)
    assert resend["Subject"].startswith("OFFICIAL-SENSITIVE: [RESEND] ")
    for subtype in ("plain", "html"):
        part = resend.get_body((subtype,))
        assert part is not None
        assert sentence in " ".join(part.get_content().split())
    original = _message_for(workspace, earlier_ref)
    assert "[RESEND]" not in original["Subject"]
    plain = original.get_body(("plain",))
    assert plain is not None and "replaces" not in plain.get_content()


def test_resend_without_reason_is_a_usage_error(workspace: Workspace) -> None:
    """--resend alone is refused before anything happens."""
    case = workspace.write_case(workspace.example_case())
    code, _, err = run(workspace, "--case", str(case), "--resend")
    assert code == 2
    assert "--resend and --reason" in err


def test_all_partners_asks_every_partner(workspace: Workspace) -> None:
    """--all-partners sends to every partner in the directory."""
    case = workspace.write_case(workspace.example_case())
    code, _, _ = run(workspace, "--case", str(case), "--all-partners")
    assert code == 0
    assert len(workspace.outbox_files()) == 3


def test_bad_config_is_exit_2(workspace: Workspace) -> None:
    """A config naming a disallowed address is refused at load with exit 2."""
    workspace.config.write_text(
        workspace.config.read_text().replace("mash@testshire.police.uk", "mash@gmail.com")
    )
    case = workspace.write_case(workspace.example_case())
    code, _, err = run(workspace, "--case", str(case))
    assert code == 2
    assert "mash@gmail.com" in err and "allow-list" in err
    assert workspace.outbox_files() == []


def test_send_request_shortcut_has_teaching_help() -> None:
    """send-request --help shows examples and the exit codes."""
    result = CliRunner().invoke(send_request, ["--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout and "Exit codes" in result.stdout


def test_main_help_lists_commands() -> None:
    """mash-requests --help lists every command."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("send-request", "reconcile", "form", "audit", "gateway"):
        assert command in result.stdout


def test_control_characters_in_a_bad_field_do_not_break_the_log(workspace: Workspace) -> None:
    """A bad value with a NUL or lone surrogate is refused and logged, not a log error."""
    data = workspace.example_case()
    data["child"]["date_of_birth"] = "2015\u0000-02-\udc8031"
    code, _, err = run(workspace, "--case", str(workspace.write_case(json.dumps(data))))
    assert code == 2
    assert "field child.date_of_birth" in err
    assert [e.reason for e in workspace.events()] == ["invalid_case"]


def test_bad_date_of_birth_is_not_repeated_in_the_error_or_log(workspace: Workspace) -> None:
    """A mistyped date of birth is refused without echoing it to the terminal or the log."""
    data = workspace.example_case()
    data["child"]["date_of_birth"] = "23/11/2012"
    code, _, err = run(workspace, "--case", str(workspace.write_case(data)))
    assert code == 2
    assert "child.date_of_birth" in err
    assert "23/11/2012" not in err
    assert b"23/11/2012" not in workspace.log_path.read_bytes()


# --------------------------------------------------------------------------------------------
# A refusal never repeats what the case file holds

#: A child's name and address, put where they do not belong (a shifted export, a slip).
NAME = "Amira Novak"
ADDRESS = "27 Kestrel Court Eastbury EB1 4LN"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["consent"].update(status=ADDRESS),
            "field consent.status: expected one of given, not_given, not_sought, got a text "
            "of 33 characters",
        ),
        (
            lambda d: d.update(contact_id=NAME),
            "field contact_id: expected a reference of letters, digits and - _ / . (at most 64 "
            "characters), got a text of 11 characters (it contains a space or a line break)",
        ),
        (lambda d: d.update(case_ref=NAME), "field case_ref: expected a reference"),
        (lambda d: d.update(rag=NAME), "field rag: expected one of red, amber, green, got a text"),
        (
            lambda d: d["child"].update(date_of_birth=ADDRESS),
            "field child.date_of_birth: expected a real date as YYYY-MM-DD, got a text of 33 "
            "characters",
        ),
        (
            lambda d: d["worker"].update(email=NAME),
            "field worker.email: expected an email address, got a text of 11 characters with "
            "a space",
        ),
        (
            lambda d: d.update(partners=["police", NAME]),
            "field partners: expected partner keys, short lower-case words such as police; "
            "entry 2 is a text of 11 characters",
        ),
        (lambda d: d["worker"].update(name=[NAME]), "field worker.name: expected text, got a list"),
        (lambda d: d.update({NAME: 1}), "field (a text of 11 characters): unknown field"),
        (lambda d: d["child"].update({ADDRESS: 1}), "field child.(a text of 33 characters)"),
    ],
)
def test_refusal_never_repeats_the_value_it_refuses(workspace: Workspace, mutate, expected) -> None:  # type: ignore[no-untyped-def]
    """A field's error names the field, what was expected and what kind of value was found,
    never the value: not on stderr, not in --json, not in the log's rejected event."""
    data = workspace.example_case()
    mutate(data)
    case = str(workspace.write_case(data))
    code, _, err = run(workspace, "--case", case)
    assert code == 2
    assert expected in err
    code, out, _ = run(workspace, "--case", case, "--json")
    assert code == 2
    assert expected in json.loads(out)["error"]["message"]
    assert [e.kind for e in workspace.events()][:1] == [EventKind.REJECTED]
    log = workspace.log_path.read_bytes()
    for text in (err, out):
        assert "Kestrel" not in text and "Novak" not in text
    assert b"Kestrel" not in log and b"Novak" not in log


def test_case_nested_too_deeply_is_refused_and_logged(workspace: Workspace) -> None:
    """A case file nested deeper than the JSON parser goes is a bad case (exit 2, logged),
    as in a batch; not a traceback, and --json still prints its document."""
    case = str(workspace.write_case("[" * 100_000 + "]" * 100_000))
    code, _, err = run(workspace, "--case", case)
    assert code == 2
    assert err == f"Error: case file {case}: nested too deeply to be a case\n"
    code, out, _ = run(workspace, "--case", case, "--json")
    assert code == 2
    assert json.loads(out)["error"]["reason"] == "invalid_case"
    assert [e.reason for e in workspace.events()] == ["invalid_case", "invalid_case"]


def fifo(path: Path) -> Path:
    """A named pipe at ``path``; whatever opens it for reading anyway is let go within a
    couple of seconds (a writer opens it and closes at once), so a test fails, not hangs."""
    import contextlib
    import os
    import threading
    import time

    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    os.mkfifo(path)

    def unblock() -> None:
        for _ in range(60):
            time.sleep(2)
            # OSError: no reader waiting (or the pipe is gone), nothing to let go.
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=unblock, daemon=True).start()
    return path


def test_case_that_is_a_named_pipe_is_refused_unopened(workspace: Workspace) -> None:
    """A named pipe given as the case is refused at once (opening it would wait forever for
    a writer): exit 2, the refusal logged."""
    case = fifo(workspace.cases / "case.json")
    code, _, err = run(workspace, "--case", str(case))
    assert code == 2
    assert err == (
        f"Error: case file {case}: is a named pipe (FIFO), not a regular file; give a case "
        "file (JSON)\n"
    )
    assert [e.reason for e in workspace.events()] == ["invalid_case"]


def test_form_that_is_a_named_pipe_is_refused_unopened(workspace: Workspace) -> None:
    """A named pipe given as the form is refused at once: exit 2, nothing sent, the refusal
    logged for every partner asked, like any form that cannot be read."""
    form = fifo(workspace.forms / "pipe.pdf")
    case = workspace.write_case(workspace.example_case())
    code, _, err = run(workspace, "--case", str(case), "--form", str(form))
    assert code == 2
    assert f"referral form {form}: is a named pipe (FIFO), not a regular file" in err
    assert workspace.outbox_files() == []
    assert [e.reason for e in workspace.events()] == ["form_unreadable", "form_unreadable"]


def test_encrypted_form_refusal_says_how_to_give_the_password(workspace: Workspace) -> None:
    """A password-protected form is refused with advice naming send-request's own option
    and the config's keys, never options that do not exist."""
    from test_referral_form import rewrite

    form = workspace.forms / "MASH-2026-0412.pdf"
    form.write_bytes(rewrite(form.read_bytes(), password="s3cret"))
    case = workspace.write_case(workspace.example_case())
    code, _, err = run(workspace, "--case", str(case))
    assert code == 2
    assert "refused (encrypted)" in err
    assert "--form-password" in err and "MASH_FORM_PASSWORD" in err
    assert "[form] password_env or password_file" in err
    assert "--password " not in err and "form.password" not in err
    code, _, _ = run(workspace, "--case", str(case), "--form-password", "s3cret")
    assert code == 0
