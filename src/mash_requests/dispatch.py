"""The orchestration: preflight every request of a case, then send each, logging every step.

The flow for one case, the same from the CLI, the Python API and a batch:

1. **Preflight** (:meth:`Dispatcher.prepare`), all-or-nothing: partners exist in the directory,
   the referral form is read once and checked (:func:`~mash_requests.referral_form.check_form`),
   every partner's request renders, the message builds, and no request repeats one already
   sent. If anything is wrong, a ``rejected`` event is logged for each partner asked and an
   InputError is raised: *nothing* of the case is sent.
2. **Send** (:meth:`Dispatcher.send`): for each request, a durable ``prepared`` event, the
   per-mailbox rate limit, the gateway with the retry policy (each failed attempt logged),
   then the outcome: ``sent``, ``failed`` or ``unconfirmed``.

A request's *key* is (case reference, contact id, partner, form SHA-256): sending a key whose
last outcome was sent or unconfirmed again needs ``resend_reason``, which is logged. Who may
send a key, and what becomes of one left in flight by a run that died, is
:mod:`mash_requests.claims`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from mash_requests.audit.events import Event, EventKind, EventStore
from mash_requests.case import Case
from mash_requests.claims import Claims, Holder, duplicate_error
from mash_requests.errors import (
    DuplicateRequestError,
    FormRefusedError,
    InputError,
    RecipientError,
    TemplateError,
)
from mash_requests.gateways.base import Gateway, OutgoingMessage
from mash_requests.message import build_message, form_filename
from mash_requests.partners import Partner
from mash_requests.rendering import Renderer

if TYPE_CHECKING:
    from mash_requests.config import Settings
    from mash_requests.referral_form import Verdict
    from mash_requests.retry import AttemptFailure, SendResult


class Outcome(StrEnum):
    """How one request ended."""

    #: The gateway accepted it (outbox: written; SMTP: 250 to DATA; Graph/EWS: sent).
    SENT = "sent"
    #: The gateway refused it, or retries ran out. Nothing was delivered.
    FAILED = "failed"
    #: It may have been delivered and that could not be proved; a person must check
    #: (``mash-requests reconcile`` or the mailbox) before anything is resent.
    UNCONFIRMED = "unconfirmed"
    #: Refused before sending (bad form, partner, template, duplicate). Nothing was sent.
    REJECTED = "rejected"
    #: ``--dry-run``: rendered and checked, deliberately not sent.
    DRY_RUN = "dry_run"
    #: A batch found this request already sent (or unconfirmed) and did not send it again.
    SKIPPED = "already_sent"


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
    #: "sent" (found in Sent Items), "not_found", or "cannot_check" (gateway has no lookup).
    finding: str


class Dispatcher:
    """Prepares and sends requests for information; one per process or batch.

    ``gateway`` and ``store`` default to the ones the settings name, opened lazily; pass
    your own (e.g. a recording gateway) in tests. Close with :meth:`close` or use ``with``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        gateway: Gateway | None = None,
        store: EventStore | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._gateway = gateway
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._renderer: Renderer | None = None
        self._claims: Claims | None = None
        self._verdicts: dict[tuple[str, str, str], Verdict] = {}
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
    def claims(self) -> Claims:
        """Who may send which request, read from (and settled in) the log."""
        if self._claims is None:
            self._claims = Claims(
                self.settings,
                self.store,
                clock=self._clock,
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
            )
        return self._renderer

    def close(self) -> None:
        try:
            if self._gateway is not None:
                self._gateway.close()
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
        """Record a refusal before sending, one event per partner asked (or one without)."""
        targets: list[str | None] = list(partners) or [None]
        detail = _loggable(detail)
        source = _loggable(source) if source else None
        case_ref = _loggable(case_ref)
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
                details={"source": source} if source else {},
            )
            for partner in targets
        ]
        self.store.append_many(events)

    # -- preflight -------------------------------------------------------------------------

    def _partners(self, case: Case, partner_keys: Sequence[str] | None) -> list[Partner]:
        keys = list(dict.fromkeys(partner_keys if partner_keys else case.partners))
        if not keys:
            raise RecipientError(
                f"case {case.case_ref}: no partners to ask; list them in the case file's "
                '"partners" or pass --partner KEY'
            )
        if len(self.settings.directory) == 0 and self.settings.source is None:
            raise RecipientError(
                "no partner directory: no config file was found (looked for --config, "
                "$MASH_REQUESTS_CONFIG and ./mash-requests.toml); pass --config FILE, e.g. "
                "examples/mash-requests.toml"
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
                "file or pass --form PDF"
            )
        data = read_form(path)
        password = password if password is not None else self.settings.form.password
        # A batch may attach the same form to many requests: check each distinct one once.
        cache_key = (hashlib.sha256(data).hexdigest(), case.case_ref, password or "")
        verdict = self._verdicts.get(cache_key)
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
            raise FormRefusedError(
                f"referral form {path}: refused ({verdict.reason}): {verdict.detail}", verdict
            )
        return data, verdict

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
        being resumed), a request already sent is returned as a ``SKIPPED`` outcome instead
        of raising DuplicateRequestError.
        """
        asked = list(partner_keys) if partner_keys else list(case.partners)
        verdict: Verdict | None = None
        try:
            partners = self._partners(case, partner_keys)
            self._check_reply_to(case)
            data, verdict = self._check_form(case, form_path, form_password)
            prepared = [
                self._prepare_one(
                    case, partner, data, verdict, resend_reason, settle=log_rejections
                )
                for partner in partners
            ]
            held = [p for p in prepared if isinstance(p, Holder)]
            if held and not skip_sent:
                raise duplicate_error(case, held, partners)
            result = [_skipped(case, p) if isinstance(p, Holder) else p for p in prepared]
        except FormRefusedError as exc:
            if not log_rejections:
                raise
            self.log_rejection(
                case_ref=case.case_ref,
                partners=asked,
                reason=str(exc.verdict.reason),
                detail=str(exc),
                verdict=exc.verdict,
            )
            raise
        except InputError as exc:
            if not log_rejections:
                raise
            self.log_rejection(
                case_ref=case.case_ref,
                partners=asked,
                reason=_reason_code(exc),
                detail=str(exc),
                verdict=verdict,
            )
            raise
        return result

    def _check_reply_to(self, case: Case) -> None:
        """Replies carry safeguarding detail: they may only go to a secure address."""
        domain = case.worker.email.rsplit("@", 1)[-1].lower()
        sender_domain = self.settings.sender.rsplit("@", 1)[-1].lower()
        if domain != sender_domain and not self.settings.directory.allow_list.allows(domain):
            raise RecipientError(
                f"case {case.case_ref}: worker.email {case.worker.email!r} is neither at the "
                f"MASH's domain ({sender_domain}) nor on the allow-list; partners' replies "
                "would leave secure email. Use the worker's secure address"
            )

    def _prepare_one(
        self,
        case: Case,
        partner: Partner,
        data: bytes,
        verdict: Verdict,
        resend_reason: str | None,
        *,
        settle: bool,
    ) -> PreparedRequest | Holder:
        key = request_key(case, partner.key, verdict.sha256)
        holder = self.claims.holder(partner, key, resend_reason, settle=settle)
        if holder is not None:
            return holder
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
        )
        message = build_message(
            rendered=rendered,
            sender=self.settings.sender,
            recipients=partner.addresses,
            reply_to=case.worker.email,
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
        }
        base.update(fields)
        return Event(**base)  # type: ignore[arg-type]

    def _prepared_event(self, request: PreparedRequest) -> Event:
        details: dict[str, str | int | float | bool | None] = {
            "rag": str(request.case.rag),
            "due": request.due.isoformat(),
            "consent": str(request.case.consent.status),
        }
        if request.resend_reason:
            details["resend_reason"] = request.resend_reason
        return self._event(request, EventKind.PREPARED, details=details)

    def _wait_for_rate_limit(self) -> None:
        """Hold the send until this mailbox has sent fewer than the limit in the last minute.

        The count comes from the shared log, so concurrent processes share the budget.
        """
        if self._gateway_kind() == "outbox":
            return  # a local folder has no sending limit
        limit = self.settings.rate_limit_per_minute
        while True:
            since = self._clock() - timedelta(seconds=60)
            if self.store.count_sent_since(self.settings.sender, since) < limit:
                return
            self._sleep(1.0)

    def send(self, requests: Sequence[PreparedRequest]) -> list[RequestOutcome]:
        """Send prepared requests one by one; every step is in the log before the next."""
        from mash_requests.errors import Failure
        from mash_requests.retry import SendStatus, send_with_retry

        outcomes: list[RequestOutcome] = []
        if not requests:
            return outcomes
        self.gateway  # noqa: B018 - open it now: a gateway that cannot open strands nothing

        # One durable transaction claims every request (as prepared) before the first send.
        try:
            self.claims.claim(
                requests[0].case,
                [(r.partner, r.request_key, r.resend_reason) for r in requests],
                [self._prepared_event(request) for request in requests],
            )
        except DuplicateRequestError as exc:
            self.log_rejection(
                case_ref=requests[0].case.case_ref,
                partners=[r.partner.key for r in requests],
                reason="duplicate",
                detail=str(exc),
                verdict=requests[0].verdict,
            )
            raise
        for request in requests:
            if self._login_refused is not None:
                # The credentials were refused earlier in this run: fail without a login.
                result = dataclasses.replace(self._login_refused, attempts=0)
                self._record_outcome(request, result, outcomes)
                continue
            self._wait_for_rate_limit()

            def log_failure(failure: AttemptFailure, request: PreparedRequest = request) -> None:
                self.store.append(
                    self._event(
                        request,
                        EventKind.ATTEMPT_FAILED,
                        attempt=failure.attempt,
                        error_class=failure.error_class,
                        server_message=failure.server_message,
                        wait_seconds=failure.wait_seconds,
                    )
                )

            result = send_with_retry(
                self.gateway,
                request.message,
                self.settings.retry,
                on_failure=log_failure,
                sleep=self._sleep,
            )
            if result.failure is Failure.AUTHENTICATION and result.status is SendStatus.FAILED:
                self._login_refused = result
            self._record_outcome(request, result, outcomes)
        return outcomes

    def _record_outcome(
        self, request: PreparedRequest, result: SendResult, outcomes: list[RequestOutcome]
    ) -> None:
        """Log how one request ended and add it to ``outcomes``."""
        from mash_requests.retry import SendStatus

        kind = {
            SendStatus.SENT: EventKind.SENT,
            SendStatus.FAILED: EventKind.FAILED,
            SendStatus.UNCONFIRMED: EventKind.UNCONFIRMED,
        }[result.status]
        gateway_id = result.receipt.gateway_id if result.receipt else None
        self.store.append(
            self._event(
                request,
                kind,
                gateway_id=gateway_id,
                reason=None if kind is EventKind.SENT else result.reason,
                error_class=result.error_class,
                server_message=result.server_message or None,
                attempt=result.attempts,
            )
        )
        outcomes.append(
            RequestOutcome(
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

        Outcomes keep the order of the partners asked; with ``skip_sent`` requests already
        sent come back as ``SKIPPED`` (see :meth:`prepare`).
        """
        preflight = self.prepare(
            case,
            partner_keys,
            form_path=form_path,
            form_password=form_password,
            resend_reason=resend_reason,
            log_rejections=not dry_run,
            skip_sent=skip_sent,
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
                for p in prepared
            ]
            return result
        sent = iter(self.send(prepared))
        result.outcomes = [
            next(sent) if isinstance(item, PreparedRequest) else item for item in preflight
        ]
        return result

    def reconcile(self) -> list[ReconcileFinding]:
        """Look every unconfirmed request up in Sent Items and log what is found."""
        from mash_requests.audit.events import EventFilter

        latest: dict[str, Event] = {}
        kinds = [EventKind.SENT, EventKind.FAILED, EventKind.UNCONFIRMED, EventKind.RECONCILED]
        for stored in self.store.events(EventFilter(kinds=kinds)):
            if stored.event.request_ref:
                latest[stored.event.request_ref] = stored.event
        pending = [
            e for e in latest.values()
            if e.kind is EventKind.UNCONFIRMED
            or (e.kind is EventKind.RECONCILED and e.details.get("outcome") != "sent")
        ]  # fmt: skip
        findings: list[ReconcileFinding] = []
        for event in pending:
            assert event.request_ref is not None
            finding = self.claims.look_up(event) or "cannot_check"
            findings.append(ReconcileFinding(event.request_ref, event.partner or "-", finding))
        return findings


def _skipped(case: Case, holder: Holder) -> RequestOutcome:
    """A batch's outcome for a request it found held: already sent, or in flight elsewhere."""
    return RequestOutcome(
        case_ref=case.case_ref,
        partner=holder.partner.key,
        recipients=holder.partner.addresses,
        outcome=Outcome.SKIPPED,
        request_ref=holder.last.event.request_ref,
        reason=holder.state if holder.state == "in_flight" else str(holder.last.event.kind),
        message_id=holder.last.event.message_id,
    )


def _loggable(text: str) -> str:
    """Text the log can hold: no NULs or other control characters, no lone surrogates.

    Error messages may quote a bad value from a case file or a path read from disk.
    """
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "\ufffd" for ch in text)


def _reason_code(exc: InputError) -> str:
    if isinstance(exc, DuplicateRequestError):
        return "duplicate"
    if isinstance(exc, RecipientError):
        return "recipient_refused"
    if isinstance(exc, TemplateError):
        return "template_error"
    return "invalid_input"
