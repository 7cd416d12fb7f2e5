"""The orchestration: preflight every request of a case, then send each, logging every step.

The flow for one case, the same from the CLI, the Python API and a batch:

1. **Preflight** (:meth:`Dispatcher.prepare`), all-or-nothing: partners exist in the directory,
   the referral form is read once and checked (:func:`~mash_requests.referral_form.check_form`),
   every partner's request renders, the message builds, and no request repeats one already
   sent. If anything is wrong, a ``rejected`` event is logged for each partner asked and an
   InputError is raised: *nothing* of the case is sent.
2. **Send** (:meth:`Dispatcher.send`): the case's requests are claimed (durable ``prepared``
   events), then for each: a durable ``handing_over`` mark (appended only while the
   mailbox's per-minute limit has room; otherwise the run waits), the gateway with the retry
   policy (each failed attempt logged), then the outcome: ``sent``, ``failed`` or
   ``unconfirmed``.

A request's *key* is (case reference, contact id, partner, form SHA-256): sending a key whose
last outcome was sent or unconfirmed again needs ``resend_reason``, which is logged. Who may
send a key, what becomes of one left in flight by a run that died, and the invariant that
lets the next run tell what reached the gateway, are :mod:`mash_requests.claims`.

A request in flight in another live run is waited for (up to ``retry.max_seconds`` + 120 s)
by :meth:`Dispatcher.send_case`; with ``skip_sent`` (a batch) it comes back at once as an
``in_flight`` outcome and the batch comes back to it later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from mash_requests.audit.events import (
    Event,
    EventFilter,
    EventKind,
    EventStore,
    JSONScalar,
    StoredEvent,
)
from mash_requests.case import Case
from mash_requests.claims import Claims, Conflict, LimitReached, SendingLimit, Standing, State
from mash_requests.errors import (
    DuplicateRequestError,
    FormRefusedError,
    HandedOver,
    InputError,
    LogError,
    RecipientError,
    SendLogError,
)
from mash_requests.gateways.base import Gateway, OutgoingMessage
from mash_requests.message import build_message, form_filename, reply_to_header
from mash_requests.partners import Partner
from mash_requests.rendering import Renderer, Replaces

if TYPE_CHECKING:
    from mash_requests.audit.runs import RunLocks
    from mash_requests.config import Settings
    from mash_requests.referral_form import Verdict
    from mash_requests.referral_form.ahead import CheckAhead
    from mash_requests.retry import AttemptFailure, SendResult

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    """How one request ended, in this run."""

    #: The gateway accepted it (outbox: written; SMTP: 250 to DATA; Graph/EWS: sent).
    SENT = "sent"
    #: The gateway refused it, or retries ran out. Nothing was delivered.
    FAILED = "failed"
    #: It may have been delivered and that could not be proved; a person must check
    #: (``mash-requests reconcile`` or the mailbox) before anything is resent. In a batch,
    #: also a request an earlier run left unconfirmed (``reason`` says so).
    UNCONFIRMED = "unconfirmed"
    #: Refused before sending (bad form, partner, template, duplicate). Nothing was sent.
    REJECTED = "rejected"
    #: ``--dry-run``: rendered and checked, deliberately not sent.
    DRY_RUN = "dry_run"
    #: A batch found this request recorded sent (by an earlier or a concurrent run) and did
    #: not send it again.
    SKIPPED = "already_sent"
    #: Another run that is still alive is sending it; this run did not.
    IN_FLIGHT = "in_flight"


@dataclass(frozen=True)
class PreparedRequest:
    """One partner's request, checked and built, not yet sent."""

    case: Case
    partner: Partner
    request_ref: str
    request_key: str
    message: OutgoingMessage
    verdict: Verdict
    template: str
    template_version: str
    due: datetime
    resend_reason: str | None = None


@dataclass(frozen=True)
class RequestOutcome:
    """What happened to one request; what the CLI prints and the API returns."""

    case_ref: str
    partner: str
    recipients: tuple[str, ...]
    outcome: Outcome
    request_ref: str | None = None
    reason: str = ""
    detail: str = ""
    message_id: str | None = None
    gateway_id: str | None = None
    attempts: int = 0
    due: datetime | None = None


@dataclass
class CaseResult:
    """The outcomes of one case's requests, in the order the partners were asked."""

    case_ref: str
    outcomes: list[RequestOutcome] = field(default_factory=list)

    @property
    def all_sent(self) -> bool:
        """Every request is recorded sent (by this run or another), or was a dry run."""
        return bool(self.outcomes) and all(
            o.outcome in (Outcome.SENT, Outcome.DRY_RUN, Outcome.SKIPPED) for o in self.outcomes
        )


def request_key(case: Case, partner_key: str, form_sha256: str) -> str:
    """The idempotency key: same case, contact, partner and form → same key."""
    material = "\x1f".join((case.case_ref, case.contact_id, partner_key, form_sha256))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def new_request_ref(case: Case, partner_key: str) -> str:
    """A reference people can quote: ``<case ref>-<PARTNER>-<5 random characters>``."""
    token = secrets.token_hex(3)[:5].upper()
    return f"{case.case_ref}-{partner_key.upper()}-{token}"


