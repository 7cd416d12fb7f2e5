"""Reminders through each of the four gateways by config alone, and over SMTP a lost answer.

The same fakes as the gateway-switch tests (tests/switch_helpers.py): a real aiosmtpd
server, ``responses`` fakes of Graph and EWS in their recorded wire formats, and the outbox.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme
from click.testing import CliRunner, Result

from mash_requests.audit.events import EventKind
from mash_requests.cli import main
from switch_helpers import GATEWAYS, FakeMailSystem, SmtpFake, fake_mail_system
from workspace import Workspace

RATE_LIMIT = "\n[rate_limit]\nper_minute = 100000\n"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(params=GATEWAYS)
def fake(
    request: pytest.FixtureRequest,
    workspace: Workspace,
    ca: trustme.CA,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FakeMailSystem]:
    """A fake mail system for the gateway, and the workspace config switched to it."""
    with fake_mail_system(request.param, workspace.root, ca) as system:
        for name, value in system.secrets.items():
            monkeypatch.setenv(name, value)
        workspace.config.write_text(
            workspace.config.read_text(encoding="utf-8") + RATE_LIMIT + system.config,
            encoding="utf-8",
        )
        yield system


def cli(workspace: Workspace, *args: str) -> Result:
    result = CliRunner().invoke(main, [*args, "--config", str(workspace.config)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _send_and_police_ref(workspace: Workspace) -> str:
    case = workspace.write_case(workspace.example_case())
    result = cli(workspace, "send-request", "--case", str(case))
    assert result.exit_code in (0, 1), result.output
    (sent,) = [
        e for e in workspace.events() if e.kind is EventKind.SENT and e.partner == "police"
    ] or [None]
    assert sent is not None and sent.request_ref
    return sent.request_ref


def test_a_reminder_goes_once_with_the_same_form_through_every_gateway(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """chase --request sends one reminder: same reference and form, its own Message-ID."""
    ref = _send_and_police_ref(workspace)
    result = cli(workspace, "chase", "--request", ref)
    assert result.exit_code == 0, result.output
    assert "1 reminder(s) sent." in result.stdout
    arrived = [a for a in fake.arrivals() if a.request_ref == ref]
    assert len(arrived) == 2
    request, reminder = arrived
    assert reminder.form == request.form
    assert reminder.message_id != request.message_id
    assert reminder.subject.startswith("OFFICIAL-SENSITIVE: ") and "REMINDER" in reminder.subject
    (sent,) = [
        e
        for e in workspace.events()
        if e.kind is EventKind.CHASED and e.details["outcome"] == "sent"
    ]
    assert sent.gateway == fake.kind
    assert sent.details["chaser_message_id"] == reminder.message_id


@pytest.mark.parametrize("fake", ["smtp"], indirect=True)
def test_smtp_lost_answer_leaves_the_reminder_unconfirmed_and_never_resends_it(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """DATA answer lost: unconfirmed (exit 1), one copy at the server; next chase sends none."""
    ref = _send_and_police_ref(workspace)
    assert isinstance(fake, SmtpFake)
    fake.handler.script = ["drop"]
    result = cli(workspace, "chase", "--request", ref)
    assert result.exit_code == 1
    assert "unconfirmed" in result.stdout and "check the partner's mailbox" in result.stderr
    again = cli(workspace, "chase", "--request", ref)
    assert "skipped (interval)" in again.stdout
    assert len([a for a in fake.arrivals() if a.request_ref == ref]) == 2
    outcomes = [str(e.details["outcome"]) for e in workspace.events() if e.kind is EventKind.CHASED]
    assert outcomes[-1] == "unconfirmed" and "sent" not in outcomes
