"""Reminders for overdue requests: threaded, the same form, limits, escalation, the log."""

from __future__ import annotations

import email
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from replies_helpers import drop, reply, run_cli, send_example, with_replies_folder

import mash_requests
from mash_requests.audit.events import Event, EventKind
from mash_requests.config import Settings, load_settings
from mash_requests.dispatch import Dispatcher
from mash_requests.errors import ConfigError, InputError, PermanentGatewayError
from mash_requests.gateways.base import OutgoingMessage, Receipt
from mash_requests.replies import ChaseOutcome, chase
from mash_requests.replies.chase import chaser_key
from workspace import Workspace

#: Ten days on: every amber request of the example is overdue by then.
LATER = datetime.now(UTC) + timedelta(days=10)


@pytest.fixture
def sent(workspace: Workspace, log_backend: str) -> dict[str, object]:
    """The example case (police, health) sent through the outbox, with a replies folder."""
    with_replies_folder(workspace)
    return dict(send_example(workspace))


def _settings(workspace: Workspace) -> Settings:
    return load_settings(workspace.config)


def _chased(workspace: Workspace) -> list[Event]:
    return [e for e in workspace.events() if e.kind is EventKind.CHASED]


def _parse(path: Path) -> EmailMessage:
    parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _reminders(workspace: Workspace) -> list[EmailMessage]:
    return [m for m in map(_parse, workspace.outbox_files()) if m["In-Reply-To"]]


def _form(message: EmailMessage) -> bytes:
    (attachment,) = message.iter_attachments()
    data = attachment.get_content()
    assert isinstance(data, bytes)
    return data


@dataclass
class FailingGateway:
    """A gateway that refuses every message for good, as a relay refusing a recipient."""

    name: str = "smtp"
    calls: list[OutgoingMessage] = field(default_factory=list)

    def send(self, message: OutgoingMessage) -> Receipt:
        self.calls.append(message)
        raise PermanentGatewayError("the recipient was refused by SMTP server relay:25: 550")

    def close(self) -> None:
        pass


# -- what a reminder is --------------------------------------------------------------------