@dataclass(frozen=True)
class ReconcileFinding:
    """What ``reconcile`` found for one unconfirmed request."""

    request_ref: str
    partner: str
    #: "sent" (found in Sent Items), "not_found", "cannot_check" (gateway has no lookup), or
    #: "changed" (sent again or settled by another run while it was looked for: left so).
    finding: str


@dataclass(frozen=True)
class _Checked:
    """A case that passed the checks that do not depend on the log: partners and form."""

    partners: list[Partner]
    asked: list[str]
    data: bytes
    verdict: Verdict


class Dispatcher:
    """Prepares and sends requests for information; one per process or batch (one *run*).

    ``gateway`` and ``store`` default to the ones the settings name, opened lazily; pass
    your own (e.g. a recording gateway) in tests. The run's lock
    (:mod:`mash_requests.audit.runs`) is taken at the first send and released by
    :meth:`close`; use ``with``. ``in_flight_wait`` bounds how long :meth:`send_case` waits
    for another live run's request (default ``retry.max_seconds`` + 120 s).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        gateway: Gateway | None = None,
        store: EventStore | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        in_flight_wait: float | None = None,
    ) -> None:
        self.settings = settings
        self._gateway = gateway
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._renderer: Renderer | None = None
        self._claims: Claims | None = None
        self._runs: RunLocks | None = None
        self._verdicts: dict[tuple[str, str, str], Verdict] = {}
        self._ahead: CheckAhead | None = None
        self.in_flight_wait = (
            in_flight_wait if in_flight_wait is not None else settings.retry.max_seconds + 120
        )
        # Set once the gateway refuses our credentials: no later request of this run is
        # handed to it, so retries and partners never add up to an account lock-out.
        self._login_refused: SendResult | None = None

    # -- resources -------------------------------------------------------------------------

    @property
    def store(self) -> EventStore:
        if self._store is None:
            from mash_requests.audit import open_store

            self._store = open_store(self.settings.log)
        return self._store

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            self._gateway = self.settings.gateway.open()
        return self._gateway

    @property
    def runs(self) -> RunLocks:
        """This run's lock, and the way to ask about other runs' (opened lazily)."""
        if self._runs is None:
            from mash_requests.audit.runs import open_run_locks

            self._runs = open_run_locks(self.settings.log)
        return self._runs

    @property
    def claims(self) -> Claims:
        """Who may send which request, read from (and settled in) the log."""
        if self._claims is None:
            self._claims = Claims(
                self.settings,
                self.store,
                runs=lambda: self.runs,
                clock=self._clock,
                sleep=self._sleep,
                gateway=lambda: self.gateway,
                gateway_kind=self._gateway_kind,
            )
        return self._claims

    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            self._renderer = Renderer(
                marking=self.settings.marking,
                mash_name=self.settings.mash_name,
                override_dir=self.settings.templates_dir,
                timescales=self.settings.timescales,
            )
        return self._renderer

    def check_ahead(self, case: Case) -> None:
        """Start checking ``case``'s form in a helper process, to be ready when it is sent.

        For a batch, a few cases early: see :mod:`mash_requests.referral_form.ahead`. The
        verdicts that decide are the same; only when the form is checked changes.
        """
        if case.referral_form is None:
            return
        if self._ahead is None:
            from mash_requests.referral_form.ahead import CheckAhead

            self._ahead = CheckAhead(
                max_size=self.settings.form.max_size,
                case_ref_field=self.settings.form.case_ref_field,
            )
        self._ahead.submit(case.referral_form, case.case_ref, self.settings.form.password)

    def stop_checking_ahead(self) -> None:
        """End the helper :meth:`check_ahead` started, if any (:meth:`close` does too)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.close()

    def close(self) -> None:
        self.stop_checking_ahead()
        try:
            if self._gateway is not None:
                self._gateway.close()
        finally:
            try:
                if self._runs is not None:
                    self._runs.release()
            finally:
                if self._store is not None:
                    self._store.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- logging ---------------------------------------------------------------------------

    def _gateway_kind(self) -> str:
        # A gateway passed in (a test double, a wrapper) names itself; else the config does.
        return self._gateway.name if self._gateway is not None else self.settings.gateway.kind

    @property
    def gateway_kind(self) -> str:
        """The gateway's name as events record it (``outbox``, ``smtp`` …), without opening it."""
        return self._gateway_kind()

    def log_rejection(
        self,
        *,
        case_ref: str,
        partners: Iterable[str],
        reason: str,
        detail: str,
        verdict: Verdict | None = None,
        source: str | None = None,
    ) -> None:
        """Record a refusal before sending, one event per partner asked (or one without).

        A refusal identical to the case's last events (same reason, words, partners, form
        and source, nothing else logged for the case since) is not logged again: running a
        batch twice does not count one refusal twice. A case without a readable reference
        is always logged.
        """
        targets: list[str | None] = list(partners) or [None]
        detail = _loggable(detail)
        source = _loggable(source) if source else None
        case_ref = _loggable(case_ref)
        logger.info(
            "case refused before sending", extra={"case_ref": case_ref, "outcome": "rejected"}
        )
        fingerprint = hashlib.sha256(
            "\x1f".join(
                (
                    reason,
                    detail,
                    source or "",
                    verdict.sha256 if verdict else "",
                    *(p or "" for p in targets),
                )
            ).encode()
        ).hexdigest()[:32]
        if case_ref != "(unknown)" and self._last_refusal(case_ref) == fingerprint:
            return
        details: dict[str, JSONScalar] = {"refusal": fingerprint}
        if source:
            details["source"] = source
        events = [
            Event(
                kind=EventKind.REJECTED,
                case_ref=case_ref,
                partner=partner,
                gateway=self._gateway_kind(),
                sender=self.settings.sender,
                operator=self.settings.operator,
                reason=reason,
                detail=detail,
                form_sha256=verdict.sha256 if verdict else None,
                form_size=verdict.size if verdict else None,
                form_pages=verdict.pages if verdict else None,
                form_found_in=verdict.found_in if verdict else None,
                details=details,
            )
            for partner in targets
        ]
        self.store.append_many(events)

    def _last_refusal(self, case_ref: str) -> JSONScalar:
        """The refusal fingerprint of the case's last event, if that was a refusal."""
        last = None
        for last in self.store.events(EventFilter(case_ref=case_ref)):  # noqa: B007
            pass
        if last is None or last.event.kind is not EventKind.REJECTED:
            return None
        return last.event.details.get("refusal")

    @contextmanager
    def _refusals_logged(
        self, case: Case, asked: Sequence[str], verdict: Verdict | None, log: bool
    ) -> Iterator[None]:
        """Log an InputError raised inside as a refusal for every partner asked."""
        try:
            yield
        except FormRefusedError as exc:
            if log:
                self.log_rejection(
                    case_ref=case.case_ref,
                    partners=asked,
                    reason=str(exc.verdict.reason),
                    detail=str(exc),
                    verdict=exc.verdict,
                )
            raise
        except InputError as exc:
            if log:
                self.log_rejection(
                    case_ref=case.case_ref,
                    partners=asked,
                    reason=exc.reason,
                    detail=str(exc),
                    verdict=verdict,
                )
            raise

    # -- preflight -------------------------------------------------------------------------

    def _partners(self, case: Case, partner_keys: Sequence[str] | None) -> list[Partner]:
        keys = list(dict.fromkeys(partner_keys if partner_keys else case.partners))
        if not keys:
            raise RecipientError(
                f'case {case.case_ref}: no partners to ask; list them in the case\'s "partners"',
                reason="no_partners",
                field="partners",
            )
        if len(self.settings.directory) == 0 and self.settings.source is None:
            raise RecipientError(
                "no partner directory: no config file was found (looked for an explicit "
                "path, $MASH_REQUESTS_CONFIG and ./mash-requests.toml)",
                reason="no_directory",
            )
        return [self.settings.directory.get(key) for key in keys]

    def _check_form(
        self, case: Case, form_path: Path | None, password: str | None
    ) -> tuple[bytes, Verdict]:
        from mash_requests.referral_form import check_form, read_form

        path = form_path or case.referral_form
        if path is None:
            raise InputError(
                f'case {case.case_ref}: no referral form; set "referral_form" in the case '
                "or give a form",
                reason="no_form",
                field="referral_form",
            )
        data = read_form(path)
        password = password if password is not None else self.settings.form.password
        # A batch may attach the same form to many requests: check each distinct one once.
        cache_key = (hashlib.sha256(data).hexdigest(), case.case_ref, password or "")
        verdict = self._verdicts.get(cache_key)
        if verdict is None and self._ahead is not None:
            verdict = self._ahead.result(path, case.case_ref, password, data)
        if verdict is None:
            verdict = check_form(
                data,
                case.case_ref,
                password=password,
                max_size=self.settings.form.max_size,
                case_ref_field=self.settings.form.case_ref_field,
            )
            # Only acceptances are remembered: a refusal may be a time-out under load, and
            # must be decided afresh for the next case that brings the same file.
            if verdict.accepted:
                if len(self._verdicts) > 1024:
                    self._verdicts.clear()
                self._verdicts[cache_key] = verdict
        if not verdict.accepted:
            error = FormRefusedError(
                f"referral form {path}: refused ({verdict.reason}): {verdict.detail}", verdict
            )
            error.reason = str(verdict.reason)
            error.field = "referral_form"
            raise error
        return data, verdict

    def _check(
        self,
        case: Case,
        partner_keys: Sequence[str] | None,
        form_path: Path | None,
        form_password: str | None,
        *,
        log: bool,
    ) -> _Checked:
        """The checks that do not depend on the log; refusals logged (with ``log``)."""
        asked = list(partner_keys) if partner_keys else list(case.partners)
        with self._refusals_logged(case, asked, None, log):
            partners = self._partners(case, partner_keys)
            self._check_reply_to(case)
            data, verdict = self._check_form(case, form_path, form_password)
        return _Checked(partners, asked, data, verdict)

    def _standings(self, case: Case, checked: _Checked, *, settle: bool) -> list[Standing]:
        """What the log says of each partner's request, settling abandoned ones first."""
        keys = [request_key(case, p.key, checked.verdict.sha256) for p in checked.partners]
        return [
            self.claims.settle(standing) if standing.abandoned and settle else standing
            for standing in self.claims.standings(keys)
        ]

    def _build(
        self,
        case: Case,
        checked: _Checked,
        standings: Sequence[Standing],
        resend_reason: str | None,
        *,
        skip_sent: bool,
        log: bool,
    ) -> list[PreparedRequest | RequestOutcome]:
        """Render the requests the log lets this run claim; the others become outcomes.

        Without ``skip_sent``, any request held (sent, unconfirmed, in flight) refuses the
        whole case with DuplicateRequestError.
        """
        held = [
            (partner, standing)
            for partner, standing in zip(checked.partners, standings, strict=True)
            if standing.blocks(resend_reason)
        ]
        with self._refusals_logged(case, checked.asked, checked.verdict, log):
            if held and not skip_sent:
                raise _duplicate_error(case, held, checked.partners)
            return [
                _held_outcome(case, partner, standing)
                if standing.blocks(resend_reason)
                else self._prepare_one(
                    case,
                    partner,
                    standing.key,
                    checked.data,
                    checked.verdict,
                    resend_reason,
                    replaces=self._replaces(standing) if resend_reason else None,
                )
                for partner, standing in zip(checked.partners, standings, strict=True)
            ]

    def prepare(
        self,
        case: Case,
        partner_keys: Sequence[str] | None = None,
        *,
        form_path: Path | None = None,
        form_password: str | None = None,
        resend_reason: str | None = None,
        log_rejections: bool = True,
        skip_sent: bool = False,
    ) -> list[PreparedRequest | RequestOutcome]:
        """Check and build every requested partner's message; all or nothing.

        On any problem, logs ``rejected`` for each partner asked (unless ``log_rejections``
        is false, as in a dry run) and raises an InputError (FormRefusedError,
        RecipientError, TemplateError, DuplicateRequestError). With ``skip_sent`` (a batch
        being resumed), a request the log holds comes back as an outcome instead of
        raising DuplicateRequestError: ``already_sent``, ``unconfirmed`` (left so by an
        earlier run) or ``in_flight`` (another live run is sending it). Requests left in
        flight by a run that died are settled first (not in a dry run).
        """
        checked = self._check(case, partner_keys, form_path, form_password, log=log_rejections)
        standings = self._standings(case, checked, settle=log_rejections)
        return self._build(
            case, checked, standings, resend_reason, skip_sent=skip_sent, log=log_rejections
        )

    def _replaces(self, standing: Standing) -> Replaces | None:
        """The earlier request a resend replaces, its time in the MASH's timezone."""
        earlier = standing.earlier
        if earlier is None:
            return None
        ref, sent_at = earlier
        return Replaces(ref, sent_at.astimezone(self.settings.timescales.timezone))

    def _check_reply_to(self, case: Case) -> None:
        """Replies carry safeguarding detail: they may only go to a secure address."""
        domain = case.worker.email.rsplit("@", 1)[-1].lower()
        sender_domain = self.settings.sender.rsplit("@", 1)[-1].lower()
        if domain != sender_domain and not self.settings.directory.allow_list.allows(domain):
            raise RecipientError(
                f"case {case.case_ref}: worker.email {case.worker.email!r} is neither at the "
                f"MASH's domain ({sender_domain}) nor on the allow-list; partners' replies "
                "would leave secure email. Use the worker's secure address",
                reason="reply_to_refused",
                field="worker.email",
            )

    def _prepare_one(
        self,
        case: Case,
        partner: Partner,
        key: str,
        data: bytes,
        verdict: Verdict,
        resend_reason: str | None,
        *,
        replaces: Replaces | None = None,
    ) -> PreparedRequest:
        now = self._clock()
        rag_hours = self.settings.timescales.hours[case.rag]
        due = self.settings.timescales.due(case.rag, now)
        request_ref = new_request_ref(case, partner.key)
        rendered = self.renderer.render(
            case=case,
            partner=partner,
            request_ref=request_ref,
            due=due,
            rag_hours=rag_hours,
            form_filename=form_filename(case.case_ref),
            replaces=replaces,
        )
        message = build_message(
            rendered=rendered,
            sender=self.settings.sender,
            recipients=partner.addresses,
            reply_to=reply_to_header(
                case.worker.email, self.settings.replies.address if self.settings.replies else None
            ),
            case_ref=case.case_ref,
            request_ref=request_ref,
            marking=self.settings.marking,
            form_bytes=data,
        )
        # Belt and braces: recipients can only have come from the directory.
        for address in message.recipients:
            self.settings.directory.check_address(address, partner=partner.key)
        return PreparedRequest(
            case=case,
            partner=partner,
            request_ref=request_ref,
            request_key=key,
            message=message,
            verdict=verdict,
            template=rendered.template,
            template_version=rendered.template_version,
            due=due,
            resend_reason=resend_reason,
        )

    # -- sending ---------------------------------------------------------------------------

    def _event(self, request: PreparedRequest, kind: EventKind, **fields: object) -> Event:
        verdict = request.verdict
        base: dict[str, object] = {
            "kind": kind,
            "case_ref": request.case.case_ref,
            "request_ref": request.request_ref,
            "request_key": request.request_key,
            "partner": request.partner.key,
            "recipients": request.message.recipients,
            "gateway": self._gateway_kind(),
            "sender": self.settings.sender,
            "message_id": request.message.message_id,
            "form_filename": request.message.attachment.filename,
            "form_sha256": verdict.sha256,
            "form_size": verdict.size,
            "form_pages": verdict.pages,
            "form_found_in": verdict.found_in,
            "template": request.template,
            "template_version": request.template_version,
            "operator": self.settings.operator,
            # Every event of a request names the run that wrote it (and takes its lock).
            "details": self.claims.run_details(),
        }
        base.update(fields)
        return Event(**base)  # type: ignore[arg-type]

    def _prepared_event(self, request: PreparedRequest) -> Event:
        details: dict[str, JSONScalar] = {
            "rag": str(request.case.rag),
            "due": request.due.isoformat(),
            "consent": str(request.case.consent.status),
            **self.claims.run_details(),
        }
        if request.resend_reason:
            details["resend_reason"] = request.resend_reason
        return self._event(request, EventKind.PREPARED, details=details)

    def _sending_limit(self) -> SendingLimit | None:
        """The mailbox's per-minute limit, checked as each hand-over mark is appended.

        The count is of the marks in the shared log (requests and reminders alike), so
        concurrent processes, and a chase beside a batch, share the budget exactly.
        """
        return SendingLimit.of(self.settings, self._gateway_kind(), self._clock)

    def send(self, requests: Sequence[PreparedRequest]) -> list[RequestOutcome]:
        """Claim prepared requests, then send them one by one; every step logged first.

        Raises DuplicateRequestError (logged, nothing sent) when another run claimed one
        of them since they were prepared, and SendLogError when the log fails mid-way.
        """
        while True:
            try:
                return self._send(requests)
            except Conflict:
                standings = self.claims.standings([r.request_key for r in requests])
                held = [
                    (r.partner, standing)
                    for r, standing in zip(requests, standings, strict=True)
                    if standing.blocks(r.resend_reason)
                ]
                if not held:
                    continue  # held a moment ago, free again (e.g. it failed): claim it now
                case = requests[0].case
                error = _duplicate_error(case, held, [r.partner for r in requests])
                self.log_rejection(
                    case_ref=case.case_ref,
                    partners=[r.partner.key for r in requests],
                    reason=error.reason,
                    detail=str(error),
                    verdict=requests[0].verdict,
                )
                raise error from None

    def _send(self, requests: Sequence[PreparedRequest]) -> list[RequestOutcome]:
        """Claim, then send; raises Conflict (nothing claimed) when a request is held."""
        if not requests:
            return []
        case_ref = requests[0].case.case_ref
        self.gateway  # noqa: B018 - open it now: a gateway that cannot open strands nothing
        outcomes: list[RequestOutcome] = []
        handed: list[HandedOver] = []
        # Outcomes wait to be committed with the next request's handing_over mark (one
        # durable commit where there were two) and are all committed before this returns:
        # nothing is reported before the log holds it. See "Grouped commits" in the README.
        pending = _Pending()
        # One durable transaction claims every request (as prepared) before the first send,
        # and carries the first request's handing_over mark.
        first = requests[0]
        mark = None
        if self._login_refused is None:
            mark = self._event(first, EventKind.HANDING_OVER)
        wanted = {r.request_key: r.resend_reason for r in requests}
        prepared = [self._prepared_event(request) for request in requests]
        try:
            try:
                self.claims.claim(wanted, prepared, hand_over=mark, limit=self._sending_limit())
            except LimitReached:
                # The minute is full: claim now, and hand the first over when there is room.
                mark = None
                self.claims.claim(wanted, prepared)
        except LogError as exc:
            raise _log_failed(exc, case_ref, [], requests) from exc
        if mark is not None:
            handed.append(
                HandedOver(first.partner.key, first.request_ref, first.message.message_id, None)
            )
        try:
            self._send_all(requests, outcomes, handed, pending)
            self._commit(pending, handed)
        except LogError as exc:
            # Not handed over: those not reached yet, and those whose outcome (failed
            # without a hand-over) was still waiting to be committed.
            waiting = {e.request_ref for e in pending.events}
            not_sent = [
                r
                for number, r in enumerate(requests)
                if r.request_ref not in _refs(handed)
                and (number >= len(outcomes) or r.request_ref in waiting)
            ]
            raise _log_failed(exc, case_ref, handed, not_sent) from exc
        except BaseException:
            # E.g. a second Ctrl-C: record the outcomes already known if the log allows;
            # any not recorded read as handed over, and are settled as such (claims.py).
            with contextlib.suppress(LogError):
                self._commit(pending, handed)
            raise
        return outcomes

    def _send_all(
        self,
        requests: Sequence[PreparedRequest],
        outcomes: list[RequestOutcome],
        handed: list[HandedOver],
        pending: _Pending,
    ) -> None:
        case_ref = requests[0].case.case_ref
        for number, request in enumerate(requests):
            # The first request's mark went with the claim (if it was to be handed over).
            marked = number == 0 and bool(handed)
            try:
                outcomes.append(self._send_one(request, handed, pending, marked=marked))
            except Conflict:
                # Another run decided this one was dead and took the request over: it is
                # that run's to send now, and this run must not.
                outcomes.append(
                    RequestOutcome(
                        case_ref=case_ref,
                        partner=request.partner.key,
                        recipients=request.message.recipients,
                        outcome=Outcome.IN_FLIGHT,
                        request_ref=request.request_ref,
                        reason="taken over by another run",
                    )
                )

    def _commit(self, pending: _Pending, handed: list[HandedOver]) -> None:
        """Make the outcomes waiting in ``pending`` durable (one transaction)."""
        if pending.events:
            self.store.append_many(pending.events)
            pending.committed(handed)

    def _send_one(
        self,
        request: PreparedRequest,
        handed: list[HandedOver],
        pending: _Pending,
        *,
        marked: bool = False,
    ) -> RequestOutcome:
        """Hand one claimed request to the gateway; its outcome joins ``pending``.

        ``marked``: its handing_over mark is durable already (it went with the claim).
        """
        from mash_requests.errors import Failure
        from mash_requests.retry import SendStatus, send_with_retry

        if not marked:
            if self._login_refused is not None:
                # The credentials were refused earlier in this run: fail without a login.
                return self._record_outcome(
                    request, dataclasses.replace(self._login_refused, attempts=0), pending, None
                )
            # The invariant of claims.py: the mark is durable before the gateway sees the
            # message. The outcomes still pending ride in the same transaction, before it.
            mark = self._event(request, EventKind.HANDING_OVER)
            limit = self._sending_limit()
            while True:
                try:
                    self.claims.hand_over(mark, before=pending.events, limit=limit)
                    break
                except LimitReached:
                    # Wait for room; what is pending is committed first, so a wait never
                    # holds an outcome back from the log.
                    self._commit(pending, handed)
                    self._sleep(1.0)
            pending.committed(handed)
            handed.append(
                HandedOver(
                    request.partner.key, request.request_ref, request.message.message_id, None
                )
            )

        def log_failure(failure: AttemptFailure) -> None:
            logger.info("attempt failed", extra=_log_fields(request, "attempt_failed"))
            self.store.append(
                self._event(
                    request,
                    EventKind.ATTEMPT_FAILED,
                    attempt=failure.attempt,
                    error_class=failure.error_class,
                    server_message=failure.server_message,
                    wait_seconds=failure.wait_seconds,
                    # Whether the server's hint or our [retry] policy set the wait.
                    details={"wait_from": str(failure.wait_from)} if failure.wait_from else {},
                )
            )

        logger.info("sending request", extra=_log_fields(request, "sending"))
        result = send_with_retry(
            self.gateway,
            request.message,
            self.settings.retry,
            on_failure=log_failure,
            sleep=self._sleep,
        )
        if result.failure is Failure.AUTHENTICATION and result.status is SendStatus.FAILED:
            self._login_refused = result
        return self._record_outcome(request, result, pending, len(handed) - 1)

    def _record_outcome(
        self,
        request: PreparedRequest,
        result: SendResult,
        pending: _Pending,
        handed_index: int | None,
    ) -> RequestOutcome:
        """Add how one request ended to ``pending``; return it as an outcome."""
        from mash_requests.retry import SendStatus

        kind = {
            SendStatus.SENT: EventKind.SENT,
            SendStatus.FAILED: EventKind.FAILED,
            SendStatus.UNCONFIRMED: EventKind.UNCONFIRMED,
        }[result.status]
        gateway_id = result.receipt.gateway_id if result.receipt else None
        pending.add(
            self._event(
                request,
                kind,
                gateway_id=gateway_id,
                reason=None if kind is EventKind.SENT else result.reason,
                error_class=result.error_class,
                server_message=result.server_message or None,
                attempt=result.attempts,
            ),
            handed_index,
            _log_fields(request, str(result.status)),
        )
        return RequestOutcome(
            case_ref=request.case.case_ref,
            partner=request.partner.key,
            recipients=request.message.recipients,
            outcome=Outcome(str(result.status)),
            request_ref=request.request_ref,
            reason="" if kind is EventKind.SENT else result.reason,
            message_id=request.message.message_id,
            gateway_id=gateway_id,
            attempts=result.attempts,
            due=request.due,
        )

    def send_case(
        self,
        case: Case,
        partner_keys: Sequence[str] | None = None,
        *,
        form_path: Path | None = None,
        form_password: str | None = None,
        resend_reason: str | None = None,
        dry_run: bool = False,
        skip_sent: bool = False,
    ) -> CaseResult:
        """Prepare then send one case's requests. Raises InputError if preflight fails.

        Outcomes keep the order of the partners asked; with ``skip_sent`` requests the log
        holds come back as outcomes (see :meth:`prepare`). Without it, a request in flight
        in another live run is waited for, up to ``in_flight_wait`` seconds, and then
        decided on what the log says: sent → DuplicateRequestError; still in flight →
        DuplicateRequestError with reason ``in_flight_elsewhere``.
        """
        log = not dry_run
        checked = self._check(case, partner_keys, form_path, form_password, log=log)
        until = self._clock() + timedelta(seconds=self.in_flight_wait)
        while True:
            standings = self._standings(case, checked, settle=log)
            live = [s.key for s in standings if s.state is State.IN_FLIGHT and not s.abandoned]
            if live and log and not skip_sent and self._clock() < until:
                self.claims.wait_for(live, until=until)
                continue
            preflight = self._build(
                case, checked, standings, resend_reason, skip_sent=skip_sent, log=log
            )
            prepared = [p for p in preflight if isinstance(p, PreparedRequest)]
            result = CaseResult(case_ref=case.case_ref)
            if dry_run:
                result.outcomes = [
                    RequestOutcome(
                        case_ref=case.case_ref,
                        partner=p.partner.key,
                        recipients=p.message.recipients,
                        outcome=Outcome.DRY_RUN,
                        request_ref=p.request_ref,
                        detail="checked and rendered; not sent",
                        due=p.due,
                    )
                    if isinstance(p, PreparedRequest)
                    else p
                    for p in preflight
                ]
                return result
            try:
                sent = iter(self._send(prepared))
            except Conflict:
                continue  # another run claimed one meanwhile: decide again on what is there
            result.outcomes = [
                next(sent) if isinstance(item, PreparedRequest) else item for item in preflight
            ]
            return result

    def reconcile(self) -> list[ReconcileFinding]:
        """Look every unconfirmed request up in Sent Items and log what is found.

        A request counts while its key still stands at that event: unconfirmed, or found
        missing by an earlier reconcile and not sent again since (one sent again under a new
        reference, or being sent, is not looked for: a stale "not_found" would make it
        sendable once more). It is found missing ("not_found", and so sendable again) only
        after the two looks, ``lookup_delay`` apart, that come before any resend (see
        Claims.look_up).
        """
        latest: dict[str, StoredEvent] = {}
        kinds = [EventKind.SENT, EventKind.FAILED, EventKind.UNCONFIRMED, EventKind.RECONCILED]
        for stored in self.store.events(EventFilter(kinds=kinds)):
            if stored.event.request_ref:
                latest[stored.event.request_ref] = stored
        candidates = [
            stored for stored in latest.values()
            if stored.event.kind is EventKind.UNCONFIRMED
            or (stored.event.kind is EventKind.RECONCILED
                and stored.event.details.get("outcome") == "not_found")
        ]  # fmt: skip
        keys = sorted({s.event.request_key for s in candidates if s.event.request_key})
        lasts = self.store.last_events_for_keys(keys) if keys else {}
        pending = [
            stored
            for stored in candidates
            if stored.event.request_key is None
            or (last := lasts.get(stored.event.request_key)) is None
            or last.seq == stored.seq
        ]
        findings = self.claims.look_up(pending)
        return [
            ReconcileFinding(
                stored.event.request_ref or "-",
                stored.event.partner or "-",
                f or ("cannot_check" if not self.claims.can_look(stored.event) else "changed"),
            )
            for stored, f in zip(pending, findings, strict=True)
        ]


