"""What a person or script is told after a send: advice, errors' fields, a failing log."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from click.testing import CliRunner, Result

import mash_requests
from mash_requests.audit.events import Event, EventKind, EventStore, StoredEvent
from mash_requests.cli import main
from mash_requests.dispatch import Dispatcher, Outcome
from mash_requests.errors import LogError, SendLogError
from switch_helpers import FakeMailSystem, SmtpFake, fake_mail_system
from workspace import Workspace

PARTNERS = ["police", "health", "education"]


@pytest.fixture
def smtp(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMailSystem]:
    """The workspace sending through a real in-process SMTP server."""
    with fake_mail_system("smtp", workspace.root, trustme.CA()) as system:
        for name, value in system.secrets.items():
            monkeypatch.setenv(name, value)
        workspace.config.write_text(
            workspace.config.read_text(encoding="utf-8")
            + "\n[rate_limit]\nper_minute = 100000\n"
            + system.config,
            encoding="utf-8",
        )
        yield system


def cli(workspace: Workspace, *args: str) -> Result:
    result = CliRunner().invoke(main, [*args, "--config", str(workspace.config)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def case_with_three_partners(workspace: Workspace) -> str:
    data = workspace.example_case()
    data["partners"] = PARTNERS
    return str(workspace.write_case(data))


# -- 9.7: advice safe to follow literally ----------------------------------------------------


def test_advice_after_one_unconfirmed_resends_only_that_partner(
    workspace: Workspace, smtp: FakeMailSystem
) -> None:
    """After police ended unconfirmed, the refusal's advice names only police; following it
    word for word sends police once more and nobody else."""
    assert isinstance(smtp, SmtpFake)
    smtp.handler.script = ["drop"]  # police is asked first: its answer never leaves
    case = case_with_three_partners(workspace)
    first = cli(workspace, "send-request", "--case", case)
    assert first.exit_code == 1
    arrivals_before = len(smtp.arrivals())

    second = cli(workspace, "send-request", "--case", case)
    assert second.exit_code == 2
    [advice] = [line for line in second.stderr.splitlines() if "--resend" in line]
    command = advice[advice.index("send-request") :]
    assert "--partner police --resend --reason TEXT" in command
    assert "--partner health" not in command and "--partner education" not in command

    args = shlex.split(command.replace("TEXT", "checked-not-arrived"))[1:]
    args = [a for i, a in enumerate(args) if a != "--config" and args[i - 1] != "--config"]
    third = cli(workspace, "send-request", *args)
    assert third.exit_code == 0, third.output
    new = smtp.arrivals()[arrivals_before:]
    assert [a.recipients for a in new] == [("mash@testshire.police.uk",)]


def test_closing_line_about_unconfirmed_appears_only_when_some_are(
    workspace: Workspace, smtp: FakeMailSystem
) -> None:
    """A refused partner (550) ends failed without any word about 'unconfirmed'."""
    assert isinstance(smtp, SmtpFake)
    smtp.handler.script = ["550"]
    result = cli(workspace, "send-request", "--case", case_with_three_partners(workspace))
    assert result.exit_code == 1
    assert "Not every request was sent." in result.stderr
    assert "nconfirmed" not in result.stderr


def test_advice_after_a_failed_partner_sends_only_that_one_when_followed(
    workspace: Workspace, smtp: FakeMailSystem
) -> None:
    """police refused at DATA (550), the others sent: the closing advice names the command
    for police alone, and following it word for word sends police and nobody else."""
    assert isinstance(smtp, SmtpFake)
    smtp.handler.script = ["550"]
    case = case_with_three_partners(workspace)
    first = cli(workspace, "send-request", "--case", case)
    assert first.exit_code == 1
    [advice] = [line for line in first.stderr.splitlines() if line.startswith("Failed (police)")]
    command = advice[advice.index("send-request") :]
    assert command.endswith("--partner police")
    before = len(smtp.arrivals())
    args = shlex.split(command)[1:]
    args = [a for i, a in enumerate(args) if a != "--config" and args[i - 1] != "--config"]
    again = cli(workspace, "send-request", *args)
    assert again.exit_code == 0, again.output
    assert [a.recipients for a in smtp.arrivals()[before:]] == [("mash@testshire.police.uk",)]


def test_closing_line_names_the_unconfirmed_partner(
    workspace: Workspace, smtp: FakeMailSystem
) -> None:
    """With one unconfirmed partner the closing line names it and says how to check."""
    assert isinstance(smtp, SmtpFake)
    smtp.handler.script = ["drop"]
    result = cli(workspace, "send-request", "--case", case_with_three_partners(workspace))
    assert "Unconfirmed (police)" in result.stderr
    assert "mash-requests reconcile" in result.stderr


def test_asking_a_sent_partner_and_a_new_one_advises_the_new_one(workspace: Workspace) -> None:
    """Asking police (sent) and education (new) refuses, advising --partner education only."""
    case = case_with_three_partners(workspace)
    assert cli(workspace, "send-request", "--case", case, "--partner", "police").exit_code == 0
    result = cli(workspace, "send-request", "--case", case, "--partner", "police",
                 "--partner", "education")  # fmt: skip
    assert result.exit_code == 2
    assert "To ask only the others:" in result.stderr
    assert result.stderr.rstrip().endswith(f"--case {case} --config {workspace.config} "
                                           "--partner education")  # fmt: skip


# -- 12.2: fields a script can act on ------------------------------------------------------------


def test_errors_carry_reason_field_and_partners(workspace: Workspace) -> None:
    """Invalid case, unknown partner and refused form each carry a code, field and partners."""
    settings = mash_requests.load_settings(workspace.config)
    bad = workspace.example_case()
    bad["rag"] = "purple"
    with pytest.raises(mash_requests.CaseFileError) as case_error:
        mash_requests.send_request(settings, bad)
    assert (case_error.value.reason, case_error.value.field) == ("invalid_case", "rag")

    with pytest.raises(mash_requests.RecipientError) as partner_error:
        mash_requests.send_request(settings, workspace.example_case(), ["police", "mi6"])
    assert partner_error.value.reason == "unknown_partner"
    assert partner_error.value.partners == ("mi6",)

    other = workspace.example_case()
    other["referral_form"] = str(workspace.forms / "MASH-2026-0413.pdf")
    with pytest.raises(mash_requests.FormRefusedError) as form_error:
        mash_requests.send_request(settings, other)
    assert form_error.value.reason in {"wrong_case", "case_ref_missing"}
    assert form_error.value.field == "referral_form"


def test_library_messages_name_no_command_line_option(workspace: Workspace) -> None:
    """A case without partners or form is refused in words that name no CLI option."""
    settings = mash_requests.load_settings(workspace.config)
    data = workspace.example_case()
    data["partners"] = []
    with pytest.raises(mash_requests.RecipientError) as no_partners:
        mash_requests.send_request(settings, data)
    data = workspace.example_case()
    del data["referral_form"]
    with pytest.raises(mash_requests.InputError) as no_form:
        mash_requests.send_request(settings, data)
    assert (no_partners.value.reason, no_form.value.reason) == ("no_partners", "no_form")
    assert "--" not in str(no_partners.value) and "--" not in str(no_form.value)


# -- 12.1: a case as a Case, a mapping or a path ---------------------------------------------------


def test_case_as_mapping_sends_without_a_file(workspace: Workspace) -> None:
    """A mapping with a relative referral_form resolves it against base_dir and sends."""
    settings = mash_requests.load_settings(workspace.config)
    data = workspace.example_case()
    data["referral_form"] = "forms/MASH-2026-0412.pdf"
    result = mash_requests.send_request(settings, data, base_dir=workspace.root)
    assert result.all_sent and [o.partner for o in result.outcomes] == ["police", "health"]


def test_case_object_and_all_partners(workspace: Workspace) -> None:
    """A Case object with all_partners=True asks every partner in the directory."""
    settings = mash_requests.load_settings(workspace.config)
    case = mash_requests.load_case(workspace.write_case(workspace.example_case()))
    result = mash_requests.send_request(settings, case, all_partners=True)
    assert [o.partner for o in result.outcomes] == ["police", "health", "education"]
    assert all(o.outcome is Outcome.SENT for o in result.outcomes)


@pytest.mark.parametrize("form", ["path", "mapping", "case"])
def test_each_form_of_a_case_gets_the_same_error(workspace: Workspace, form: str) -> None:
    """A case with a bad worker address is refused with the same field and words in every
    form, and the refusal is logged."""
    settings = mash_requests.load_settings(workspace.config)
    data = workspace.example_case()
    data["worker"]["email"] = "not an address"
    given: Any = {"path": workspace.write_case(data), "mapping": data}.get(form)
    if form == "case":
        good = mash_requests.load_case(workspace.write_case(workspace.example_case(), "ok.json"))
        import dataclasses

        given = dataclasses.replace(
            good, worker=dataclasses.replace(good.worker, email="not an address")
        )
    with pytest.raises(mash_requests.CaseFileError) as caught:
        mash_requests.send_request(settings, given)
    assert caught.value.field == "worker.email"
    assert str(caught.value).endswith("field worker.email: expected an email address, got "
                                      "a text of 14 characters with a space")  # fmt: skip
    rejected = [e for e in workspace.events() if e.kind is EventKind.REJECTED]
    assert [(e.case_ref, e.reason) for e in rejected] == [("MASH-2026-0412", "invalid_case")]


# -- 9.8: a failing log says what already went out ---------------------------------------------


class FailingStore:
    """A store that works until its Nth append, then fails as a full disk would."""

    def __init__(self, store: EventStore, fail_at: int) -> None:
        self._store = store
        self.appends = 0
        self.fail_at = fail_at

    def append_many(self, events: Any, *, precondition: Any = None) -> list[StoredEvent]:
        self.appends += 1
        if self.appends >= self.fail_at:
            raise LogError("dispatch log data/dispatch-log.sqlite3: cannot append: disk full")
        return self._store.append_many(events, precondition=precondition)

    def append(self, event: Event, *, precondition: Any = None) -> StoredEvent:
        return self.append_many([event], precondition=precondition)[0]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_log_failing_mid_case_names_what_went_out(workspace: Workspace) -> None:
    """When the log fails after police was sent and health handed over, the error lists
    both (with Message-IDs, health's outcome unrecorded) and education as not sent."""
    from mash_requests.audit import open_store

    settings = mash_requests.load_settings(workspace.config)
    store = FailingStore(open_store(settings.log), fail_at=3)  # claim+mark, sent+mark, ✗
    case = mash_requests.load_case(workspace.write_case(workspace.example_case()))
    with (
        Dispatcher(settings, store=store) as dispatcher,  # type: ignore[arg-type]
        pytest.raises(SendLogError) as caught,
    ):
        dispatcher.send_case(case, PARTNERS)
    error = caught.value
    assert [(h.partner, h.recorded) for h in error.handed_over] == [
        ("police", "sent"),
        ("health", None),
    ]
    assert [partner for partner, _ in error.not_sent] == ["education"]
    text = str(error)
    for handed in error.handed_over:
        assert handed.request_ref in text and handed.message_id in text
    assert "disk full" in text and "NOT recorded" in text
    assert len(workspace.outbox_files()) == 2


def test_log_failing_mid_case_exits_1_from_the_cli(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """send-request whose log fails mid-case prints what went out and exits 1."""
    import mash_requests.audit as audit

    real = audit.open_store

    def failing(settings: Any, **kwargs: Any) -> Any:
        return FailingStore(real(settings, **kwargs), fail_at=2)  # claim+mark, ✗

    monkeypatch.setattr(audit, "open_store", failing)
    result = cli(workspace, "send-request", "--case", case_with_three_partners(workspace))
    assert result.exit_code == 1
    assert "handed to the gateway before that: police" in result.stderr
    assert "not sent: health" in result.stderr and "education" in result.stderr


# -- --json: what a script is told ------------------------------------------------------------


def test_json_unconfirmed_request_exits_1_with_its_outcome_and_no_error(
    workspace: Workspace, smtp: FakeMailSystem
) -> None:
    """An unconfirmed send: exit 1, error null, the request's outcome and reason in the document."""
    import json

    assert isinstance(smtp, SmtpFake)
    smtp.handler.script = ["drop"]  # police is asked first: its answer never leaves
    result = cli(workspace, "send-request", "--case", case_with_three_partners(workspace), "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False and document["exit_code"] == 1 and document["error"] is None
    outcomes = {r["partner"]: r for r in document["requests"]}
    assert outcomes["police"]["outcome"] == "unconfirmed" and outcomes["police"]["reason"]
    assert document["sent"] == sum(1 for r in document["requests"] if r["outcome"] == "sent")


def test_json_log_failing_mid_case_lists_what_went_out(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log failing mid-case: exit 1, reason log, handed_over and not_sent as fields."""
    import json

    import mash_requests.audit as audit

    real = audit.open_store

    def failing(settings: Any, **kwargs: Any) -> Any:
        return FailingStore(real(settings, **kwargs), fail_at=2)  # claim+mark, ✗

    monkeypatch.setattr(audit, "open_store", failing)
    case = case_with_three_partners(workspace)
    result = cli(workspace, "send-request", "--case", case, "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "SendLogError" and error["reason"] == "log"
    assert [h["partner"] for h in error["handed_over"]] == ["police"]
    assert set(error["handed_over"][0]) == {"partner", "request_ref", "message_id", "recorded"}
    assert [n["partner"] for n in error["not_sent"]] == ["health", "education"]


def test_advice_after_a_failed_partner_keeps_the_form_and_the_resend(
    workspace: Workspace, smtp: FakeMailSystem
) -> None:
    """Sent with --form and as a --resend: the advice for the failed partner repeats both, so
    following it attaches the same form and sends a resend, not a plain request."""
    assert isinstance(smtp, SmtpFake)
    case = case_with_three_partners(workspace)
    form = str(workspace.forms / "MASH-2026-0412.pdf")
    assert cli(workspace, "send-request", "--case", case, "--partner", "police").exit_code == 0
    smtp.handler.script = ["550"]
    result = cli(
        workspace, "send-request", "--case", case, "--partner", "police", "--form", form,
        "--resend", "--reason", "form updated",
    )  # fmt: skip
    assert result.exit_code == 1
    [advice] = [line for line in result.stderr.splitlines() if line.startswith("Failed (police)")]
    assert f"--form {shlex.quote(form)}" in advice
    assert "--resend --reason 'form updated' --partner police" in advice
