"""The dispatcher through the Python API: same path as the CLI, refusals logged, crashes settled."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

import mash_requests
from mash_requests.audit.events import Event, EventKind
from mash_requests.audit.query import request_states
from mash_requests.claims import REQUEST_FIELDS
from mash_requests.dispatch import CaseResult, Dispatcher, Outcome, PreparedRequest
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
    assert kinds == [
        EventKind.PREPARED,
        EventKind.HANDING_OVER,
        EventKind.ATTEMPT_FAILED,
        EventKind.SENT,
    ]


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


def _run_that_stops(
    workspace: Workspace, gateway: object, *, handed_over: bool = True
) -> Dispatcher:
    """A run that claimed the police request and (by default) handed it to the gateway,
    and has logged no outcome: still alive until the returned dispatcher is closed, which
    releases its lock as the death of its process would."""
    settings = mash_requests.load_settings(workspace.config)
    dispatcher = Dispatcher(settings, gateway=gateway)  # type: ignore[arg-type]
    case = mash_requests.load_case(workspace.write_case(workspace.example_case()))
    (prepared,) = dispatcher.prepare(case, ["police"])
    assert isinstance(prepared, PreparedRequest)
    dispatcher.claims.claim({prepared.request_key: None}, [dispatcher._prepared_event(prepared)])
    if handed_over:
        dispatcher.claims.hand_over(dispatcher._event(prepared, EventKind.HANDING_OVER))
        dispatcher.gateway.send(prepared.message)
    return dispatcher


def _send_police(workspace: Workspace, **kwargs: object) -> CaseResult:
    settings = mash_requests.load_settings(workspace.config)
    case_path = workspace.write_case(workspace.example_case())
    with Dispatcher(settings, **kwargs) as dispatcher:  # type: ignore[arg-type]
        return mash_requests.send_request(settings, case_path, ["police"], dispatcher=dispatcher)


def test_request_in_flight_in_a_live_run_is_waited_for_then_refused(workspace: Workspace) -> None:
    """A request a live run is sending is waited for, then refused as in flight; not sent."""
    gateway = RecordingGateway(name="smtp")
    alive = _run_that_stops(workspace, gateway)
    try:
        with pytest.raises(mash_requests.DuplicateRequestError) as caught:
            _send_police(workspace, gateway=gateway, in_flight_wait=0.3)
    finally:
        alive.close()
    assert caught.value.reason == "in_flight_elsewhere"
    assert caught.value.states == {"police": "in_flight"}
    assert "still running" in str(caught.value)
    assert len(gateway.sent) == 1
    kinds = [e.kind for e in workspace.events()]
    assert EventKind.UNCONFIRMED not in kinds and EventKind.RECONCILED not in kinds
    rejected = [e for e in workspace.events() if e.kind is EventKind.REJECTED]
    assert [e.reason for e in rejected] == ["in_flight_elsewhere"]


def test_a_live_run_is_never_second_guessed_however_old(workspace: Workspace) -> None:
    """Even a day after its last step, a request of a run that holds its lock is not settled."""
    gateway = RecordingGateway(name="smtp")
    alive = _run_that_stops(workspace, gateway)

    def tomorrow() -> datetime:
        return datetime.now(UTC) + timedelta(days=1)

    try:
        with pytest.raises(mash_requests.DuplicateRequestError, match="still running"):
            _send_police(workspace, gateway=gateway, clock=tomorrow, in_flight_wait=0)
    finally:
        alive.close()
    assert [e.kind for e in workspace.events()].count(EventKind.UNCONFIRMED) == 0


def test_waiting_run_sees_the_other_runs_outcome(workspace: Workspace) -> None:
    """A run that waits for another live run's request ends with what that run recorded."""
    gateway = RecordingGateway(name="smtp")
    alive = _run_that_stops(workspace, gateway, handed_over=False)
    (prepared,) = [e for e in workspace.events() if e.kind is EventKind.PREPARED]
    finished: list[str] = []

    def finish_the_other_run(seconds: float) -> None:
        # While the second run waits, the first one hands over and records its outcome.
        if not finished:
            finished.append("done")
            request_fields = {f: getattr(prepared, f) for f in REQUEST_FIELDS}
            run = alive.claims.run_details()
            for kind in (EventKind.HANDING_OVER, EventKind.SENT):
                alive.store.append(Event(kind=kind, details=run, **request_fields))

    try:
        with pytest.raises(mash_requests.DuplicateRequestError) as caught:
            _send_police(workspace, gateway=gateway, sleep=finish_the_other_run)
    finally:
        alive.close()
    assert caught.value.states == {"police": "sent"}
    assert caught.value.reason == "duplicate"
    assert gateway.sent == []