@dataclass
class _Pending:
    """Outcome events of a case's requests not yet committed to the log.

    Each waits for the next durable append of the case (the next request's handing_over
    mark) or the end of the case, whichever comes first. Until then it is not reported,
    not even in the operational log, and the request's entry in ``handed`` says its
    outcome is not recorded.
    """

    events: list[Event] = field(default_factory=list)
    #: Per event: its request's index in ``handed`` (None: never handed over), log fields.
    marks: list[tuple[int | None, dict[str, str]]] = field(default_factory=list)

    def add(self, event: Event, handed_index: int | None, fields: dict[str, str]) -> None:
        self.events.append(event)
        self.marks.append((handed_index, fields))

    def committed(self, handed: list[HandedOver]) -> None:
        """The events are durable now: say so in ``handed`` and the operational log."""
        for event, (index, fields) in zip(self.events, self.marks, strict=True):
            if index is not None:
                handed[index] = handed[index]._replace(recorded=str(event.kind))
            logger.log(
                logging.INFO if event.kind is EventKind.SENT else logging.WARNING,
                "request %s",
                event.kind,
                extra=fields,
            )
        self.events.clear()
        self.marks.clear()


def _held_outcome(case: Case, partner: Partner, standing: Standing) -> RequestOutcome:
    """A batch's outcome for a request the log holds: sent, unconfirmed or in flight."""
    assert standing.last is not None
    event = standing.last.event
    outcome, reason = {
        State.SENT: (Outcome.SKIPPED, ""),
        State.UNCONFIRMED: (Outcome.UNCONFIRMED, "left unconfirmed by an earlier run"),
        State.IN_FLIGHT: (Outcome.IN_FLIGHT, "another run is sending it"),
    }[standing.state]
    if standing.state is State.IN_FLIGHT and standing.abandoned:
        reason = "left in flight by a run that stopped; a real send settles it first"
    return RequestOutcome(
        case_ref=case.case_ref,
        partner=partner.key,
        recipients=partner.addresses,
        outcome=outcome,
        request_ref=event.request_ref,
        reason=reason,
        message_id=event.message_id,
    )


