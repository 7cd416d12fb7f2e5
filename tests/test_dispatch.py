"""The dispatcher through the Python API: same path as the CLI, refusals logged, crashes settled."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

import mash_requests
from mash_requests.audit.events import EventKind
from mash_requests.dispatch import Dispatcher, Outcome
from mash_requests.errors import FormRefusedError, PermanentGatewayError, TransientGatewayError
from mash_requests.gateways.base import OutgoingMessage, Receipt
from workspace import Workspace


@dataclass
class RecordingGateway:
    """A gateway double that records messages and can fail on demand; no Sent Items lookup."""

    name: str = "outbox"
    sent: list[OutgoingMessage] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    def send(self, message: OutgoingMessage) -> Receipt:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        return Receipt(gateway=self.name, message_id=message.message_id, gateway_id="id-1")

    def close(self) -> None:
        pass


def test_api_sends_and_returns_an_outcome_per_partner(workspace: Workspace) -> None:
    """send_request returns one sent outcome per partner, with the deadline."""
    settings = mash_requests.load_settings(workspace.config)
    result = mash_requests.send_request(settings, workspace.write_case(workspace.example_case()))
    assert [o.partner for o in result.outcomes] == ["police", "health"]
    assert all(o.outcome is Outcome.SENT and o.due is not None for o in result.outcomes)
    assert result.all_sent


def test_api_refuses_a_wrong_form_and_nothing_reaches_the_gateway(workspace: Workspace) -> None:
    """With another case's form, the API raises and the gateway is never called."""
    settings = mash_requests.load_settings(workspace.config)
    gateway = RecordingGateway()
    data = workspace.example_case()
    data["referral_form"] = "../forms/MASH-2026-0413.pdf"
    with Dispatcher(settings, gateway=gateway) as dispatcher, pytest.raises(FormRefusedError):
        mash_requests.send_request(settings, workspace.write_case(data), dispatcher=dispatcher)
    assert gateway.sent == []
    rejected = [e for e in workspace.events() if e.kind is EventKind.REJECTED]
    assert {e.partner for e in rejected} == {"police", "health"}
    assert {e.reason for e in rejected} <= {"wrong_case", "case_ref_missing"}


def test_transient_failure_then_success_is_sent_once(workspace: Workspace) -> None:
    """A transient failure is retried and logged as an attempt; one copy is delivered."""
    settings = mash_requests.load_settings(workspace.config)
    gateway = RecordingGateway(failures=[TransientGatewayError("busy", server_message="421")])
    with Dispatcher(settings, gateway=gateway, sleep=lambda s: None) as dispatcher:
        case = mash_requests.load_case(workspace.write_case(workspace.example_case()))
        result = dispatcher.send_case(case, ["police"])
    assert result.outcomes[0].outcome is Outcome.SENT
    assert len(gateway.sent) == 1
    kinds = [e.kind for e in workspace.events()]
    assert kinds == [EventKind.PREPARED, EventKind.ATTEMPT_FAILED, EventKind.SENT]


def test_permanent_failure_is_failed_not_retried(workspace: Workspace) -> None:
    """A permanent refusal ends the request failed, with the server's words, after one try."""
    settings = mash_requests.load_settings(workspace.config)
    gateway = RecordingGateway(
        failures=[PermanentGatewayError("refused", server_message="550 no such user")]
    )
    with Dispatcher(settings, gateway=gateway, sleep=lambda s: None) as dispatcher:
        case = mash_requests.load_case(workspace.write_case(workspace.example_case()))
        result = dispatcher.send_case(case, ["police"])
    assert result.outcomes[0].outcome is Outcome.FAILED
    failed = workspace.events()[-1]
    assert failed.kind is EventKind.FAILED
    assert "550 no such user" in (failed.server_message or "")


def test_failed_request_can_be_sent_again_without_resend(workspace: Workspace) -> None:
    """A request that failed is not a duplicate: sending it again needs no --resend."""
    settings = mash_requests.load_settings(workspace.config)
    case_path = workspace.write_case(workspace.example_case())
    gateway = RecordingGateway(failures=[PermanentGatewayError("refused")])
    with Dispatcher(settings, gateway=gateway) as dispatcher:
        mash_requests.send_request(settings, case_path, ["police"], dispatcher=dispatcher)
        result = mash_requests.send_request(settings, case_path, ["police"], dispatcher=dispatcher)
    assert result.outcomes[0].outcome is Outcome.SENT