def test_an_overdue_request_gets_a_reminder_threaded_on_it(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """The reminder answers the request's Message-ID, marking first, reference and due shown."""
    result = chase(_settings(workspace), now=LATER)
    assert sorted((i.partner, i.outcome, i.chaser) for i in result.outcomes) == [
        ("health", ChaseOutcome.SENT, 1),
        ("police", ChaseOutcome.SENT, 1),
    ]
    originals = [m for m in map(_parse, workspace.outbox_files()) if not m["In-Reply-To"]]
    assert len(_reminders(workspace)) == 2
    for reminder in _reminders(workspace):
        (original,) = [m for m in originals if m["Message-ID"] == reminder["In-Reply-To"]]
        ref = original["X-MASH-Request-Ref"]
        assert reminder["References"] == original["Message-ID"]
        assert reminder["Message-ID"] != original["Message-ID"]
        assert reminder["Subject"].startswith("OFFICIAL-SENSITIVE: ")
        assert ref in reminder["Subject"] and "MASH-2026-0412" in reminder["Subject"]
        text = reminder.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert ref in text and "Response due:" in text and "was due" in text
        assert _form(reminder) == _form(original)


def test_every_reminder_is_one_sent_chased_event_with_the_requests_form(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """The log holds handing_over then sent, both chased, with the request's form SHA-256."""
    chase(_settings(workspace), now=LATER)
    requests = {e.request_ref: e for e in workspace.events() if e.kind is EventKind.SENT}
    events = _chased(workspace)
    assert sorted(str(e.details["outcome"]) for e in events) == [
        "handing_over", "handing_over", "sent", "sent",
    ]  # fmt: skip
    for event in events:
        request = requests[event.request_ref]
        assert event.form_sha256 == request.form_sha256
        assert event.message_id == request.message_id  # the request's, as every follow-up
        assert event.details["chaser"] == 1
        assert event.request_key == chaser_key(str(request.request_key), 1)
        assert event.details["request_key"] == request.request_key
        assert str(event.details["chaser_message_id"]) != request.message_id


def test_overdue_counts_the_reminders_sent(workspace: Workspace, sent: dict[str, object]) -> None:
    """After a chase, overdue's CHASERS is 1 for each request chased."""
    settings = _settings(workspace)
    chase(settings, now=LATER)
    assert {i.partner: i.chasers for i in mash_requests.overdue(settings, now=LATER)} == {
        "police": 1,
        "health": 1,
    }


def test_requests_not_yet_due_are_not_chased(workspace: Workspace, sent: dict[str, object]) -> None:
    """Without names, only overdue requests are chased: nothing, just after sending."""
    result = chase(_settings(workspace))
    assert result.outcomes == [] and _reminders(workspace) == []


def test_a_named_request_may_be_chased_before_it_is_due(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """Naming a request chases it even before its due time; the body says it is due."""
    police = sent["police"]
    result = chase(_settings(workspace), [police.request_ref])  # type: ignore[attr-defined]
    assert [(i.partner, i.outcome) for i in result.outcomes] == [("police", ChaseOutcome.SENT)]
    (reminder,) = _reminders(workspace)
    assert "is due" in reminder.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_a_dry_run_sends_and_records_nothing(workspace: Workspace, sent: dict[str, object]) -> None:
    """--dry-run builds every reminder (form checked) and sends and logs nothing."""
    before = len(workspace.events())
    result = chase(_settings(workspace), now=LATER, dry_run=True)
    assert {i.outcome for i in result.outcomes} == {ChaseOutcome.DRY_RUN}
    assert all(i.recipients for i in result.outcomes)
    assert _reminders(workspace) == [] and len(workspace.events()) == before


def _store_outside_the_chain(settings: Settings, backend: str) -> None:
    """A copy of the log's first row stored around the log, as someone able to write the
    database could: at seq -1 (SQLite), or with seq NULL once the primary key is dropped."""
    columns = "recorded_at, kind, case_ref, request_ref, request_key, partner, prev_hash, hash"
    if backend == "sqlite":
        import sqlite3

        with sqlite3.connect(settings.log.path, isolation_level=None) as conn:
            conn.execute(
                f"INSERT INTO events (seq, {columns}, record)"  # noqa: S608
                f" SELECT -1, {columns}, record FROM events WHERE seq = 1"
            )
        return
    import os

    import psycopg

    with psycopg.connect(os.environ["MASH_REPLIES_TEST_DSN"], autocommit=True) as conn:
        conn.execute(b"ALTER TABLE events DROP CONSTRAINT events_pkey")
        conn.execute(b"ALTER TABLE events ALTER COLUMN seq DROP NOT NULL")
        conn.execute(
            f"INSERT INTO events ({columns}, record)"  # noqa: S608
            f" SELECT {columns}, record FROM events WHERE seq = 1".encode()
        )


@pytest.mark.parametrize("named", [False, True])
def test_rows_outside_the_chain_are_left_out_with_one_warning(
    workspace: Workspace,
    sent: dict[str, object],
    log_backend: str,
    named: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A row stored around the log (seq -1, or NULL) neither stops a dry run nor is chased;
    one warning counts it and names `audit verify`."""
    import logging

    settings = _settings(workspace)
    _store_outside_the_chain(settings, log_backend)
    refs = [sent["police"].request_ref] if named else []  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="mash_requests"):
        result = chase(settings, refs, now=LATER, dry_run=True)
    assert result.outcomes and {i.outcome for i in result.outcomes} == {ChaseOutcome.DRY_RUN}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "1 row(s) with a seq outside the chain" in warnings[0]
    assert "mash-requests audit verify" in warnings[0]


# -- the same form, or nothing -------------------------------------------------------------


def test_a_changed_form_is_refused_and_recorded(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """A form whose SHA-256 differs from the request's is refused (form_changed), logged once."""
    form = workspace.forms / "MASH-2026-0412.pdf"
    form.write_bytes(form.read_bytes() + b"\n% edited after sending\n")
    for _ in range(2):
        result = chase(_settings(workspace), now=LATER)
        assert {(i.outcome, i.reason) for i in result.outcomes} == {
            (ChaseOutcome.REFUSED, "form_changed")
        }
        assert not result.all_done
    assert _reminders(workspace) == []
    refused = _chased(workspace)
    assert len(refused) == 2  # one per request, not one per run
    changed = hashlib.sha256(form.read_bytes()).hexdigest()
    for event in refused:
        assert event.details["outcome"] == "refused" and event.reason == "form_changed"
        assert event.details["form_sha256_found"] == changed
        assert event.form_sha256 != changed


def test_a_missing_form_is_refused_naming_where_it_was_looked_for(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """No form in [chase] forms: refused (no_form), naming the paths and --form."""
    (workspace.forms / "MASH-2026-0412.pdf").unlink()
    result = chase(_settings(workspace), now=LATER)
    item = result.outcomes[0]
    assert item.outcome is ChaseOutcome.REFUSED and item.reason == "no_form"
    assert str(workspace.forms / "MASH-2026-0412.pdf") in item.detail and "--form" in item.detail


def test_a_form_given_explicitly_is_used_when_it_is_the_same(
    workspace: Workspace, sent: dict[str, object], tmp_path: Path
) -> None:
    """--form elsewhere is fine when it is the very same file as the request carried."""
    moved = tmp_path / "kept-elsewhere.pdf"
    (workspace.forms / "MASH-2026-0412.pdf").rename(moved)
    result = chase(_settings(workspace), now=LATER, form_path=moved)
    assert {i.outcome for i in result.outcomes} == {ChaseOutcome.SENT}


def test_a_form_for_requests_of_several_cases_is_refused(
    workspace: Workspace, sent: dict[str, object], tmp_path: Path
) -> None:
    """One --form cannot be every case's form: InputError, nothing sent."""
    send_example(workspace, case="MASH-2026-0413")
    with pytest.raises(InputError, match="several cases"):
        chase(_settings(workspace), now=LATER, form_path=workspace.forms / "MASH-2026-0412.pdf")
    assert _reminders(workspace) == []


# -- how many, how often, to whom -----------------------------------------------------------


def _escalating(workspace: Workspace, address: str = "duty.manager@testshire.police.uk") -> None:
    text = workspace.config.read_text()
    text = text.replace(
        'addresses = ["mash@testshire.police.uk"]\n',
        f'addresses = ["mash@testshire.police.uk"]\nescalation = "{address}"\n',
    )
    workspace.config.write_text(text + "\n[chase]\nmax_chasers = 2\ninterval_hours = 24\n")


def test_reminders_keep_the_interval_and_the_limit_and_the_last_escalates(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """1st now; none within interval_hours; 2nd (the last) also to escalation; then no more."""
    _escalating(workspace)
    police = sent["police"].request_ref  # type: ignore[attr-defined]
    settings = _settings(workspace)

    start = datetime.now(UTC)

    def police_item(hours: float) -> tuple[str, int, str, tuple[str, ...]]:
        (item,) = chase(settings, [police], now=start + timedelta(hours=hours)).outcomes
        return str(item.outcome), item.chaser, item.reason, item.recipients

    assert police_item(0) == ("sent", 1, "", ("mash@testshire.police.uk",))
    assert police_item(23.5)[:3] == ("skipped", 2, "interval")
    assert police_item(24.5) == (
        "sent", 2, "", ("mash@testshire.police.uk", "duty.manager@testshire.police.uk"),
    )  # fmt: skip
    assert police_item(72)[:3] == ("skipped", 3, "max_chasers")
    escalated = [e for e in _chased(workspace) if e.details.get("escalated")]
    assert {str(e.details["outcome"]) for e in escalated} == {"handing_over", "sent"}


def test_an_escalation_address_outside_the_allow_list_is_refused(workspace: Workspace) -> None:
    """[partners.KEY] escalation obeys the allow-list, like the partner's addresses."""
    _escalating(workspace, "boss@gmail.com")
    with pytest.raises(ConfigError, match=r"'boss@gmail\.com' is not on the recipient domain"):
        load_settings(workspace.config)


def test_chase_keys_are_validated(workspace: Workspace) -> None:
    """[chase] max_chasers must be at least 1; unknown keys are errors."""
    workspace.config.write_text(workspace.config.read_text() + "\n[chase]\nmax_chasers = 0\n")
    with pytest.raises(ConfigError, match=r"\[chase\] max_chasers: must be at least 1"):
        load_settings(workspace.config)
    workspace.config.write_text(
        workspace.config.read_text().replace("max_chasers = 0", "every = 3")
    )
    with pytest.raises(ConfigError, match="every"):
        load_settings(workspace.config)


# -- what is not chased ---------------------------------------------------------------------


def test_answered_and_bounced_requests_are_not_chased(
    workspace: Workspace, sent: dict[str, object], replies_folder: Path
) -> None:
    """A replied request drops out; a bounced one is skipped with the reason."""
    police, health = sent["police"], sent["health"]
    drop(replies_folder, reply(police))  # type: ignore[arg-type]
    bounce = EmailMessage()
    bounce["From"] = "postmaster@nhs.net"
    bounce["To"] = "mash@testbury.gov.uk"
    bounce["Subject"] = f"Undeliverable: {health.subject}"  # type: ignore[attr-defined]
    bounce["Message-ID"] = "<ndr.1@nhs.net>"
    bounce["In-Reply-To"] = health.message_id  # type: ignore[attr-defined]
    bounce["Content-Type"] = "multipart/report; report-type=delivery-status"
    bounce.set_payload(
        "--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b\r\n"
        "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; nhs.net\r\n\r\n"
        "Final-Recipient: rfc822; safeguarding@nhs.net\r\nAction: failed\r\n"
        "Status: 5.1.1\r\n\r\n--b--\r\n"
    )
    bounce.set_param("boundary", "b")
    drop(replies_folder, bounce.as_bytes())
    settings = _settings(workspace)
    mash_requests.fetch_replies(settings)
    result = chase(settings, now=LATER)
    assert [(i.partner, i.outcome, i.reason) for i in result.outcomes] == [
        ("health", ChaseOutcome.SKIPPED, "bounced")
    ]
    with pytest.raises(InputError) as caught:
        chase(settings, [police.request_ref, health.request_ref])  # type: ignore[attr-defined]
    assert "was answered" in str(caught.value) and "bounced" in str(caught.value)
    assert _reminders(workspace) == []


def test_a_reply_to_the_reminder_answers_the_request(
    workspace: Workspace, sent: dict[str, object], replies_folder: Path
) -> None:
    """A partner answering the reminder (threaded on it) closes the request."""
    settings = _settings(workspace)
    police = sent["police"]
    chase(settings, [police.request_ref])  # type: ignore[attr-defined]
    (reminder,) = _reminders(workspace)
    answer = EmailMessage()
    answer["From"] = "officer@testshire.police.uk"
    answer["To"] = "mash@testbury.gov.uk"
    answer["Subject"] = f"RE: {reminder['Subject']}"
    answer["Message-ID"] = "<answer.1@testshire.police.uk>"
    answer["In-Reply-To"] = reminder["Message-ID"]
    answer["References"] = f"{reminder['References']} {reminder['Message-ID']}"
    answer.set_content("We hold nothing.")
    drop(replies_folder, answer.as_bytes())
    mash_requests.fetch_replies(settings)
    assert "police" not in {i.partner for i in mash_requests.overdue(settings, now=LATER)}


# -- the dispatcher's guarantees -------------------------------------------------------------


def test_a_refused_reminder_fails_and_the_next_run_sends_the_same_number(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """Gateway refusal: failed (recorded, exit 1 material); the next run tries reminder 1 again."""
    settings = _settings(workspace)
    police = sent["police"].request_ref  # type: ignore[attr-defined]
    gateway = FailingGateway()
    with Dispatcher(settings, gateway=gateway) as dispatcher:
        result = chase(settings, [police], dispatcher=dispatcher)
    (item,) = result.outcomes
    assert item.outcome is ChaseOutcome.FAILED and "550" in item.detail and not result.all_done
    outcomes = [str(e.details["outcome"]) for e in _chased(workspace)]
    assert outcomes == ["handing_over", "attempt_failed", "failed"]
    again = chase(settings, [police])
    assert [(i.outcome, i.chaser) for i in again.outcomes] == [(ChaseOutcome.SENT, 1)]


@dataclass
class AcceptingGateway:
    """A relay that takes every message (a gateway with a sending limit, unlike the outbox)."""

    name: str = "smtp"
    calls: list[OutgoingMessage] = field(default_factory=list)

    def send(self, message: OutgoingMessage) -> Receipt:
        self.calls.append(message)
        return Receipt(gateway=self.name, message_id=message.message_id)

    def close(self) -> None:
        pass


def test_reminders_wait_for_the_mailboxs_rate_limit(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """The requests just sent from the mailbox fill its minute: the reminders wait until
    their marks are a minute old, then both go, and never more than the limit a minute."""
    workspace.config.write_text(
        workspace.config.read_text() + "\n[rate_limit]\nper_minute = 2\n", encoding="utf-8"
    )
    settings = _settings(workspace)
    offset = 0.0
    slept: list[float] = []
    handed: list[float] = []

    def sleep(seconds: float) -> None:
        nonlocal offset
        offset += seconds
        slept.append(seconds)

    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=offset)

    gateway = AcceptingGateway()
    original = gateway.send

    def send(message: OutgoingMessage) -> Receipt:
        handed.append(offset)
        return original(message)

    gateway.send = send  # type: ignore[method-assign]
    with Dispatcher(settings, gateway=gateway) as dispatcher:
        result = chase(settings, now=LATER, dispatcher=dispatcher, clock=clock, sleep=sleep)
    assert sorted(i.outcome for i in result.outcomes) == [ChaseOutcome.SENT] * 2
    assert len(gateway.calls) == 2
    assert 55 <= sum(slept) <= 65
    assert all(at >= 55 for at in handed), "a reminder went while the minute was full"


def test_a_reminder_left_in_flight_by_a_stopped_run_is_looked_up_not_doubled(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """A dead run's handed-over reminder found in the outbox is settled sent, never resent."""
    settings = _settings(workspace)
    police = sent["police"].request_ref  # type: ignore[attr-defined]
    chase(settings, [police])
    (first,) = _reminders(workspace)
    events = _chased(workspace)
    mark = next(e for e in events if e.details["outcome"] == "handing_over")
    # Rewrite history as a crash would leave it: the mark of a run whose lock is gone, and
    # no outcome. A second log copy is not possible (append-only), so replay onto a fresh
    # request: the same mark for reminder 2, from a dead run, for a message in the outbox.
    import dataclasses

    from mash_requests.audit import open_store

    store = open_store(settings.log)
    try:
        store.append(
            dataclasses.replace(
                mark,
                request_key=chaser_key(str(mark.details["request_key"]), 2),
                details={
                    **mark.details,
                    "chaser": 2,
                    "run": "0123456789abcdef",
                    "run_lock": mark.details["run_lock"],
                    "chaser_message_id": first["Message-ID"],
                },
            )
        )
    finally:
        store.close()
    result = chase(settings, [police], now=LATER)
    (item,) = result.outcomes
    # Reminder 2 was found in the outbox (sent): the limit (2) is now reached.
    assert (item.outcome, item.reason) == (ChaseOutcome.SKIPPED, "max_chasers")
    settled = [e for e in _chased(workspace) if e.details["chaser"] == 2]
    assert [str(e.details["outcome"]) for e in settled] == ["handing_over", "sent"]
    assert settled[-1].reason == "interrupted"
    assert len(_reminders(workspace)) == 1


def test_a_reminder_in_flight_in_a_live_run_is_not_sent_twice(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """While one run hands a reminder over, another run sees it in flight and sends nothing."""
    settings = _settings(workspace)
    police = sent["police"].request_ref  # type: ignore[attr-defined]
    seen: list[object] = []

    @dataclass
    class Reentrant:
        name: str = "outbox"

        def send(self, message: OutgoingMessage) -> Receipt:
            # Another run starts while this one holds the reminder.
            seen.extend(chase(settings, [police]).outcomes)
            return Receipt(gateway=self.name, message_id=message.message_id, gateway_id="x")

        def close(self) -> None:
            pass

    with Dispatcher(settings, gateway=Reentrant()) as dispatcher:
        result = chase(settings, [police], dispatcher=dispatcher)
    assert [i.outcome for i in result.outcomes] == [ChaseOutcome.SENT]
    assert [(i.outcome, i.reason) for i in seen] == [(ChaseOutcome.IN_FLIGHT, "in_flight")]  # type: ignore[attr-defined]
    assert [str(e.details["outcome"]) for e in _chased(workspace)] == ["handing_over", "sent"]


def test_templates_are_overridable_like_the_others(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """A chase.subject.j2 in [mash] templates replaces the shipped one."""
    folder = workspace.root / "my-templates"
    folder.mkdir()
    (folder / "chase.subject.j2").write_text(
        "Chaser for {{ request_ref }} ({{ case_ref }})", encoding="utf-8"
    )
    text = workspace.config.read_text().replace(
        'operator = "tester"\n', 'operator = "tester"\ntemplates = "my-templates"\n'
    )
    workspace.config.write_text(text)
    chase(_settings(workspace), now=LATER)
    subjects = {m["Subject"] for m in _reminders(workspace)}
    assert all(s.startswith("OFFICIAL-SENSITIVE: Chaser for MASH-2026-0412-") for s in subjects)


# -- the command -----------------------------------------------------------------------------


def test_cli_unknown_request_is_exit_2_and_nothing_is_sent(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """An unknown reference: one Error line naming it, exit 2."""
    code, _, err = run_cli(
        "chase", "--config", str(workspace.config), "--request", "MASH-2026-0412-POLICE-XXXXX"
    )
    assert code == 2
    assert "Error: no request 'MASH-2026-0412-POLICE-XXXXX' in the dispatch log" in err
    assert _reminders(workspace) == []


def test_cli_refused_form_is_exit_1(workspace: Workspace, sent: dict[str, object]) -> None:
    """A refused form is reported in the table and the exit code is 1."""
    police = sent["police"].request_ref  # type: ignore[attr-defined]
    (workspace.forms / "MASH-2026-0412.pdf").unlink()
    code, out, _ = run_cli("chase", "--config", str(workspace.config), "--request", police)
    assert code == 1
    assert "refused (no_form)" in out
    assert "0 reminder(s) sent; 1 refused." in out


def test_cli_encrypted_form_without_its_password_says_where_it_goes(workspace: Workspace) -> None:
    """A reminder's form is encrypted and no password was given: refused, and the command
    says how to give it (the library's words name no option)."""
    from test_referral_form import rewrite

    form = workspace.forms / "MASH-2026-0412.pdf"
    form.write_bytes(rewrite(form.read_bytes(), password="s3cret"))
    case = workspace.write_case(workspace.example_case())
    code, out, err = run_cli(
        "send-request", "--config", str(workspace.config), "--case", str(case),
        "--partner", "police", "--form-password", "s3cret",
    )  # fmt: skip
    assert code == 0, err
    [police] = [e.request_ref for e in workspace.events() if e.kind is EventKind.SENT]
    assert police is not None
    code, out, err = run_cli("chase", "--config", str(workspace.config), "--request", police)
    assert code == 1
    assert "refused (encrypted)" in out
    assert "--form-password" in err and "[form] password_env or password_file" in err
    assert _reminders(workspace) == []


def test_cli_request_and_within_together_is_a_usage_error(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """--request and --within choose requests two ways: refused, exit 2, nothing sent."""
    police = sent["police"].request_ref  # type: ignore[attr-defined]
    code, _, err = run_cli(
        "chase", "--config", str(workspace.config), "--request", police, "--within", "4"
    )
    assert code == 2 and "give --request REF or --within HOURS, not both" in err
    assert _reminders(workspace) == []


def test_within_also_chases_requests_due_soon(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """chase(within_hours=…) reminds of requests not yet due but due within those hours."""
    settings = _settings(workspace)
    assert chase(settings, within_hours=0).outcomes == []
    result = chase(settings, within_hours=24 * 14)
    assert sorted((i.partner, i.outcome) for i in result.outcomes) == [
        ("health", ChaseOutcome.SENT),
        ("police", ChaseOutcome.SENT),
    ]


def test_a_reply_citing_only_the_reminder_answers_the_request(
    workspace: Workspace, sent: dict[str, object], replies_folder: Path
) -> None:
    """In-Reply-To the reminder's Message-ID alone (no References, no reference in the
    subject) still matches the request, by Message-ID."""
    settings = _settings(workspace)
    police = sent["police"]
    chase(settings, [police.request_ref])  # type: ignore[attr-defined]
    (reminder,) = _reminders(workspace)
    answer = EmailMessage()
    answer["From"] = "officer@testshire.police.uk"
    answer["To"] = "mash-replies@testbury.gov.uk"
    answer["Subject"] = "RE: your reminder"
    answer["Message-ID"] = "<answer.2@testshire.police.uk>"
    answer["In-Reply-To"] = reminder["Message-ID"]
    answer.set_content("Nothing known.")
    drop(replies_folder, answer.as_bytes())
    mash_requests.fetch_replies(settings)
    (replied,) = [e for e in workspace.events() if e.kind is EventKind.REPLIED]
    assert replied.request_ref == police.request_ref  # type: ignore[attr-defined]
    assert replied.details["matched_by"] == "in_reply_to"


def test_cli_json_is_one_document_with_every_reminder(
    workspace: Workspace, sent: dict[str, object]
) -> None:
    """--json: counts with zeros, one reminder object per request, the exit code unchanged."""
    import json

    police = sent["police"].request_ref  # type: ignore[attr-defined]
    code, out, _ = run_cli(
        "chase", "--config", str(workspace.config), "--request", police, "--json"
    )
    document = json.loads(out)
    assert code == 0 and document["ok"] is True and document["error"] is None
    assert document["counts"] == {
        "sent": 1, "failed": 0, "unconfirmed": 0, "refused": 0, "dry_run": 0, "skipped": 0,
        "in_flight": 0,
    }  # fmt: skip
    (reminder,) = document["reminders"]
    assert reminder["request_ref"] == police and reminder["outcome"] == "sent"
    assert reminder["chaser"] == 1 and reminder["recipients"] == ["mash@testshire.police.uk"]
    (mime,) = _reminders(workspace)
    assert reminder["message_id"] == mime["Message-ID"]
    code, out, _ = run_cli("chase", "--config", str(workspace.config), "--request", "X", "--json")
    document = json.loads(out)
    assert code == 2 and document["error"]["reason"] == "not_chaseable"
    assert document["reminders"] == [] and document["counts"]["sent"] == 0
