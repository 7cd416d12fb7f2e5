"""Reading the dispatch log as an auditor: raw events, or the current state of each request.

>>> from mash_requests.audit import EventFilter, open_store
>>> from mash_requests.audit.query import request_states
>>> for state in request_states(store, EventFilter(case_ref="MASH-2026-0412")):
...     print(state.partner, state.outcome, state.form_sha256)

A request's state is folded from its events in ``seq`` order: the latest outcome wins, the
first ``prepared`` gives ``prepared_at``, the latest ``sent`` (or a reconciliation that found
the message in Sent Items) gives ``sent_at``.

One row per request: a request's row is its current state, whatever happened before. A
refusal before any request was built (a ``rejected`` event, which has no request reference)
is not a request and never stands for one: each is a row of its own with ``record_type``
"refusal", listed after every request, so "the last row of a partner" is never a refusal
posing as that partner's request.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from mash_requests.audit.events import (
    FOLLOW_UP_KINDS,
    EventFilter,
    EventKind,
    EventStore,
    StoredEvent,
)

#: The outcomes a request state can have.
#: pending: prepared (perhaps retrying), no outcome yet; not_found: an unconfirmed send that a
#: reconciliation did not find among sent messages (it was not sent); not_sent: a run that
#: died claimed it and never handed it to the gateway, as the next run recorded.
OUTCOMES = ("pending", "sent", "failed", "unconfirmed", "rejected", "not_found", "not_sent")

#: What a row is: a request (its current state), or a refusal before any request was built.
RECORD_TYPES = ("request", "refusal")


@dataclass(slots=True)
class RequestState:
    """Where one request stands, as the log tells it (or one refusal: see ``record_type``)."""

    request_ref: str | None
    case_ref: str
    #: "request", or "refusal": a ``rejected`` event with no request reference, which
    #: refused a case (or some of its partners) before any request was built.
    record_type: str = "request"
    partner: str | None = None
    recipients: tuple[str, ...] = ()
    #: One of :data:`OUTCOMES`.
    outcome: str = "pending"
    prepared_at: datetime | None = None
    sent_at: datetime | None = None
    last_event_at: datetime | None = None
    #: Gateway attempts made (from the outcome event, else attempt_failed events seen).
    attempts: int = 0
    #: attempt_failed events: each one a retry or the last try of a failed send.
    failed_attempts: int = 0
    gateway: str | None = None
    message_id: str | None = None
    gateway_id: str | None = None
    form_sha256: str | None = None
    #: Why it was refused, failed or is unconfirmed (a machine-readable code).
    reason: str | None = None
    #: Whether the outcome came from a reconciliation rather than the send itself.
    reconciled: bool = False
    operator: str | None = None
    request_key: str | None = None
    first_seq: int = 0
    last_seq: int = 0
    events: int = 0
    #: How many sent events (more than one means it was resent).
    times_sent: int = field(default=0)


def query_events(store: EventStore, where: EventFilter | None = None) -> Iterator[StoredEvent]:
    """Matching events in ``seq`` order, streamed (the store's own filter, nothing added).

    Like every reader, only the chain's rows (``seq`` 1..head): rows someone stored with a
    seq of 0 or below are never read; :func:`outside_chain_warning` says when there are any.
    """
    return store.events(where)


def outside_chain_warning(store: EventStore) -> str | None:
    """A sentence for the reader when the events table holds rows outside the chain
    (which no query shows), else None. Costs one index seek."""
    count_rows = getattr(store, "rows_outside_chain", None)
    if count_rows is None:
        return None
    count, _ = count_rows(limit=0)
    if not count:
        return None
    return (
        f"the dispatch log holds {count} row(s) with a seq outside the chain, not written by "
        "mash-requests; they are left out here. Run `mash-requests audit verify` and "
        "investigate"
    )


def request_states(
    store: EventStore, where: EventFilter | None = None, *, outcomes: Iterable[str] = ()
) -> Iterator[RequestState]:
    """The current state of each request with events matching ``where``, then the refusals.

    Requests come in order of their first event, one each; then each refusal before any
    request was built (``record_type`` "refusal"), in log order. ``outcomes`` keeps only
    rows whose outcome is one of them. Memory grows with the number of requests (not
    events) in the selection: narrow ``where`` for very large logs.
    """
    wanted = frozenset(outcomes)
    unknown = wanted - set(OUTCOMES)
    if unknown:
        raise ValueError(f"unknown outcome {sorted(unknown)[0]!r}; use one of {OUTCOMES}")
    states: dict[str, RequestState] = {}
    loose: list[RequestState] = []  # events without a request reference, in order
    for stored in store.events(where):
        ref = stored.event.request_ref
        if ref is None:
            if stored.event.kind in FOLLOW_UP_KINDS:
                continue  # an unmatched reply names no request; not a send step either
            state = RequestState(
                request_ref=None, case_ref=stored.event.case_ref, record_type="refusal"
            )
            fold(state, stored)
            loose.append(state)
            continue
        state = states.get(ref) or states.setdefault(
            ref, RequestState(request_ref=ref, case_ref=stored.event.case_ref)
        )
        fold(state, stored)
    # A request whose only events in the selection are replies or reminders (a period that
    # starts after it was sent) has no send state to show: it is not listed as "pending".
    requests = sorted((s for s in states.values() if s.events), key=lambda s: s.first_seq)
    for state in (*requests, *loose):
        if not wanted or state.outcome in wanted:
            yield state


def fold(state: RequestState, stored: StoredEvent) -> None:
    """Apply one event (the next in seq order) to a request's state."""
    event = stored.event
    if event.kind in FOLLOW_UP_KINDS:
        return  # replies and reminders come after sending; they do not change its outcome
    at = stored.recorded_at
    if state.events == 0:
        state.first_seq = stored.seq
    state.events += 1
    state.last_seq = stored.seq
    state.last_event_at = at
    for name in (
        "partner",
        "gateway",
        "message_id",
        "form_sha256",
        "operator",
        "request_key",
    ):
        value = getattr(event, name)
        if value is not None:
            setattr(state, name, value)
    if event.recipients:
        state.recipients = event.recipients
    if event.gateway_id is not None:
        state.gateway_id = event.gateway_id

    kind = event.kind
    if kind is EventKind.PREPARED:
        if state.prepared_at is None:
            state.prepared_at = at
        state.outcome = "pending"  # a new cycle (a resend) starts over; times_sent remembers
    elif kind is EventKind.HANDING_OVER:
        pass  # still pending: handed to the gateway, no outcome yet
    elif kind is EventKind.ATTEMPT_FAILED:
        state.failed_attempts += 1
        state.attempts = max(state.attempts, event.attempt or state.failed_attempts)
    elif kind is EventKind.RECONCILED:
        finding = event.details.get("outcome")
        found = finding == "sent"
        state.outcome = "sent" if found else "not_sent" if finding == "not_sent" else "not_found"
        state.reconciled = True
        if found and state.sent_at is None:
            state.sent_at = at
        state.reason = None if found else (event.reason or state.outcome)
    else:  # sent, failed, unconfirmed, rejected
        state.outcome = str(kind)
        state.reconciled = False
        if event.attempt is not None:
            state.attempts = max(state.attempts, event.attempt)
        elif kind is not EventKind.REJECTED:
            state.attempts = max(state.attempts, state.failed_attempts + 1)
        if kind is EventKind.SENT:
            state.sent_at = at
            state.times_sent += 1
            state.reason = None
        else:
            state.reason = event.reason


__all__ = [
    "OUTCOMES",
    "RECORD_TYPES",
    "RequestState",
    "fold",
    "outside_chain_warning",
    "query_events",
    "request_states",
]