def _crash_after_prepare(workspace: Workspace, gateway: object) -> None:
    """Leave a request prepared with no outcome, as a killed process would."""
    settings = mash_requests.load_settings(workspace.config)
    with Dispatcher(settings, gateway=gateway) as dispatcher:  # type: ignore[arg-type]
        case = mash_requests.load_case(workspace.write_case(workspace.example_case()))
        (prepared,) = dispatcher.prepare(case, ["police"])
        assert not isinstance(prepared, mash_requests.RequestOutcome)
        dispatcher.store.append(dispatcher._prepared_event(prepared))
        dispatcher.gateway.send(prepared.message)  # the gateway took it; then the "crash"


def later() -> datetime:
    """A clock an hour ahead: the crashed run's lease on its requests has expired."""
    return datetime.now(UTC) + timedelta(hours=1)


def test_request_in_flight_in_another_run_is_not_sent_again(workspace: Workspace) -> None:
    """While another run holds a request (prepared, no outcome yet), it is refused, not sent."""
    gateway = RecordingGateway(name="smtp")
    _crash_after_prepare(workspace, gateway)
    settings = mash_requests.load_settings(workspace.config)
    case_path = workspace.write_case(workspace.example_case())
    with (
        Dispatcher(settings, gateway=gateway) as dispatcher,
        pytest.raises(mash_requests.DuplicateRequestError, match="being sent by another run"),
    ):
        mash_requests.send_request(settings, case_path, ["police"], dispatcher=dispatcher)
    assert len(gateway.sent) == 1
    assert EventKind.UNCONFIRMED not in [e.kind for e in workspace.events()]


def test_interrupted_request_without_lookup_becomes_unconfirmed(workspace: Workspace) -> None:
    """After a crash and its lease, a gateway that cannot look never resends: unconfirmed."""
    gateway = RecordingGateway(name="smtp")
    _crash_after_prepare(workspace, gateway)
    settings = mash_requests.load_settings(workspace.config)
    case_path = workspace.write_case(workspace.example_case())
    with (
        Dispatcher(settings, gateway=gateway, clock=later) as dispatcher,
        pytest.raises(mash_requests.DuplicateRequestError, match="unconfirmed"),
    ):
        mash_requests.send_request(settings, case_path, ["police"], dispatcher=dispatcher)
    assert len(gateway.sent) == 1
    assert EventKind.UNCONFIRMED in [e.kind for e in workspace.events()]


def test_interrupted_request_found_in_outbox_counts_as_sent(workspace: Workspace) -> None:
    """After a crash and its lease, the outbox finds the message and the log records it sent."""
    settings = mash_requests.load_settings(workspace.config)
    _crash_after_prepare(workspace, settings.gateway.open())
    case_path = workspace.write_case(workspace.example_case())
    with (
        Dispatcher(settings, clock=later) as dispatcher,
        pytest.raises(mash_requests.DuplicateRequestError),
    ):
        mash_requests.send_request(settings, case_path, ["police"], dispatcher=dispatcher)
    reconciled = [e for e in workspace.events() if e.kind is EventKind.RECONCILED]
    assert reconciled[0].details["outcome"] == "sent"
    assert len(workspace.outbox_files()) == 1


def test_dry_run_does_not_settle_an_interrupted_request(workspace: Workspace) -> None:
    """A dry run never writes to the log, not even to settle a crashed run's request."""
    settings = mash_requests.load_settings(workspace.config)
    _crash_after_prepare(workspace, settings.gateway.open())
    before = len(workspace.events())
    case_path = workspace.write_case(workspace.example_case())
    with (
        Dispatcher(settings, clock=later) as dispatcher,
        pytest.raises(mash_requests.DuplicateRequestError),
    ):
        mash_requests.send_request(
            settings, case_path, ["police"], dispatcher=dispatcher, dry_run=True
        )
    assert len(workspace.events()) == before


def test_duplicate_error_names_the_partners_and_the_way_out(workspace: Workspace) -> None:
    """Asking police (sent) and education (not) names police and suggests --partner education."""
    settings = mash_requests.load_settings(workspace.config)
    case_path = workspace.write_case(workspace.example_case())
    mash_requests.send_request(settings, case_path, ["police"])
    with pytest.raises(mash_requests.DuplicateRequestError) as caught:
        mash_requests.send_request(settings, case_path, ["police", "education"])
    message = str(caught.value)
    assert "police was already sent" in message
    assert "--partner education" in message
    assert len(workspace.outbox_files()) == 1


