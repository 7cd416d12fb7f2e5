"""The dispatch-log event: what evidence needs, and nothing more.

An event records one step of one request for information. It holds the case reference,
request reference, partner, recipient addresses, times, gateway ids, the referral form's
fingerprint, the template, the operator and the outcome. It never holds the message body
or the child's details (data minimisation: DPA 2018 / the ICO's data sharing code).

Events are append-only. A store assigns ``seq`` (1, 2, 3 …), ``recorded_at`` (UTC), the
previous event's hash and this event's hash (see :mod:`mash_requests.audit.chain`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from mash_requests.errors import LogError


class EventKind(StrEnum):
    """The closed set of event kinds."""

    #: The request was built and its form accepted; it is about to go to the gateway.
    PREPARED = "prepared"
    #: The message is being handed to the gateway: from here on it may have reached it.
    #: Written (durably) just before the first attempt; a request prepared without one
    #: certainly never reached the gateway.
    HANDING_OVER = "handing_over"
    #: One attempt failed; ``attempt``, ``error_class`` (transient, ambiguous, permanent),
    #: ``server_message`` and ``wait_seconds`` (None: no further try) say what happened.
    ATTEMPT_FAILED = "attempt_failed"
    #: The gateway accepted the message (``gateway_id`` where it gave one).
    SENT = "sent"
    #: The gateway refused it for good, or retries ran out; ``reason`` says why.
    FAILED = "failed"
    #: The gateway may have accepted it and that could not be proved; a person must check.
    UNCONFIRMED = "unconfirmed"
    #: The request was refused before sending (bad form, bad address, duplicate …);
    #: ``reason`` is the machine-readable code, ``detail`` the sentence.
    REJECTED = "rejected"
    #: A later check found the outcome of a request: ``outcome`` in ``details`` is "sent" or
    #: "not_found" (looked up in Sent Items: ``reconcile``, or the next run after one died
    #: while handing it over), or "not_sent" (the run that claimed it died before handing
    #: it over).
    RECONCILED = "reconciled"

    # -- after sending: what came back (``mash-requests replies``) and reminders --------------
    # These follow-up events carry the request's case_ref, request_ref, partner, recipients,
    # sender, message_id and form_sha256, but never the ``request_key`` column (it is in
    # ``details`` instead): the dispatcher reads the last event of a key as its send state.
    # Their ``details`` hold scalars only: ``received_at`` (ISO 8601, UTC), ``from_address``,
    # ``reply_message_id``, ``attachments`` (a count) and ``attachments_sha256`` (the
    # attachments' SHA-256s, comma-separated), ``source`` (folder, imap, graph, ews, or
    # manual) and ``request_key``; never the message's subject or body.

    #: A partner answered the request: an email matched to it from one of the partner's
    #: addresses or domains (``channel`` "email", ``matched_by``), or an answer a person
    #: recorded (``replies record``: ``channel`` phone, email, meeting or system). Stops the
    #: clock.
    REPLIED = "replied"
    #: An automatic reply to a request (RFC 3834 ``Auto-Submitted``, an out-of-office, a
    #: delivery delay notice); ``auto_type`` says which. Never stops the clock.
    AUTO_REPLY = "auto_reply"
    #: A delivery failure report (RFC 3464 delivery-status, an Exchange NDR) for a request:
    #: the partner never got it, a person must act. ``status`` holds the report's status code.
    BOUNCED = "bounced"
    #: A read receipt (RFC 8098 disposition notification) for a request. Not an answer.
    READ_RECEIPT = "read_receipt"
    #: A message in the replies mailbox that is not counted for any request (no reference,
    #: unknown request, or a sender outside the partner's addresses and domains): a person
    #: must look at it. ``reason`` says why; ``claimed_request_ref`` in ``details`` names the
    #: request it seemed to be about, if any. ``case_ref`` is "(unmatched)".
    UNMATCHED = "unmatched"
    #: A step of a reminder for an overdue request (``mash-requests chase``):
    #: ``details["outcome"]`` is handing_over, attempt_failed, sent, failed, unconfirmed,
    #: not_sent or refused. Only outcome "sent" is a reminder sent (what ``overdue`` counts
    #: as chasers). Its ``request_key`` column holds the reminder's own key, never the
    #: request's (see :mod:`mash_requests.replies.chase`).
    CHASED = "chased"


#: The outcome a request ends in, from its last terminal event.
TERMINAL_KINDS = frozenset(
    {EventKind.SENT, EventKind.FAILED, EventKind.UNCONFIRMED, EventKind.REJECTED}
)

#: Kinds recorded for messages read from the replies mailbox, one event per message.
REPLY_KINDS = frozenset(
    {
        EventKind.REPLIED,
        EventKind.AUTO_REPLY,
        EventKind.BOUNCED,
        EventKind.READ_RECEIPT,
        EventKind.UNMATCHED,
    }
)

#: Kinds that come after a request was sent and are not steps of sending it: they never
#: change a request's send outcome.
FOLLOW_UP_KINDS = REPLY_KINDS | {EventKind.CHASED}

JSONScalar = str | int | float | bool | None


@dataclass(frozen=True)
class Event:
    """One step of one request, as the caller records it.

    Every field but ``kind`` and ``case_ref`` is optional because a refusal may happen
    before a request reference or partner exists. ``details`` holds small extra scalars
    (e.g. ``resend_reason``, ``consent``); never personal data.
    """

    kind: EventKind
    case_ref: str
    request_ref: str | None = None
    request_key: str | None = None
    partner: str | None = None
    recipients: tuple[str, ...] = ()
    gateway: str | None = None
    sender: str | None = None
    message_id: str | None = None
    gateway_id: str | None = None
    form_filename: str | None = None
    form_sha256: str | None = None
    form_size: int | None = None
    form_pages: int | None = None
    form_found_in: str | None = None
    template: str | None = None
    template_version: str | None = None
    operator: str | None = None
    reason: str | None = None
    detail: str | None = None
    attempt: int | None = None
    error_class: str | None = None
    server_message: str | None = None
    wait_seconds: float | None = None
    details: Mapping[str, JSONScalar] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The event as plain JSON-able values (kind as its string, recipients as a list)."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        record["kind"] = str(self.kind)
        record["recipients"] = list(self.recipients)
        record["details"] = dict(self.details)
        return record


#: Names of the Event fields, in declaration order (the canonical encoding sorts them anyway).
EVENT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Event))


@dataclass(frozen=True)
class StoredEvent:
    """An event as the log holds it: numbered, timed and chained."""

    seq: int
    recorded_at: datetime
    event: Event
    prev_hash: str
    hash: str


#: The length of a SHA-256 in hex; a shorter ``EventFilter.form_sha256`` is a prefix.
SHA256_HEX_LENGTH = 64


@dataclass(frozen=True)
class EventFilter:
    """Which events to read; every field left as None matches everything."""

    case_ref: str | None = None
    request_ref: str | None = None
    request_key: str | None = None
    partner: str | None = None
    gateway: str | None = None
    kinds: Sequence[EventKind] | None = None
    #: The referral form's SHA-256 (64 lowercase hex digits), or the start of one: events
    #: whose form_sha256 starts with it.
    form_sha256: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: Only events with a ``seq`` greater than this (what is new since an earlier read).
    after_seq: int | None = None
    #: Only events with a ``seq`` up to this (what a verification covered).
    upto_seq: int | None = None


class EventStore(Protocol):
    """Where the dispatch log lives (SQLite, PostgreSQL). Append-only by design."""

    def append(
        self, event: Event, *, precondition: Callable[[], None] | None = None
    ) -> StoredEvent:
        """Durably append one event to the chain and return it as stored (see append_many)."""
        ...

    def append_many(
        self, events: Sequence[Event], *, precondition: Callable[[], None] | None = None
    ) -> list[StoredEvent]:
        """Durably append several events in one transaction, in order.

        ``precondition`` is called once the store holds its write lock (no other writer can
        append until this transaction ends) and before anything is written; if it raises,
        nothing is appended and the exception propagates. It may read the store (e.g.
        ``last_event_for_key``): this is how a request is claimed atomically, so two
        processes cannot both decide to send it.
        """
        ...

    def last_event_for_key(self, request_key: str) -> StoredEvent | None:
        """The latest event of any kind for this request key (committed state)."""
        ...

    def last_events_for_keys(self, request_keys: Sequence[str]) -> dict[str, StoredEvent]:
        """The latest event of each of these request keys that has one (committed state),
        read at once: a case's requests cost one read, not one each. A key without events
        is left out."""
        ...

    def events(self, where: EventFilter | None = None) -> Iterator[StoredEvent]:
        """Stream matching events in ``seq`` order."""
        ...

    def last_outcome(self, request_key: str) -> StoredEvent | None:
        """The latest sent/failed/unconfirmed/reconciled event for this request key.

        The idempotency check: a key whose last outcome is sent, unconfirmed, or reconciled
        as sent must not be sent again without an explicit resend reason.
        """
        ...

    def count_handed_over_since(self, sender: str, since: datetime, *, at_most: int) -> int:
        """How many messages this mailbox handed to its gateway at or after ``since``.

        A message is counted by its hand-over mark, durable before the gateway sees it:
        a request's ``handing_over`` event, or a reminder's ``chased`` step with outcome
        ``handing_over``. Counting stops at ``at_most`` (the caller's limit), so the answer
        costs no more than the limit however busy the mailbox was. Shared by every process
        writing to the log; read inside an append's precondition it is exact (no other
        writer can append meanwhile), which is how the per-mailbox rate limit is kept.
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class KeyCrossCheck(Protocol):
    """A store that can find a key's last event without the ``request_key`` index (both
    built-in stores can): the send path's guard against a damaged index."""

    #: Where the log is, for messages.
    location: str

    def last_seqs_for_keys_in_case(
        self, request_keys: Sequence[str], case_ref: str
    ) -> dict[str, int]:
        """The latest ``seq`` of each of these request keys among the case's rows, found
        through the case's rows and each row's own ``request_key`` (never the request_key
        index). A key without rows is left out."""
        ...