def test_request_of_a_dead_run_never_handed_over_is_sent_at_once(workspace: Workspace) -> None:
    """A request claimed by a run that died before handing it over is sent by the next run."""
    gateway = RecordingGateway(name="smtp")
    _run_that_stops(workspace, gateway, handed_over=False).close()
    result = _send_police(workspace, gateway=gateway)
    assert [o.outcome for o in result.outcomes] == [Outcome.SENT]
    assert len(gateway.sent) == 1
    reconciled = [e for e in workspace.events() if e.kind is EventKind.RECONCILED]
    assert [(e.reason, e.details["outcome"]) for e in reconciled] == [("interrupted", "not_sent")]
    # audit query says what happened to the abandoned one: never handed over, so not_sent
    # (not not_found, which would mean it was looked for in Sent Items and missing).
    with Dispatcher(mash_requests.load_settings(workspace.config)) as reader:
        states = {s.request_ref: s.outcome for s in request_states(reader.store)}
    assert states[reconciled[0].request_ref] == "not_sent"
    assert states[result.outcomes[0].request_ref] == "sent"


def test_interrupted_request_without_lookup_becomes_unconfirmed(workspace: Workspace) -> None:
    """A request handed to SMTP by a run that died is unconfirmed at once, never resent."""
    gateway = RecordingGateway(name="smtp")
    _run_that_stops(workspace, gateway).close()
    with pytest.raises(mash_requests.DuplicateRequestError, match="unconfirmed") as caught:
        _send_police(workspace, gateway=gateway)
    assert caught.value.states == {"police": "unconfirmed"}
    assert len(gateway.sent) == 1
    unconfirmed = [e for e in workspace.events() if e.kind is EventKind.UNCONFIRMED]
    assert [e.reason for e in unconfirmed] == ["interrupted"]


def test_interrupted_request_found_in_outbox_counts_as_sent(workspace: Workspace) -> None:
    """A request handed to the outbox by a run that died is found there and recorded sent."""
    settings = mash_requests.load_settings(workspace.config)
    _run_that_stops(workspace, settings.gateway.open()).close()
    with pytest.raises(mash_requests.DuplicateRequestError) as caught:
        _send_police(workspace)
    assert caught.value.states == {"police": "sent"}
    reconciled = [e for e in workspace.events() if e.kind is EventKind.RECONCILED]
    assert reconciled[0].details["outcome"] == "sent"
    assert len(workspace.outbox_files()) == 1


def test_lookup_of_an_interrupted_request_waits_for_sent_items(workspace: Workspace) -> None:
    """Sent Items is given lookup_delay after the hand-over before it is searched, twice."""
    workspace.config.write_text(
        workspace.config.read_text().replace("lookup_delay = 0", "lookup_delay = 30"),
        encoding="utf-8",
    )
    settings = mash_requests.load_settings(workspace.config)
    _run_that_stops(workspace, settings.gateway.open(), handed_over=False).close()
    for path in workspace.outbox_files():
        path.unlink()
    slept: list[float] = []
    offset = 0.0

    def sleep(seconds: float) -> None:
        nonlocal offset
        offset += seconds
        slept.append(seconds)

    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=offset)

    # Handed over (mark only) but nothing in the outbox: not found twice, so sent again.
    (prepared,) = [e for e in workspace.events() if e.kind is EventKind.PREPARED]
    run = {k: v for k, v in prepared.details.items() if k in ("run", "run_lock")}
    fields = {f: getattr(prepared, f) for f in REQUEST_FIELDS}
    with Dispatcher(settings) as writer:
        writer.store.append(
            Event(kind=EventKind.HANDING_OVER, gateway="outbox", details=run, **fields)
        )
    result = _send_police(workspace, clock=clock, sleep=sleep)
    assert 59 <= sum(slept) <= 62
    assert [o.outcome for o in result.outcomes] == [Outcome.SENT]
    reconciled = [e for e in workspace.events() if e.kind is EventKind.RECONCILED]
    assert [e.details["outcome"] for e in reconciled] == ["not_found"]


