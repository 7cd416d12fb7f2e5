"""Reminders ("chasers") for requests whose partner has not answered: ``mash-requests chase``.

>>> result = chase(settings)                                  # every overdue request
>>> result = chase(settings, ["MASH-2026-0412-HOUSING-07551"], dry_run=True)
>>> for item in result.outcomes:
...     print(item.request_ref, item.chaser, item.outcome, item.reason)

The flow is one way, as for a request (:mod:`mash_requests.dispatch`):

1. **Select** the requests: every ``overdue`` one (:func:`~mash_requests.replies.overdue`;
   with ``within_hours`` also those due that soon), or those named, which must be in the
   log, sent and unanswered, and not bounced (else InputError, nothing sent). A named
   request may be chased before it is due.
2. **Plan** each: its reminders so far (``chased`` events); none past ``[chase]
   max_chasers``, none sooner than ``interval_hours`` after the last. A reminder that a run
   which stopped left in flight is settled first, as a request is (looked up in Sent Items
   where the gateway can; else ``unconfirmed``, never sent again automatically).
3. **Form**: the case's referral form is found again (``--form``, else ``<[chase] forms>/
   <case ref>.pdf``), checked again exactly as for sending, and its SHA-256 must equal the
   one the request's ``sent`` event records: recommendation 6 applies to reminders too.
   Otherwise the reminder is refused (``form_changed``, ``no_form``, or the check's code).
4. **Render** ``chase.subject.j2`` / ``chase.txt.j2`` / ``chase.html.j2`` (overridable in
   ``[mash] templates``) and **build** the message, threaded on the request
   (``In-Reply-To``/``References``: its Message-ID), the marking first in the subject.
   Every reminder is built before the first is sent: a broken template sends nothing.
5. **Send** each through the dispatcher's gateway with the same retry policy: the reminder
   is claimed under the log's write lock (so two runs never send the same one), waits for
   the per-mailbox rate limit, and is marked ``handing_over`` durably before the gateway
   sees it (the invariant of :mod:`mash_requests.claims`).

**What the log holds.** Every step of a reminder is a ``chased`` event (a follow-up event:
it never changes the request's send outcome in ``audit query`` or the report's sending
figures). ``details["outcome"]`` says which step: ``handing_over``, ``attempt_failed``,
``sent``, ``failed``, ``unconfirmed``, ``not_sent`` (a stopped run's reminder not found in
Sent Items) or ``refused`` (``reason`` holds the code). A reminder that reached the partner
is exactly one event with outcome ``sent``: that is what "chasers sent" counts. The event
carries the request's case reference, request reference, partner, sender, Message-ID and
form SHA-256, the reminder's recipients, gateway and gateway id, the template, the operator,
and in ``details`` the reminder's number (``chaser``), its own Message-ID
(``chaser_message_id``), ``escalated`` and the request's key (``request_key``). Its
``request_key`` column holds the *reminder's* key (the request's key and its number, hashed):
the claim rules of a request then hold for each reminder, and the request's own key is
never touched. Never the body, the subject or the child's details.

**Escalation.** The last reminder allowed (number ``max_chasers``) also goes to ``[partners.KEY]
escalation`` when set, an address held to the same allow-list as the partner's.

**Reply-To.** The log keeps no case details, so the worker's address is not known here: a
reminder's ``Reply-To`` is ``[replies] address`` when set; otherwise replies go to ``From``,
the MASH's mailbox (``[mash] sender``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from mash_requests.audit.events import Event, EventFilter, EventKind, JSONScalar, StoredEvent
from mash_requests.case import Rag
from mash_requests.claims import LimitReached, SendingLimit
from mash_requests.errors import InputError

if TYPE_CHECKING:
    from mash_requests.config import Settings
    from mash_requests.dispatch import Dispatcher
    from mash_requests.gateways.base import OutgoingMessage
    from mash_requests.partners import Partner
    from mash_requests.referral_form import Verdict
    from mash_requests.replies.tracking import OpenRequest, OpenRequests
    from mash_requests.retry import AttemptFailure, SendResult

log = logging.getLogger(__name__)

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")

#: ``details["outcome"]`` of a reminder's events that leave it in flight (no outcome yet).
IN_FLIGHT_STEPS = frozenset({"handing_over", "attempt_failed"})
#: Outcomes that use up a reminder: it reached the partner, or may have.
DONE_STEPS = frozenset({"sent", "unconfirmed"})


class ChaseOutcome(StrEnum):
    """How one request's reminder ended in this run."""

    #: The gateway accepted the reminder.
    SENT = "sent"
    #: The gateway refused it, or retries ran out; nothing was delivered. The next run
    #: tries again.
    FAILED = "failed"
    #: It may have been delivered and that could not be proved; a person must check.
    UNCONFIRMED = "unconfirmed"
    #: Refused before sending: the form is missing, refused, or not the one the request
    #: carried (``reason``). Recorded in the log; nothing was sent.
    REFUSED = "refused"
    #: ``dry_run``: checked, rendered and built; not sent, nothing recorded.
    DRY_RUN = "dry_run"
    #: Not chased now, by the rules: ``max_chasers``, ``interval``, ``bounced``,
    #: ``answered`` (meanwhile). Nothing is wrong.
    SKIPPED = "skipped"
    #: Another run that is still alive is sending this reminder; this run did not.
    IN_FLIGHT = "in_flight"


