"""The same example case sends through each of the four gateways by changing only the config.

Each test runs the real ``send-request`` command against a workspace whose config differs
only in its ``[gateway]`` tables, and checks what reached the fake mail system (see
switch_helpers) and what the dispatch log recorded. The ambiguous-failure tests then show,
through the same command, that a message whose fate is unknown is never sent twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import requests
import trustme
from click.testing import CliRunner, Result

from gateways.graph_fake import Fault
from mash_requests.audit.events import EventKind
from mash_requests.cli import main
from mash_requests.config import load_settings
from switch_helpers import (
    GATEWAYS,
    Arrival,
    EwsFake,
    FakeMailSystem,
    GraphFake,
    SmtpFake,
    fake_mail_system,
)
from workspace import Workspace

# The workspace's [retry] already waits 0 s with no jitter (two attempts); the rate limit
# must not hold a test back either.
RATE_LIMIT = "\n[rate_limit]\nper_minute = 100000\n"
PARTNERS = ("police", "health")


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


def send(workspace: Workspace, *args: str) -> Result:
    case = workspace.cases / "case.json"
    if not case.exists():
        workspace.write_case(workspace.example_case())
    return cli(workspace, "send-request", "--case", str(case), *args)


def form_sha256(workspace: Workspace) -> str:
    return hashlib.sha256((workspace.forms / "MASH-2026-0412.pdf").read_bytes()).hexdigest()


def arrivals_of(workspace: Workspace, fake: FakeMailSystem, partner: str) -> list[Arrival]:
    addresses = load_settings(workspace.config).directory.get(partner).addresses
    return [a for a in fake.arrivals() if a.recipients == addresses]


def outcome_line(result: Result, partner: str) -> str:
    [line] = [row for row in result.stdout.splitlines() if row.startswith(f"{partner} ")]
    return line


# -- the same case through each gateway ---------------------------------------------------


def test_each_partner_gets_the_exact_form_once_through_every_gateway(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """Every partner's message reaches the gateway once, marked, with the form's exact bytes."""
    result = send(workspace)
    assert result.exit_code == 0, result.output
    assert "2 of 2 request(s) sent for case MASH-2026-0412." in result.stdout
    for partner in PARTNERS:
        [arrival] = arrivals_of(workspace, fake, partner)
        assert hashlib.sha256(arrival.form).hexdigest() == form_sha256(workspace)
        assert arrival.subject.startswith("OFFICIAL-SENSITIVE: ")
        assert "MASH-2026-0412" in arrival.subject
    assert len(fake.arrivals()) == len(PARTNERS)


def test_log_has_one_sent_per_partner_naming_every_gateway(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """The dispatch log has one sent event per partner, naming the gateway and what arrived."""
    send(workspace)
    sent = [e for e in workspace.events() if e.kind is EventKind.SENT]
    assert sorted(e.partner for e in sent) == sorted(PARTNERS)
    assert {e.gateway for e in sent} == {fake.kind}
    assert {e.form_sha256 for e in sent} == {form_sha256(workspace)}
    arrived = {(a.request_ref, a.message_id) for a in fake.arrivals()}
    assert {(e.request_ref, e.message_id) for e in sent} == arrived


@pytest.mark.parametrize("fake", ["smtp", "graph", "ews"], indirect=True)
def test_secrets_reach_neither_the_output_nor_the_log(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """The gateway's password or client secret appears in no output and nowhere in the log."""
    result = send(workspace)
    raw_log = workspace.log_path.read_bytes()
    for secret in fake.secrets.values():
        assert secret not in result.output
        assert secret.encode() not in raw_log


# -- SMTP: the answer to DATA lost --------------------------------------------------------


def drop_first_data(fake: FakeMailSystem) -> None:
    assert isinstance(fake, SmtpFake)
    fake.handler.script = ["drop"]  # police is asked first: its answer never leaves