def test_request_logged_before_run_locks_waits_out_the_lease(workspace: Workspace) -> None:
    """A request in flight with no run named (an older log) is settled only after the lease."""
    gateway = RecordingGateway(name="smtp")
    _run_that_stops(workspace, gateway, handed_over=False).close()
    (prepared,) = [e for e in workspace.events() if e.kind is EventKind.PREPARED]
    fields = {f: getattr(prepared, f) for f in REQUEST_FIELDS}
    settings = mash_requests.load_settings(workspace.config)
    with Dispatcher(settings) as writer:  # an older version's event: no run in its details
        writer.store.append(Event(kind=EventKind.ATTEMPT_FAILED, **fields))
    with pytest.raises(mash_requests.DuplicateRequestError, match="has no lock"):
        _send_police(workspace, gateway=gateway, in_flight_wait=0)

    def later() -> datetime:
        return datetime.now(UTC) + timedelta(hours=1)

    with pytest.raises(mash_requests.DuplicateRequestError, match="unconfirmed"):
        _send_police(workspace, gateway=gateway, clock=later)
    assert gateway.sent == []


def test_dry_run_does_not_settle_an_interrupted_request(workspace: Workspace) -> None:
    """A dry run never writes to the log, not even to settle a crashed run's request."""
    settings = mash_requests.load_settings(workspace.config)
    _run_that_stops(workspace, settings.gateway.open()).close()
    before = len(workspace.events())
    case_path = workspace.write_case(workspace.example_case())
    with pytest.raises(mash_requests.DuplicateRequestError, match="stopped"):
        mash_requests.send_request(settings, case_path, ["police"], dry_run=True)
    assert len(workspace.events()) == before


def test_duplicate_error_carries_fields_and_no_command_line(workspace: Workspace) -> None:
    """Asking police (sent) and education (not): the error names police, lists education as
    askable alone, gives the earlier reference, and mentions no command-line option."""
    settings = mash_requests.load_settings(workspace.config)
    case_path = workspace.write_case(workspace.example_case())
    first = mash_requests.send_request(settings, case_path, ["police"])
    with pytest.raises(mash_requests.DuplicateRequestError) as caught:
        mash_requests.send_request(settings, case_path, ["police", "education"])
    error = caught.value
    assert "police was already sent" in str(error)
    assert "--" not in str(error)
    assert (error.reason, error.partners, error.others) == (
        "duplicate",
        ("police",),
        ("education",),
    )
    assert error.earlier == {"police": first.outcomes[0].request_ref}
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


class _Waited(Exception):
    """Raised by a test's sleep: the run had to wait for the rate limit."""


def test_rate_limit_is_exact_for_runs_sending_at_once(workspace: Workspace) -> None:
    """Two runs sending at the same moment never hand over more than the limit between them:
    the count is taken under the log's write lock, with the mark that uses the place."""
    workspace.config.write_text(
        workspace.config.read_text() + "\n[rate_limit]\nper_minute = 2\n", encoding="utf-8"
    )
    settings = mash_requests.load_settings(workspace.config)
    frozen = datetime.now(UTC)  # no time passes: a run that must wait stops instead

    def sleep(seconds: float) -> None:
        raise _Waited

    case = mash_requests.load_case(workspace.write_case(workspace.example_case()))
    gateways = [RecordingGateway(name="smtp"), RecordingGateway(name="smtp")]
    waited: list[bool] = []

    def run(gateway: RecordingGateway, partners: list[str]) -> None:
        with Dispatcher(settings, gateway=gateway, clock=lambda: frozen, sleep=sleep) as d:
            try:
                d.send_case(case, partners)
            except _Waited:
                waited.append(True)

    threads = [
        threading.Thread(target=run, args=(gateways[0], ["police", "health"])),
        threading.Thread(target=run, args=(gateways[1], ["education"])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(len(g.sent) for g in gateways) == 2
    assert waited, "one run had to wait for the third place"
    with Dispatcher(settings) as d:
        marks = [e for e in d.store.events() if e.event.kind is EventKind.HANDING_OVER]
    assert len(marks) == 2


def test_reminders_from_the_mailbox_count_against_the_rate_limit(workspace: Workspace) -> None:
    """Reminders a chase handed over in the last minute share the budget with requests."""
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
    with Dispatcher(settings, gateway=RecordingGateway(name="smtp"), clock=clock, sleep=sleep) as d:
        for outcome in ("handing_over", "sent", "handing_over"):  # two reminders handed over
            d.store.append(
                Event(
                    EventKind.CHASED,
                    case.case_ref,
                    partner="police",
                    sender=settings.sender,
                    details={"outcome": outcome},
                )
            )
        assert d.send_case(case, ["education"]).all_sent
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