@dataclass(frozen=True)
class ChaseItem:
    """One request's reminder: what was (or would be) sent, and how it ended."""

    request_ref: str
    case_ref: str
    partner: str
    outcome: ChaseOutcome
    #: The reminder's number (1 for the first); for a skip, the one that would come next.
    chaser: int
    #: Where it goes: the partner's addresses, and the escalation address on the last one.
    recipients: tuple[str, ...] = ()
    #: Whether the escalation address is among the recipients.
    escalated: bool = False
    #: A code: for refused the form's (``form_changed``, ``no_form``, ``wrong_case`` …), for
    #: skipped the rule (``max_chasers``, ``interval``, ``bounced``, ``answered``).
    reason: str = ""
    #: One sentence for a person.
    detail: str = ""
    due: datetime | None = None
    message_id: str | None = None
    gateway_id: str | None = None
    attempts: int = 0

    def to_json(self) -> dict[str, object]:
        """The item as JSON values (``due`` ISO 8601 with its offset; empty text as None)."""
        return {
            "request_ref": self.request_ref,
            "case_ref": self.case_ref,
            "partner": self.partner,
            "outcome": str(self.outcome),
            "chaser": self.chaser or None,
            "recipients": list(self.recipients),
            "escalated": self.escalated,
            "reason": self.reason or None,
            "detail": self.detail or None,
            "due": self.due.isoformat() if self.due else None,
            "message_id": self.message_id,
            "gateway_id": self.gateway_id,
            "attempts": self.attempts,
        }


@dataclass
class ChaseResult:
    """Every request considered, in the order of urgency (named: in the order named)."""

    outcomes: list[ChaseItem] = field(default_factory=list)

    def count(self, outcome: ChaseOutcome) -> int:
        return sum(1 for item in self.outcomes if item.outcome is outcome)

    @property
    def all_done(self) -> bool:
        """Nothing needs a person: every reminder due was sent (or it was a dry run)."""
        return not any(
            item.outcome
            in (
                ChaseOutcome.FAILED,
                ChaseOutcome.UNCONFIRMED,
                ChaseOutcome.REFUSED,
                ChaseOutcome.IN_FLIGHT,
            )
            for item in self.outcomes
        )


@dataclass(frozen=True)
class _Target:
    """A request to chase, as the log knows it."""

    request_ref: str
    request_key: str
    case_ref: str
    partner: str
    rag: Rag
    due: datetime
    sent_at: datetime
    message_id: str
    sender: str
    form_sha256: str
    #: Answers to these references answer the request (resends keep the key).
    refs: tuple[str, ...]
    bounced: bool = False


@dataclass(frozen=True)
class _Reminder:
    """A reminder checked, rendered and built, ready to send."""

    target: _Target
    number: int
    key: str
    message: OutgoingMessage
    verdict: Verdict
    template: str
    template_version: str
    escalated: bool


@dataclass(frozen=True)
class _Refusal:
    """Why the form cannot go with a reminder."""

    reason: str
    detail: str
    #: The SHA-256 of the file found, when one was read.
    found_sha256: str | None = None