def _describe(partner: Partner, standing: Standing) -> str:
    """One partner's part of a duplicate refusal, in words (no command-line options)."""
    assert standing.last is not None
    event = standing.last.event
    when = f"{standing.last.recorded_at:%Y-%m-%d %H:%M} UTC"
    ref = event.request_ref
    if standing.state is State.SENT:
        return f"{partner.key} was already sent {when} (request {ref})"
    if standing.state is State.UNCONFIRMED:
        return (
            f"{partner.key} is unconfirmed since {when} (request {ref}): it may have been "
            "delivered; check the partner's mailbox, or look it up in sent items, before "
            "sending it again"
        )
    if standing.abandoned:
        return (
            f"{partner.key} was left in flight by a run that stopped (request {ref}); "
            "sending for real settles it first"
        )
    if standing.lease_end is not None:
        return (
            f"{partner.key} is being sent by another run that has no lock (request {ref}, "
            f"last step {when} by {event.operator or 'unknown'}); if that run died, this "
            f"is settled after {standing.lease_end:%H:%M} UTC"
        )
    return (
        f"{partner.key} is being sent by another run that is still running (request {ref}, "
        f"last step {when} by {event.operator or 'unknown'})"
    )


def _duplicate_error(
    case: Case, held: Sequence[tuple[Partner, Standing]], asked: Sequence[Partner]
) -> DuplicateRequestError:
    """One error naming every partner held, with the fields a caller needs to advise."""
    named = {partner.key for partner, _ in held}
    return DuplicateRequestError(
        f"case {case.case_ref} (this referral form): "
        + "; ".join(_describe(partner, standing) for partner, standing in held)
        + ". Nothing of the case was sent",
        case_ref=case.case_ref,
        states={partner.key: str(standing.state) for partner, standing in held},
        earlier={
            partner.key: standing.last.event.request_ref if standing.last else None
            for partner, standing in held
        },
        others=[p.key for p in asked if p.key not in named],
    )