@pytest.mark.parametrize("fake", ["smtp"], indirect=True)
def test_smtp_drop_after_data_is_unconfirmed_with_one_copy_at_the_server(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """A connection dropped after DATA exits 1, shows and logs unconfirmed; one copy arrived."""
    drop_first_data(fake)
    result = send(workspace)
    assert result.exit_code == 1
    assert " unconfirmed " in outcome_line(result, "police")
    assert " sent " in outcome_line(result, "health")
    assert "1 of 2 request(s) sent" in result.stdout
    assert "mash-requests reconcile" in result.stderr
    outcomes = {
        e.partner: e
        for e in workspace.events()
        if e.kind in (EventKind.SENT, EventKind.UNCONFIRMED, EventKind.FAILED)
    }
    assert outcomes["police"].kind is EventKind.UNCONFIRMED
    assert outcomes["police"].gateway == "smtp" and outcomes["police"].error_class == "ambiguous"
    assert outcomes["health"].kind is EventKind.SENT
    assert len(arrivals_of(workspace, fake, "police")) == 1


@pytest.mark.parametrize("fake", ["smtp"], indirect=True)
def test_smtp_unconfirmed_request_is_refused_as_a_duplicate(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """Sending the unconfirmed request again is refused (exit 2) and nothing more arrives."""
    drop_first_data(fake)
    send(workspace)
    result = send(workspace, "--partner", "police")
    assert result.exit_code == 2
    assert "unconfirmed" in result.stderr and "--partner police --resend" in result.stderr
    assert len(arrivals_of(workspace, fake, "police")) == 1
    rejected = [e for e in workspace.events() if e.kind is EventKind.REJECTED]
    assert [(e.partner, e.reason) for e in rejected] == [("police", "duplicate")]


@pytest.mark.parametrize("fake", ["smtp"], indirect=True)
def test_reconcile_over_smtp_reports_it_cannot_check(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """reconcile cannot look an SMTP request up: it says so for that request and exits 1."""
    drop_first_data(fake)
    send(workspace)
    [police] = [e for e in workspace.events() if e.kind is EventKind.UNCONFIRMED]
    result = cli(workspace, "reconcile")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"{police.request_ref}  police  cannot_check"]
    assert "1 request(s) still unconfirmed" in result.stderr
    assert not [e for e in workspace.events() if e.kind is EventKind.RECONCILED]
    assert len(arrivals_of(workspace, fake, "police")) == 1


@pytest.mark.parametrize("fake", ["graph"], indirect=True)
def test_reconcile_at_once_looks_twice_before_saying_not_found(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """reconcile run straight after a send left a request unconfirmed gives Sent Items
    lookup_delay, and looks once more before recording not_found (which lets the next send
    send it again): a message Exchange files late is found, and never sent twice."""
    assert isinstance(fake, GraphFake)
    workspace.config.write_text(
        workspace.config.read_text().replace("lookup_delay = 0", "lookup_delay = 0.5"),
        encoding="utf-8",
    )
    fake.service.fail("sendMail", Fault.answer(504, done=True))
    fake.service.fail("searchSentItems", *[Fault.answer(500, code="InternalServerError")] * 2)
    assert send(workspace).exit_code == 1
    [unconfirmed] = [e for e in workspace.events() if e.kind is EventKind.UNCONFIRMED]
    [police] = [
        item
        for item in fake.service.delivered
        if item.internet_message_id == unconfirmed.message_id
    ]
    police.hidden_searches = 1  # filed late: the next search misses it
    result = cli(workspace, "reconcile")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{unconfirmed.request_ref}  police  sent"]
    again = send(workspace)
    assert again.exit_code == 2
    assert "police was already sent" in again.stderr
    assert len(arrivals_of(workspace, fake, "police")) == 1


@pytest.mark.parametrize("fake", ["graph"], indirect=True)
def test_reconcile_not_found_says_the_next_send_sends_it_again(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """Not in Sent Items after both looks: recorded not_found, reported as not sent (exit
    1) with what the next send does, never as 'still unconfirmed'; that send sends it."""
    assert isinstance(fake, GraphFake)
    fake.service.fail("sendMail", Fault.answer(504, done=False))
    fake.service.fail("searchSentItems", *[Fault.answer(500, code="InternalServerError")] * 2)
    assert send(workspace).exit_code == 1
    result = cli(workspace, "reconcile")
    assert result.exit_code == 1
    assert result.stdout.rstrip().endswith("  police  not_found")
    assert "1 request(s) not found in Sent Items (looked for twice" in result.stderr
    assert "still unconfirmed" not in result.stderr
    assert "send-request --case <its case file> --partner <partner>" in result.stderr
    again = send(workspace, "--partner", "police")
    assert again.exit_code == 0, again.output
    assert len(arrivals_of(workspace, fake, "police")) == 1


# -- Graph and EWS: the answer lost, then Sent Items --------------------------------------


@pytest.mark.parametrize("fake", ["graph"], indirect=True)
def test_graph_504_on_send_then_found_in_sent_items_is_sent_once(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """A 504 on sendMail, then the message in Sent Items: exit 0, sent, never posted twice."""
    assert isinstance(fake, GraphFake)
    fake.service.fail("sendMail", Fault.answer(504, done=True))
    result = send(workspace)
    assert result.exit_code == 0, result.output
    assert len(arrivals_of(workspace, fake, "police")) == 1
    police = [e for e in workspace.events() if e.partner == "police"]
    assert [e.kind for e in police] == [
        EventKind.PREPARED,
        EventKind.HANDING_OVER,
        EventKind.ATTEMPT_FAILED,
        EventKind.SENT,
    ]
    assert police[2].error_class == "ambiguous"


@pytest.mark.parametrize("fake", ["ews"], indirect=True)
def test_ews_reset_after_create_item_then_found_in_sent_items_is_sent_once(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """A reset after CreateItem, then the message in Sent Items: exit 0, one CreateItem."""
    assert isinstance(fake, EwsFake)
    fake.create_faults = [requests.ConnectionError(ConnectionResetError(104, "reset by peer"))]
    result = send(workspace)
    assert result.exit_code == 0, result.output
    assert len(arrivals_of(workspace, fake, "police")) == 1
    [sent] = [e for e in workspace.events() if e.partner == "police" and e.kind is EventKind.SENT]
    assert sent.gateway == "ews" and sent.gateway_id == "SENT-ITEM-1"


@pytest.mark.parametrize("fake", ["graph"], indirect=True)
def test_graph_unconfirmed_request_is_settled_by_reconcile(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """When Sent Items cannot be searched the request is unconfirmed; reconcile later finds it."""
    assert isinstance(fake, GraphFake)
    fake.service.fail("sendMail", Fault.answer(504, done=True))
    fake.service.fail("searchSentItems", Fault.answer(500, code="InternalServerError"))
    assert send(workspace).exit_code == 1
    result = cli(workspace, "reconcile")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("  police  sent")
    [reconciled] = [e for e in workspace.events() if e.kind is EventKind.RECONCILED]
    assert reconciled.partner == "police" and reconciled.details["outcome"] == "sent"
    assert len(arrivals_of(workspace, fake, "police")) == 1


@pytest.mark.parametrize("fake", ["graph"], indirect=True)
def test_reconcile_after_the_request_was_sent_again_leaves_it_alone(
    workspace: Workspace, fake: FakeMailSystem
) -> None:
    """not_found, then sent again under a new reference as reconcile advised: a second
    reconcile must not look for the old reference again (a stale not_found would make the
    request sendable once more, and the next send would deliver a second copy)."""
    assert isinstance(fake, GraphFake)
    fake.service.fail("sendMail", Fault.answer(504, done=False))
    fake.service.fail("searchSentItems", *[Fault.answer(500, code="InternalServerError")] * 2)
    assert send(workspace).exit_code == 1
    assert cli(workspace, "reconcile").exit_code == 1  # not_found
    assert send(workspace, "--partner", "police").exit_code == 0
    again = cli(workspace, "reconcile")
    assert again.exit_code == 0, again.output
    assert "No unconfirmed requests." in again.stdout
    assert send(workspace, "--partner", "police").exit_code == 2  # already sent
    assert len(arrivals_of(workspace, fake, "police")) == 1
