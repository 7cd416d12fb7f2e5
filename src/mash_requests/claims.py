"""Claims on requests, and their settlement: who may send a request, and what became of it.

A request's *key* is (case reference, contact id, partner, form SHA-256). What the dispatch
log says of a key decides what a run may do with it:

- ``new`` or ``retryable`` (its last outcome was failed, or not found in Sent Items): the
  run may claim it;
- ``sent`` (sent, unconfirmed, or found in Sent Items): only with a resend reason;
- ``in_flight`` (prepared, no outcome yet): it belongs to the run that claimed it.

A run *claims* the requests of a case by appending their ``prepared`` events in one
transaction whose precondition re-reads every key under the log's write lock, so two runs
can never both decide to send one request. A request left in flight by a run that died is
*settled* once that run's lease has expired: looked up in Sent Items where the gateway can,
else recorded ``unconfirmed``.

Everything here reads and writes the log; the gateway is used only to look in Sent Items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from mash_requests.audit.events import Event, EventKind, EventStore, StoredEvent
from mash_requests.errors import DuplicateRequestError

if TYPE_CHECKING:
    from mash_requests.case import Case
    from mash_requests.config import Settings
    from mash_requests.gateways.base import Gateway
    from mash_requests.partners import Partner


#: The fields that identify a request, copied from its earlier events onto later ones.
REQUEST_FIELDS = (
    "case_ref", "request_ref", "request_key", "partner", "recipients", "sender", "message_id",
    "form_filename", "form_sha256", "form_size", "form_pages", "form_found_in", "template",
    "template_version",
)  # fmt: skip


@dataclass(frozen=True)
class Holder:
    """A partner whose request the log shows as sent, or being sent by another run."""

    partner: Partner
    state: str
    last: StoredEvent
    lease_end: datetime

    def describe(self) -> str:
        event = self.last.event
        when = f"{self.last.recorded_at:%Y-%m-%d %H:%M} UTC"
        if self.state == "in_flight":
            return (
                f"{self.partner.key} is being sent by another run (prepared {when} by "
                f"{event.operator or 'unknown'}; if that run died, this is settled after "
                f"{self.lease_end:%H:%M} UTC)"
            )
        return f"{self.partner.key} was already {event.kind} {when} (request {event.request_ref})"


class Claims:
    """Reads what the log says of request keys, claims them, and settles interrupted ones.

    ``gateway`` and ``gateway_kind`` are called only when needed (a Sent Items lookup, the
    name written into events), so a dispatcher can open its gateway lazily.
    """

    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        *,
        clock: Callable[[], datetime],
        gateway: Callable[[], Gateway],
        gateway_kind: Callable[[], str],
    ) -> None:
        self.settings = settings
        self.store = store
        self._clock = clock
        self._gateway = gateway
        self._gateway_kind = gateway_kind

    # -- what the log says ------------------------------------------------------------------

    def prior(self, key: str) -> tuple[str, StoredEvent | None]:
        """What the log says of a request key: new, sent, in_flight or retryable.

        ``sent`` covers sent, unconfirmed and reconciled-as-sent: none may go again without
        a resend reason. ``in_flight`` is prepared (or mid-retry) with no outcome yet.
        """
        stored = self.store.last_event_for_key(key)
        if stored is None:
            return "new", None
        if stored.event.kind in (EventKind.PREPARED, EventKind.ATTEMPT_FAILED):
            return "in_flight", stored
        if counts_as_sent(stored.event):
            return "sent", stored
        return "retryable", stored

    def holder(
        self, partner: Partner, key: str, resend_reason: str | None, *, settle: bool
    ) -> Holder | None:
        """Who holds this partner's request, if anyone: None means it may be claimed.

        With ``settle``, a request left in flight by a run whose lease has expired is
        settled first (see :meth:`settle_interrupted`).
        """
        state, last = self.prior(key)
        if state == "in_flight" and settle and last is not None and self.lease_expired(last):
            self.settle_interrupted(last.event)
            state, last = self.prior(key)
        if last is not None and (state == "in_flight" or (state == "sent" and not resend_reason)):
            return Holder(partner, state, last, self.lease_end(last))
        return None

    def lease_end(self, stored: StoredEvent) -> datetime:
        """Until when a request in flight belongs to the run that prepared it."""
        return stored.recorded_at + timedelta(seconds=self.settings.retry.max_seconds + 120)

    def lease_expired(self, stored: StoredEvent) -> bool:
        return self._clock() >= self.lease_end(stored)

    # -- claiming ---------------------------------------------------------------------------

    def claim(
        self,
        case: Case,
        keys: Sequence[tuple[Partner, str, str | None]],
        prepared: Sequence[Event],
    ) -> None:
        """Append ``prepared`` in one durable transaction if no key is held meanwhile.

        ``keys`` holds (partner, request key, resend reason) per request. Runs the check
        under the log's write lock: no other run can claim these keys at the same moment.
        Raises DuplicateRequestError (nothing appended) naming every key held.
        """

        def precondition() -> None:
            held = []
            for partner, key, resend_reason in keys:
                state, last = self.prior(key)
                if last is not None and (
                    state == "in_flight" or (state == "sent" and not resend_reason)
                ):
                    held.append(Holder(partner, state, last, self.lease_end(last)))
            if held:
                raise duplicate_error(case, held, [partner for partner, _, _ in keys])

        self.store.append_many(list(prepared), precondition=precondition)

    # -- settling ---------------------------------------------------------------------------

    def settle_interrupted(self, last: Event) -> None:
        """Decide a request left in flight by a run that died: prepared, never an outcome.

        Called only once the run's lease has expired, so a run still sending is never
        second-guessed. The gateway may have taken the message before the run died. Where
        the gateway can look in Sent Items (and is the one the request went through), look
        and record what is there; otherwise record ``unconfirmed``, so the request is never
        resent without a person deciding.
        """
        if self.look_up(last, detail="interrupted request looked up in sent items"):
            return
        fields = {f: getattr(last, f) for f in REQUEST_FIELDS}
        self.store.append(
            Event(
                kind=EventKind.UNCONFIRMED,
                gateway=last.gateway,
                operator=self.settings.operator,
                reason="interrupted",
                detail="the previous run stopped while sending this request and the gateway "
                "cannot look in sent items; check the mailbox before resending",
                **fields,
            )
        )

    def look_up(self, event: Event, *, detail: str | None = None) -> str | None:
        """Look a request up in Sent Items and log a ``reconciled`` event with the finding.

        Returns "sent" or "not_found", or None (nothing logged) when the configured gateway
        cannot look, or is not the mailbox the request went through.
        """
        from mash_requests.gateways.base import SentItemsLookup

        gateway = self._gateway()
        if not (
            isinstance(gateway, SentItemsLookup) and event.message_id and self.same_mailbox(event)
        ):
            return None
        receipt = gateway.find_sent(event.message_id)
        finding = "sent" if receipt else "not_found"
        self.store.append(
            Event(
                kind=EventKind.RECONCILED,
                gateway=event.gateway,
                gateway_id=receipt.gateway_id if receipt else None,
                operator=self.settings.operator,
                detail=detail,
                details={"outcome": finding},
                **{f: getattr(event, f) for f in REQUEST_FIELDS},
            )
        )
        return finding

    def same_mailbox(self, event: Event) -> bool:
        """Whether the configured gateway is the one the request went through.

        Looking for a message in a different system's Sent Items proves nothing: after a
        gateway switch, a request may only be settled by a person.
        """
        return event.gateway == self._gateway_kind() and event.sender == self.settings.sender


def counts_as_sent(event: Event) -> bool:
    """Whether this outcome means the request may not go again without a resend reason."""
    if event.kind in (EventKind.SENT, EventKind.UNCONFIRMED):
        return True
    return event.kind is EventKind.RECONCILED and event.details.get("outcome") == "sent"


def duplicate_error(
    case: Case, held: Sequence[Holder], asked: Sequence[Partner]
) -> DuplicateRequestError:
    """One error naming every duplicate, and the way to ask only the others."""
    named = {h.partner.key for h in held}
    others = [p.key for p in asked if p.key not in named]
    advice = (
        f"to ask only the others use {' '.join(f'--partner {k}' for k in others)}; "
        if others
        else ""
    )
    return DuplicateRequestError(
        f"case {case.case_ref} (this referral form): "
        + "; ".join(h.describe() for h in held)
        + f". Nothing was sent: {advice}to send again what was sent, add --resend --reason TEXT"
    )