def test_reply_to_outside_secure_domains_is_refused(workspace: Workspace) -> None:
    """A worker address outside the MASH's and partners' domains is refused before sending."""
    settings = mash_requests.load_settings(workspace.config)
    data = workspace.example_case()
    data["worker"]["email"] = "sam.home@gmail.com"
    with pytest.raises(mash_requests.RecipientError, match=r"worker\.email"):
        mash_requests.send_request(settings, workspace.write_case(data))
    assert workspace.outbox_files() == []


def test_reconcile_after_a_gateway_switch_cannot_check(workspace: Workspace) -> None:
    """An unconfirmed SMTP request is not 'found missing' by another gateway's Sent Items."""
    settings = mash_requests.load_settings(workspace.config)
    case_path = workspace.write_case(workspace.example_case())
    smtp = RecordingGateway(
        name="smtp", failures=[mash_requests.AmbiguousGatewayError("lost", server_message="")]
    )
    with Dispatcher(settings, gateway=smtp, sleep=lambda s: None) as dispatcher:
        result = mash_requests.send_request(settings, case_path, ["police"], dispatcher=dispatcher)
    assert result.outcomes[0].outcome is Outcome.UNCONFIRMED
    with Dispatcher(settings) as dispatcher:  # the config's outbox gateway
        findings = dispatcher.reconcile()
    assert [f.finding for f in findings] == ["cannot_check"]
    with pytest.raises(mash_requests.DuplicateRequestError):
        mash_requests.send_request(settings, case_path, ["police"])


def test_rate_limit_holds_the_send_until_the_minute_has_room(workspace: Workspace) -> None:
    """With 2 a minute shared through the log, another sender's third message waits a minute."""
    workspace.config.write_text(
        workspace.config.read_text() + "\n[rate_limit]\nper_minute = 2\n", encoding="utf-8"
    )
    settings = mash_requests.load_settings(workspace.config)
    offset = 0.0
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        nonlocal offset
        offset += seconds
        slept.append(seconds)

    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=offset)

    case = mash_requests.load_case(workspace.write_case(workspace.example_case()))
    # Two dispatchers with their own connections to the log, as two processes would have.
    with Dispatcher(settings, gateway=RecordingGateway(name="smtp"), clock=clock) as first:
        assert first.send_case(case, ["police", "health"]).all_sent
    assert slept == []
    gateway = RecordingGateway(name="smtp")
    with Dispatcher(settings, gateway=gateway, clock=clock, sleep=sleep) as second:
        assert second.send_case(case, ["education"]).all_sent
    assert 55 <= sum(slept) <= 65


@dataclass
class CountingGateway:
    """A gateway double whose every send is refused as an authentication failure."""

    name: str = "smtp"
    calls: int = 0

    def send(self, message: OutgoingMessage) -> Receipt:
        from mash_requests.errors import Failure

        self.calls += 1
        raise PermanentGatewayError(
            "the smtp server refused the credentials: 535 5.7.8 authentication failed",
            server_message="535 5.7.8 authentication failed",
            failure=Failure.AUTHENTICATION,
        )

    def close(self) -> None:
        pass


def test_refused_credentials_end_the_runs_use_of_the_gateway(workspace: Workspace) -> None:
    """After one refused login, later requests fail with the same reason and no new login."""
    settings = mash_requests.load_settings(workspace.config)
    gateway = CountingGateway()
    with Dispatcher(settings, gateway=gateway, sleep=lambda s: None) as dispatcher:
        first = mash_requests.load_case(workspace.write_case(workspace.example_case()))
        result = dispatcher.send_case(first, ["police", "health", "education"])
    assert gateway.calls == 1
    assert [o.outcome for o in result.outcomes] == [Outcome.FAILED] * 3
    reasons = {o.reason for o in result.outcomes}
    assert len(reasons) == 1 and "535 5.7.8 authentication failed" in reasons.pop()
    assert [o.attempts for o in result.outcomes] == [1, 0, 0]
    failed = [e for e in workspace.events() if e.kind is EventKind.FAILED]
    assert len(failed) == 3 and len({e.reason for e in failed}) == 1