def cross_check_keys(
    store: EventStore, case_ref: str, lasts: Mapping[str, StoredEvent | None]
) -> None:
    """Raise LogError unless each key's ``last`` event (found through the request_key index)
    is also its last event when the case's rows are read another way.

    A damaged index that has lost a key's entries would make a sent request look new and let
    it be sent a second time; SQLite's ``PRAGMA integrity_check`` shows such damage, but reads
    the whole file. This second lookup costs one small indexed read per case (see the README
    for the measured figure). Stores without it are trusted as they are.
    """
    if not isinstance(store, KeyCrossCheck) or not lasts:
        return
    found = store.last_seqs_for_keys_in_case(list(lasts), case_ref)
    for request_key, last in lasts.items():
        expected = last.seq if last is not None else None
        if found.get(request_key) == expected:
            continue

        def said(seq: int | None) -> str:
            return "no event" if seq is None else f"seq {seq}"

        raise LogError(
            f"dispatch log {store.location}: its indexes disagree with its table about request "
            f"key {request_key} (latest event: {said(expected)} through the index, "
            f"{said(found.get(request_key))} through the case's rows), so whether it was sent "
            "cannot be told; nothing was sent. Run `mash-requests audit verify` to check the "
            "database, and restore the log from a backup or rebuild its indexes (SQLite: "
            "REINDEX)"
        )