def _refs(handed: Sequence[HandedOver]) -> set[str]:
    return {h.request_ref for h in handed}


def _log_failed(
    exc: LogError,
    case_ref: str,
    handed: Sequence[HandedOver],
    not_sent: Sequence[PreparedRequest],
) -> SendLogError:
    """The error for a log that failed mid-case: what had gone out, and what had not."""
    parts = [f"the dispatch log failed while case {case_ref} was being sent: {exc}"]
    if handed:
        parts.append(
            "handed to the gateway before that: "
            + "; ".join(
                f"{h.partner} {h.request_ref} {h.message_id} "
                + (
                    f"({h.recorded}, recorded in the log)"
                    if h.recorded
                    else "(outcome NOT recorded: it may have been delivered; check the "
                    "partner's mailbox before sending it again)"
                )
                for h in handed
            )
        )
    else:
        parts.append("nothing of the case was handed to the gateway")
    if not_sent:
        parts.append("not sent: " + ", ".join(f"{r.partner.key} {r.request_ref}" for r in not_sent))
    return SendLogError(
        ". ".join(parts),
        case_ref=case_ref,
        handed_over=handed,
        not_sent=[(r.partner.key, r.request_ref) for r in not_sent],
    )


def _log_fields(request: PreparedRequest, outcome: str) -> dict[str, str]:
    """What an operational log line may say of a request: references, partner, outcome."""
    return {
        "case_ref": request.case.case_ref,
        "request_ref": request.request_ref,
        "partner": request.partner.key,
        "outcome": outcome,
    }


def _loggable(text: str) -> str:
    """Text the log can hold: no NULs or other control characters, no lone surrogates.

    Error messages may quote a bad value from a case file or a path read from disk.
    """
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "\ufffd" for ch in text)