class _Held(Exception):
    """Under the write lock: the reminder cannot be claimed now (``reason``: a code)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def chaser_key(request_key: str, number: int) -> str:
    """The key of a request's ``number``-th reminder: unique, stable, never a request's key."""
    material = f"{request_key}\x1fchase\x1f{number}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def chase(
    settings: Settings,
    request_refs: Sequence[str] | None = None,
    *,
    within_hours: float | None = None,
    dry_run: bool = False,
    form_path: Path | None = None,
    form_password: str | None = None,
    now: datetime | None = None,
    dispatcher: Dispatcher | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
) -> ChaseResult:
    """Send a reminder for every overdue request, or for those named; see the module docstring.

    ``within_hours``: also requests due within that many hours (``overdue --within``), for
    a reminder before the deadline; not with ``request_refs``.

    Raises InputError (nothing sent, nothing recorded) for a named request that is unknown,
    unsent, answered or bounced, for ``form_path`` with requests of several cases, and for
    a template that does not render. ``now`` decides what is overdue and whether the
    interval has passed (default: the clock's time). Pass a ``dispatcher`` to choose the
    gateway and the log (tests), ``clock`` and ``sleep`` to run waits without waiting.

    A dry run never opens the gateway, so settings loaded with
    ``load_settings(path, gateway_secrets=False)`` do for it; a real run with such
    settings raises ConfigError before anything is settled, refused or sent.
    """
    from mash_requests.config import GatewayNotRead
    from mash_requests.dispatch import Dispatcher

    if not dry_run and dispatcher is None and isinstance(settings.gateway, GatewayNotRead):
        settings.gateway.open()  # raises ConfigError: its secrets were not read
    owned = dispatcher is None
    if dispatcher is None:
        dispatcher = Dispatcher(settings, clock=clock, sleep=sleep)
    runner = _Chaser(settings, dispatcher, now=now, clock=clock, sleep=sleep)
    try:
        return runner.run(
            list(request_refs or []),
            within_hours=within_hours,
            dry_run=dry_run,
            form_path=form_path,
            form_password=form_password,
        )
    finally:
        if owned:
            runner.dispatcher.close()


class _Chaser:
    """One chase run: the dispatcher's log, gateway, run lock, renderer and clock."""

    def __init__(
        self,
        settings: Settings,
        dispatcher: Dispatcher,
        *,
        now: datetime | None,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
    ) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.store = dispatcher.store
        self._now = now
        self._clock = clock
        self._sleep = sleep
        self._login_refused: SendResult | None = None

    def now(self) -> datetime:
        return self._now or self._clock()

    # -- 1. select ---------------------------------------------------------------------------

    def run(
        self,
        named: list[str],
        *,
        within_hours: float | None,
        dry_run: bool,
        form_path: Path | None,
        form_password: str | None,
    ) -> ChaseResult:
        if named and within_hours is not None:
            raise InputError(
                "give request references or a number of hours (within), not both",
                reason="usage",
            )
        targets, result = self._select(named, within_hours)
        if form_path is not None and len({t.case_ref for t in targets}) > 1:
            raise InputError(
                "a form was given for reminders of several cases ("
                + ", ".join(sorted({t.case_ref for t in targets}))
                + "); give it with the requests of one case only, or let each case's form "
                "be found in [chase] forms",
                reason="form_for_several_cases",
                field="form",
            )
        if targets:
            self.dispatcher.renderer.check("chase")
        ready: list[_Reminder] = []
        for target in targets:
            planned = self._plan(target, settle=not dry_run)
            if isinstance(planned, ChaseItem):
                result.outcomes.append(planned)
                continue
            number, escalation = planned
            built = self._prepare(target, number, escalation, form_path, form_password, dry_run)
            if isinstance(built, ChaseItem):
                result.outcomes.append(built)
            elif dry_run:
                result.outcomes.append(
                    self._item(built, ChaseOutcome.DRY_RUN, detail="checked and built; not sent")
                )
            else:
                ready.append(built)
        for reminder in ready:  # 5. send, once every reminder is built
            result.outcomes.append(self._send(reminder))
        return result

    def _select(
        self, named: list[str], within_hours: float | None
    ) -> tuple[list[_Target], ChaseResult]:
        from mash_requests.replies.overdue import overdue, warn_outside_chain
        from mash_requests.replies.tracking import open_requests

        state = open_requests(
            self.store,
            cache_dir=self.settings.data_dir / "cache",
            location=str(getattr(self.store, "location", self.settings.log.path)),
            hmac_key=self.settings.log.hmac_key,
        )
        result = ChaseResult()
        if not named:
            targets = []
            listed = overdue(
                self.settings, within_hours=within_hours, now=self.now(), store=self.store
            )
            for item in listed:
                request = state.by_key.get(state.key_of_ref.get(item.request_ref, ""))
                if request is None:
                    continue
                target = self._target(request)
                if target is None:
                    continue
                if item.state == "bounced":
                    result.outcomes.append(
                        _skip(
                            target,
                            "bounced",
                            "the partner never got the request: find another way to reach "
                            "them (a reminder would bounce too)",
                        )
                    )
                else:  # overdue, or due within the hours asked
                    targets.append(target)
            return targets, result
        warn_outside_chain(self.store)  # overdue() says it for the listed requests
        problems: list[str] = []
        targets = []
        for ref in dict.fromkeys(r.strip() for r in named):
            problem, target = self._named(ref, state)
            if problem:
                problems.append(problem)
            elif target is not None:
                targets.append(target)
        if problems:
            raise InputError(
                "; ".join(problems) + ". Nothing was sent", reason="not_chaseable", field=None
            )
        return targets, result

    def _named(self, ref: str, state: OpenRequests) -> tuple[str, _Target | None]:
        """A named request's target, or what stops it being chased."""
        from mash_requests.replies.matching import RequestLookup

        key = state.key_of_ref.get(ref)
        request = state.by_key.get(key) if key is not None else None
        if request is None:
            record = RequestLookup(self.store).by_ref(ref)
            if record is None:
                return (
                    f"no request {ref!r} in the dispatch log (check the reference: it is in "
                    "the request's subject, e.g. MASH-2026-0412-POLICE-1BAC7)",
                    None,
                )
            if not record.handed_over:
                return f"request {ref} was not sent (its last outcome is {record.outcome})", None
            answers = self.store.events(EventFilter(request_ref=ref, kinds=[EventKind.REPLIED]))
            if any(True for _ in answers):
                return f"request {ref} was answered: there is nothing to chase", None
            return (
                f"request {ref} is no longer open (its latest send failed or was not found in "
                "sent items): send it again before chasing it",
                None,
            )
        if request.request_ref != ref:
            return (
                f"request {ref} was sent again as {request.request_ref}; chase that one",
                None,
            )
        if request.outcome != "sent":
            return (
                f"request {ref} is {request.outcome}, not sent: settle it first (mash-requests "
                "reconcile, or a person)",
                None,
            )
        if request.bounced:
            return (
                f"request {ref} bounced: the partner never got it, and a reminder would bounce "
                "too; find another way to reach them",
                None,
            )
        target = self._target(request)
        if target is None:
            return f"request {ref}: the log lacks its rating or Message-ID", None
        return "", target

    def _target(self, request: OpenRequest) -> _Target | None:
        try:
            rag = Rag(request.rag or "")
        except ValueError:
            return None
        timescales = self.settings.timescales
        if request.due:
            due = datetime.fromisoformat(request.due)
            due = due if due.tzinfo else due.replace(tzinfo=UTC)
        else:
            due = timescales.due(rag, datetime.fromisoformat(request.prepared_at))
        sent = self._sent_event(request.request_ref)
        if sent is None or not request.message_id or not sent.event.form_sha256:
            return None
        return _Target(
            request_ref=request.request_ref,
            request_key=request.request_key,
            case_ref=request.case_ref,
            partner=request.partner or "-",
            rag=rag,
            due=due.astimezone(timescales.timezone),
            sent_at=sent.recorded_at,
            message_id=request.message_id,
            sender=sent.event.sender or self.settings.sender,
            form_sha256=sent.event.form_sha256,
            refs=(*request.earlier_refs, request.request_ref),
            bounced=request.bounced,
        )

    def _sent_event(self, ref: str) -> StoredEvent | None:
        """The request's ``sent`` event (or its reconciliation as sent): the form it carried."""
        found = None
        for stored in self.store.events(
            EventFilter(request_ref=ref, kinds=[EventKind.SENT, EventKind.RECONCILED])
        ):
            event = stored.event
            if event.kind is EventKind.SENT or event.details.get("outcome") == "sent":
                found = stored
        return found

    # -- 2. plan -------------------------------------------------------------------------------

    def _history(self, target: _Target) -> dict[int, StoredEvent]:
        """The last ``chased`` event of each reminder number of the request."""
        last: dict[int, StoredEvent] = {}
        for stored in self.store.events(
            EventFilter(request_ref=target.request_ref, kinds=[EventKind.CHASED])
        ):
            number = stored.event.details.get("chaser")
            if isinstance(number, int):
                last[number] = stored
        return last

    def _plan(self, target: _Target, *, settle: bool) -> tuple[int, str | None] | ChaseItem:
        """The next reminder's number and escalation address, or why there is none now."""
        chase_settings = self.settings.chase
        history = self._history(target)
        for number, stored in sorted(history.items()):
            if _step(stored) not in IN_FLIGHT_STEPS:
                continue
            alive = self._alive(stored)
            if alive or not settle:
                item = _skip(
                    target,
                    "in_flight",
                    f"reminder {number} is being sent by another run"
                    if alive
                    else f"reminder {number} was left in flight by a run that stopped; "
                    "a real chase settles it first",
                    number=number,
                )
                return item if not alive else _with(item, ChaseOutcome.IN_FLIGHT)
            history[number] = self._settle(stored)
        done = sorted(
            (stored for stored in history.values() if _step(stored) in DONE_STEPS),
            key=lambda s: s.seq,
        )
        number = len(done) + 1
        if number > chase_settings.max_chasers:
            return _skip(
                target,
                "max_chasers",
                f"{len(done)} reminder(s) already sent, the most [chase] max_chasers allows; "
                "a person must follow this up",
                number=number,
            )
        if done:
            next_at = done[-1].recorded_at + timedelta(hours=chase_settings.interval_hours)
            if self.now() < next_at:
                zone = self.settings.timescales.timezone
                return _skip(
                    target,
                    "interval",
                    f"reminder {len(done)} "
                    + (
                        "was sent"
                        if _step(done[-1]) == "sent"
                        else "may have been delivered (unconfirmed: check with the partner)"
                    )
                    + f" {_when(done[-1].recorded_at, zone)}; the next not before "
                    f"{_when(next_at, zone)} ([chase] interval_hours)",
                    number=number,
                )
        partner = self._partner(target)
        escalation = (
            partner.escalation
            if partner is not None and number == chase_settings.max_chasers
            else None
        )
        return number, escalation

    def _partner(self, target: _Target) -> Partner | None:
        from mash_requests.errors import RecipientError

        try:
            return self.settings.directory.get(target.partner)
        except RecipientError:
            return None

    def _alive(self, stored: StoredEvent) -> bool:
        """Whether the run that wrote this in-flight step still owns the reminder."""
        from mash_requests.audit.runs import ADVISORY, FILE

        details = stored.event.details
        run_id, lock = details.get("run"), details.get("run_lock")
        if isinstance(run_id, str) and lock in (FILE, ADVISORY):
            runs = self.dispatcher.runs
            if runs.family == lock:
                alive = runs.is_alive(run_id)
                if alive is not None:
                    return alive
        lease = self.settings.retry.max_seconds + 120
        return self._clock() < stored.recorded_at + timedelta(seconds=lease)

    def _settle(self, stored: StoredEvent) -> StoredEvent:
        """Settle a reminder a stopped run left in flight; return its new last event."""
        from mash_requests.claims import Conflict
        from mash_requests.errors import GatewayError
        from mash_requests.gateways.base import SentItemsLookup

        event = stored.event
        chaser_id = event.details.get("chaser_message_id")
        gateway = self.dispatcher.gateway
        can_look = (
            isinstance(chaser_id, str)
            and isinstance(gateway, SentItemsLookup)
            and event.gateway == self.dispatcher.gateway_kind
            and event.sender == self.settings.sender
        )
        outcome, gateway_id, detail = (
            "unconfirmed",
            None,
            "the run sending this reminder stopped after handing it to the gateway, which "
            "cannot look in sent items; check the partner's mailbox",
        )
        if can_look:
            assert isinstance(chaser_id, str) and isinstance(gateway, SentItemsLookup)
            delay = self.settings.retry.lookup_delay
            ready = stored.recorded_at + timedelta(seconds=delay)
            try:
                while (left := (ready - self._clock()).total_seconds()) > 0:
                    self._sleep(min(left, 1.0))
                receipt = gateway.find_sent(chaser_id)
                if receipt is None and delay > 0:
                    self._sleep(delay)
                    receipt = gateway.find_sent(chaser_id)
            except GatewayError as exc:
                detail = (
                    "the run sending this reminder stopped after handing it to the gateway, "
                    f"and sent items could not be searched ({exc.server_message or exc.failure})"
                )
            else:
                found = receipt is not None
                outcome = "sent" if found else "not_sent"
                gateway_id = (receipt.gateway_id or chaser_id) if receipt is not None else None
                detail = "a stopped run's reminder, looked up in sent items"
        settlement = dataclasses.replace(
            event,
            gateway_id=gateway_id,
            operator=self.settings.operator,
            reason="interrupted",
            detail=detail,
            attempt=None,
            error_class=None,
            server_message=None,
            wait_seconds=None,
            details={**_keep(event.details), "outcome": outcome},
        )

        def unchanged() -> None:
            last = self.store.last_event_for_key(event.request_key or "")
            if last is None or last.seq != stored.seq:
                raise Conflict([event.request_key or ""])

        try:
            return self.store.append(settlement, precondition=unchanged)
        except Conflict:
            last = self.store.last_event_for_key(event.request_key or "")
            assert last is not None
            return last

    # -- 3. form, 4. render and build ---------------------------------------------------------

    def _prepare(
        self,
        target: _Target,
        number: int,
        escalation: str | None,
        form_path: Path | None,
        form_password: str | None,
        dry_run: bool,
    ) -> _Reminder | ChaseItem:
        from mash_requests.deadlines import describe_hours
        from mash_requests.errors import RecipientError
        from mash_requests.message import build_message, form_filename, reply_to_header
        from mash_requests.rendering import format_due

        key = chaser_key(target.request_key, number)
        checked = self._form(target, form_path, form_password)
        if isinstance(checked, _Refusal):
            if not dry_run:
                self._record_refusal(target, number, key, checked)
            return _item_for(
                target, ChaseOutcome.REFUSED, number, reason=checked.reason, detail=checked.detail
            )
        data, verdict = checked
        partner = self._partner(target)
        if partner is None:
            raise RecipientError(
                f"request {target.request_ref}: partner {target.partner!r} is no longer in the "
                "partner directory; a reminder has nowhere to go",
                reason="unknown_partner",
                partners=[target.partner],
            )
        recipients = partner.addresses
        if escalation is not None:
            recipients = tuple(dict.fromkeys((*partner.addresses, escalation)))
        zone = self.settings.timescales.timezone
        timescales = self.settings.timescales
        context = {
            "partner": partner,
            "rag": str(target.rag),
            "rag_upper": str(target.rag).upper(),
            "timescale": describe_hours(
                timescales.hours[target.rag], working=target.rag in timescales.working_hours
            ),
            "sent_at": target.sent_at.astimezone(zone),
            "sent_text": format_due(target.sent_at.astimezone(zone)),
            "chaser": number,
            "overdue": target.due <= self.now(),
            "max_chasers": self.settings.chase.max_chasers,
            "final": number == self.settings.chase.max_chasers,
            "escalation": escalation or "",
            "form_filename": form_filename(target.case_ref),
        }
        rendered = self.dispatcher.renderer.render_reminder(
            context, request_ref=target.request_ref, case_ref=target.case_ref, due=target.due
        )
        replies = self.settings.replies
        message = build_message(
            rendered=rendered,
            sender=self.settings.sender,
            recipients=recipients,
            reply_to=reply_to_header("", replies.address if replies else None) or None,
            case_ref=target.case_ref,
            request_ref=target.request_ref,
            marking=self.settings.marking,
            form_bytes=data,
            in_reply_to=target.message_id,
        )
        # Belt and braces, as for requests: recipients only from the directory's allow-list.
        for address in message.recipients:
            self.settings.directory.check_address(address, partner=target.partner)
        return _Reminder(
            target=target,
            number=number,
            key=key,
            message=message,
            verdict=verdict,
            template=rendered.template,
            template_version=rendered.template_version,
            escalated=escalation is not None,
        )

    def _form(
        self, target: _Target, explicit: Path | None, password: str | None
    ) -> tuple[bytes, Verdict] | _Refusal:
        """The form bytes and its verdict, or why it cannot go with the reminder."""
        from mash_requests.message import form_filename
        from mash_requests.referral_form import check_form, read_form

        if explicit is not None:
            candidates = [explicit]
        else:
            folder = self.settings.chase.forms or self.settings.base_dir / "forms"
            safe = _UNSAFE_FILENAME.sub("_", target.case_ref)
            candidates = [folder / f"{safe}.pdf", folder / form_filename(target.case_ref)]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            tried = " or ".join(str(c) for c in candidates)
            return _Refusal(
                "no_form",
                f"referral form for case {target.case_ref}: not found at {tried}; put the "
                "case's form there ([chase] forms) or give it (--form)",
            )
        try:
            data = read_form(path)
        except InputError as exc:
            return _Refusal("no_form", str(exc))
        sha = hashlib.sha256(data).hexdigest()
        if sha != target.form_sha256:
            return _Refusal(
                "form_changed",
                f"referral form {path}: is not the form request {target.request_ref} carried "
                f"(SHA-256 {sha[:12]}…, the request's {target.form_sha256[:12]}…); a reminder "
                "attaches the same form, so restore that file",
                sha,
            )
        form = self.settings.form
        verdict = check_form(
            data,
            target.case_ref,
            password=password if password is not None else form.password,
            max_size=form.max_size,
            case_ref_field=form.case_ref_field,
        )
        if not verdict.accepted:
            return _Refusal(
                str(verdict.reason),
                f"referral form {path}: refused ({verdict.reason}): {verdict.detail}",
                sha,
            )
        return data, verdict

    # -- 5. send -------------------------------------------------------------------------------

    def _event(self, reminder: _Reminder, outcome: str, **fields: object) -> Event:
        target, verdict, message = reminder.target, reminder.verdict, reminder.message
        details: dict[str, JSONScalar] = {
            "outcome": outcome,
            "chaser": reminder.number,
            "chaser_message_id": message.message_id,
            "escalated": reminder.escalated,
            "request_key": target.request_key,
            **self.dispatcher.claims.run_details(),
        }
        extra = fields.pop("details", None)
        if isinstance(extra, dict):
            details.update(extra)
        values: dict[str, object] = {
            "kind": EventKind.CHASED,
            "case_ref": target.case_ref,
            "request_ref": target.request_ref,
            "request_key": reminder.key,
            "partner": target.partner,
            "recipients": message.recipients,
            "gateway": self.dispatcher.gateway_kind,
            "sender": self.settings.sender,
            "message_id": target.message_id,
            "form_filename": message.attachment.filename,
            "form_sha256": verdict.sha256,
            "form_size": verdict.size,
            "form_pages": verdict.pages,
            "form_found_in": verdict.found_in,
            "template": reminder.template,
            "template_version": reminder.template_version,
            "operator": self.settings.operator,
            "details": details,
        }
        values.update(fields)
        return Event(**values)  # type: ignore[arg-type]

    def _record_refusal(
        self,
        target: _Target,
        number: int,
        key: str,
        refusal: _Refusal,
    ) -> None:
        """A ``chased`` event with outcome ``refused``; the same refusal is not logged twice."""
        last = self.store.last_event_for_key(key)
        if (
            last is not None
            and _step(last) == "refused"
            and last.event.reason == refusal.reason
            and last.event.detail == refusal.detail
        ):
            return
        details: dict[str, JSONScalar] = {
            "outcome": "refused",
            "chaser": number,
            "request_key": target.request_key,
        }
        if refusal.found_sha256 is not None:
            details["form_sha256_found"] = refusal.found_sha256
        self.store.append(
            Event(
                kind=EventKind.CHASED,
                case_ref=target.case_ref,
                request_ref=target.request_ref,
                request_key=key,
                partner=target.partner,
                sender=self.settings.sender,
                message_id=target.message_id,
                form_sha256=target.form_sha256,
                operator=self.settings.operator,
                reason=refusal.reason,
                detail=refusal.detail,
                details=details,
            )
        )

    def _send(self, reminder: _Reminder) -> ChaseItem:
        """Claim, wait for the rate limit, mark, hand to the gateway, record the outcome."""
        from mash_requests.errors import Failure
        from mash_requests.retry import SendStatus, send_with_retry

        target = reminder.target
        if self._login_refused is not None:
            return self._record(reminder, _no_attempt(self._login_refused))
        try:
            self._claim(reminder)
        except _Held as held:
            kind = ChaseOutcome.IN_FLIGHT if held.reason == "in_flight" else ChaseOutcome.SKIPPED
            return self._item(reminder, kind, reason=held.reason, detail=str(held))

        def log_failure(failure: AttemptFailure) -> None:
            self.store.append(
                self._event(
                    reminder,
                    "attempt_failed",
                    attempt=failure.attempt,
                    error_class=failure.error_class,
                    server_message=failure.server_message,
                    wait_seconds=failure.wait_seconds,
                    details={"wait_from": str(failure.wait_from)} if failure.wait_from else {},
                )
            )

        log.info(
            "sending reminder",
            extra={"case_ref": target.case_ref, "request_ref": target.request_ref,
                   "partner": target.partner, "outcome": "sending"},
        )  # fmt: skip
        result = send_with_retry(
            self.dispatcher.gateway,
            reminder.message,
            self.settings.retry,
            on_failure=log_failure,
            sleep=self._sleep,
        )
        if result.failure is Failure.AUTHENTICATION and result.status is SendStatus.FAILED:
            self._login_refused = result
        return self._record(reminder, result)

    def _claim(self, reminder: _Reminder) -> None:
        """The durable ``handing_over`` step, appended only if, under the log's write lock,
        this run still holds its lock, the reminder is nobody else's, the request is still
        unanswered, the previous reminder is still ``interval_hours`` old, and the mailbox's
        per-minute limit has room (requests and reminders alike, from every run); while it
        has none, the reminder waits."""
        target, number = reminder.target, reminder.number
        runs = self.dispatcher.runs
        interval = timedelta(hours=self.settings.chase.interval_hours)

        def precondition() -> None:
            runs.check_held()
            last = self.store.last_event_for_key(reminder.key)
            if last is not None and _step(last) in IN_FLIGHT_STEPS:
                raise _Held("in_flight", f"another run is sending reminder {number} meanwhile")
            if last is not None and _step(last) in DONE_STEPS:
                raise _Held("interval", f"another run sent reminder {number} meanwhile")
            for ref in target.refs:
                if any(True for _ in self.store.events(
                    EventFilter(request_ref=ref, kinds=[EventKind.REPLIED])
                )):  # fmt: skip
                    raise _Held("answered", "the partner's answer was recorded meanwhile")
            if number > 1:
                previous = self.store.last_event_for_key(chaser_key(target.request_key, number - 1))
                if (
                    previous is None
                    or _step(previous) not in DONE_STEPS
                    or self.now() < previous.recorded_at + interval
                ):
                    raise _Held("interval", f"reminder {number - 1} is too recent or not sent")
            if limit is not None:
                limit.check(self.store)

        limit = SendingLimit.of(self.settings, self.dispatcher.gateway_kind, self._clock)
        mark = self._event(reminder, "handing_over")
        while True:
            try:
                self.store.append(mark, precondition=precondition)
                return
            except LimitReached:
                self._sleep(1.0)

    def _record(self, reminder: _Reminder, result: SendResult) -> ChaseItem:
        from mash_requests.retry import SendStatus

        status = {
            SendStatus.SENT: ChaseOutcome.SENT,
            SendStatus.FAILED: ChaseOutcome.FAILED,
            SendStatus.UNCONFIRMED: ChaseOutcome.UNCONFIRMED,
        }[result.status]
        gateway_id = result.receipt.gateway_id if result.receipt else None
        sent = status is ChaseOutcome.SENT
        self.store.append(
            self._event(
                reminder,
                str(status),
                gateway_id=gateway_id,
                reason=None if sent else result.reason,
                error_class=result.error_class,
                server_message=result.server_message or None,
                attempt=result.attempts,
            )
        )
        log.log(
            logging.INFO if sent else logging.WARNING,
            "reminder %s",
            status,
            extra={"case_ref": reminder.target.case_ref,
                   "request_ref": reminder.target.request_ref,
                   "partner": reminder.target.partner, "outcome": str(status)},
        )  # fmt: skip
        return self._item(
            reminder,
            status,
            detail="" if sent else result.reason,
            gateway_id=gateway_id,
            attempts=result.attempts,
        )

    def _item(self, reminder: _Reminder, outcome: ChaseOutcome, **fields: object) -> ChaseItem:
        return _item_for(
            reminder.target,
            outcome,
            reminder.number,
            recipients=reminder.message.recipients,
            escalated=reminder.escalated,
            message_id=reminder.message.message_id,
            **fields,
        )


# -- small helpers ---------------------------------------------------------------------------


def _step(stored: StoredEvent) -> str:
    outcome = stored.event.details.get("outcome")
    return outcome if isinstance(outcome, str) else ""


def _keep(details: Mapping[str, JSONScalar]) -> dict[str, JSONScalar]:
    """A stopped run's step details, without its run: the settlement is this run's."""
    return {k: v for k, v in details.items() if k not in ("run", "run_lock", "wait_from")}


def _no_attempt(result: SendResult) -> SendResult:
    return dataclasses.replace(result, attempts=0)


def _when(moment: datetime, zone: object) -> str:
    from zoneinfo import ZoneInfo

    assert isinstance(zone, ZoneInfo)
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"


def _item_for(target: _Target, outcome: ChaseOutcome, number: int, **fields: object) -> ChaseItem:
    return ChaseItem(
        request_ref=target.request_ref,
        case_ref=target.case_ref,
        partner=target.partner,
        outcome=outcome,
        chaser=number,
        due=target.due,
        **fields,  # type: ignore[arg-type]
    )


def _skip(target: _Target, reason: str, detail: str, *, number: int = 0) -> ChaseItem:
    return _item_for(target, ChaseOutcome.SKIPPED, number, reason=reason, detail=detail)


def _with(item: ChaseItem, outcome: ChaseOutcome) -> ChaseItem:
    return dataclasses.replace(item, outcome=outcome)
