"""The auditors' Python API: raw events and the current state of each request."""

from __future__ import annotations

import pytest
from audit_helpers import prepared, sent

from mash_requests.audit import Event, EventFilter, EventKind, EventStore
from mash_requests.audit.query import query_events, request_states


def attempt_failed(case_ref: str = "C-1", attempt: int = 1) -> Event:
    return Event(
        EventKind.ATTEMPT_FAILED,
        case_ref,
        request_ref=f"{case_ref}-police",
        request_key=f"key-{case_ref}-police",
        attempt=attempt,
        error_class="transient",
        server_message="451 4.7.0 try again later",
    )


def test_query_events_streams_the_filtered_events(store: EventStore) -> None:
    """query_events yields exactly the store's matching events, in seq order."""
    store.append_many([prepared("C-1"), prepared("C-2"), sent("C-1")])
    assert [s.seq for s in query_events(store, EventFilter(case_ref="C-1"))] == [1, 3]


def test_sent_request_state_carries_the_evidence(store: EventStore) -> None:
    """A prepared-then-sent request shows its partner, recipients, times, ids and form hash."""
    p = store.append(prepared())
    s = store.append(sent(gateway_id="250 OK id=1"))
    (state,) = request_states(store)
    assert state.request_ref == "C-1-police"
    assert (state.case_ref, state.partner, state.recipients) == (
        "C-1",
        "police",
        ("mash@police.uk",),
    )
    assert (state.outcome, state.prepared_at, state.sent_at) == (
        "sent",
        p.recorded_at,
        s.recorded_at,
    )
    assert (state.gateway, state.message_id, state.gateway_id) == (
        "smtp",
        "<C-1@council.gov.uk>",
        "250 OK id=1",
    )
    assert state.form_sha256 == "ab" * 32
    assert (state.attempts, state.reason, state.events) == (1, None, 2)


def test_prepared_only_request_is_pending(store: EventStore) -> None:
    """A request with no outcome yet is 'pending'."""
    store.append(prepared())
    (state,) = request_states(store)
    assert (state.outcome, state.sent_at, state.attempts) == ("pending", None, 0)


def test_retries_are_counted(store: EventStore) -> None:
    """Failed attempts before a send count as attempts; the sent event's total wins."""
    store.append_many([prepared(), attempt_failed(attempt=1), attempt_failed(attempt=2)])
    (state,) = request_states(store)
    assert (state.outcome, state.attempts, state.failed_attempts) == ("pending", 2, 2)
    store.append(sent(attempt=3))
    (state,) = request_states(store)
    assert (state.outcome, state.attempts, state.failed_attempts) == ("sent", 3, 2)


def test_failed_request_keeps_its_reason(store: EventStore) -> None:
    """A failed request shows the reason the gateway gave."""
    store.append_many(
        [
            prepared(),
            Event(EventKind.FAILED, "C-1", request_ref="C-1-police", reason="permanent", attempt=1),
        ]
    )
    (state,) = request_states(store)
    assert (state.outcome, state.reason, state.attempts) == ("failed", "permanent", 1)


def test_reconciled_unconfirmed_becomes_sent(store: EventStore) -> None:
    """An unconfirmed request that reconciliation found in Sent Items is sent (reconciled)."""
    store.append_many(
        [
            prepared(),
            Event(EventKind.UNCONFIRMED, "C-1", request_ref="C-1-police", reason="timeout"),
        ]
    )
    assert next(request_states(store)).outcome == "unconfirmed"
    found = store.append(
        Event(EventKind.RECONCILED, "C-1", request_ref="C-1-police", details={"outcome": "sent"})
    )
    (state,) = request_states(store)
    assert (state.outcome, state.reconciled, state.sent_at) == ("sent", True, found.recorded_at)


def test_reconciled_not_found_is_not_found(store: EventStore) -> None:
    """An unconfirmed request that reconciliation did not find is 'not_found'."""
    store.append_many(
        [
            prepared(),
            Event(EventKind.UNCONFIRMED, "C-1", request_ref="C-1-police"),
            Event(
                EventKind.RECONCILED,
                "C-1",
                request_ref="C-1-police",
                details={"outcome": "not_found"},
            ),
        ]
    )
    (state,) = request_states(store)
    assert (state.outcome, state.reconciled, state.sent_at) == ("not_found", True, None)


def test_refusals_are_typed_and_listed_after_the_requests(store: EventStore) -> None:
    """Each refusal made before a request existed is a row of its own, typed "refusal" and
    listed after every request, so it never reads as the latest state of a partner's
    request."""
    store.append_many(
        [
            Event(EventKind.REJECTED, "C-1", partner="police", reason="form_missing"),
            prepared("C-2"),
            Event(EventKind.REJECTED, "C-1", partner="health", reason="form_missing"),
        ]
    )
    states = list(request_states(store))
    assert [(s.record_type, s.request_ref, s.partner, s.outcome) for s in states] == [
        ("request", "C-2-police", "police", "pending"),
        ("refusal", None, "police", "rejected"),
        ("refusal", None, "health", "rejected"),
    ]


def test_a_refusal_after_a_send_leaves_the_request_sent(store: EventStore) -> None:
    """A duplicate refusal logged after a partner's request was sent does not become that
    partner's current state: the request stays one row, sent; the refusal is apart."""
    store.append_many(
        [
            prepared(),
            sent(),
            Event(EventKind.REJECTED, "C-1", partner="police", reason="duplicate"),
        ]
    )
    request, refusal = request_states(store)
    assert (request.record_type, request.outcome) == ("request", "sent")
    assert (refusal.record_type, refusal.reason) == ("refusal", "duplicate")
    assert [s.request_ref for s in request_states(store, outcomes=["sent"])] == ["C-1-police"]


def test_replies_alone_in_the_selection_list_no_request(store: EventStore) -> None:
    """A request whose only selected events are replies (or an unmatched message) is not
    listed as a pending request."""
    store.append_many(
        [
            prepared(),
            sent(),
            Event(EventKind.REPLIED, "C-1", request_ref="C-1-police", partner="police"),
            Event(EventKind.UNMATCHED, "(unmatched)", reason="no_reference"),
        ]
    )
    kinds = (EventKind.REPLIED, EventKind.UNMATCHED)
    assert list(request_states(store, EventFilter(kinds=kinds))) == []


def test_resend_counts_times_sent(store: EventStore) -> None:
    """A request sent, prepared again and resent shows times_sent 2 and the latest send."""
    store.append_many([prepared(), sent()])
    store.append(prepared(details={"resend_reason": "partner asked"}))
    assert next(request_states(store)).outcome == "pending"
    last = store.append(sent())
    (state,) = request_states(store)
    assert (state.outcome, state.times_sent, state.sent_at) == ("sent", 2, last.recorded_at)


def test_states_follow_the_filter_and_first_event_order(store: EventStore) -> None:
    """Only requests with matching events appear, ordered by their first event."""
    store.append_many([prepared("C-2"), prepared("C-1"), sent("C-1"), sent("C-2")])
    refs = [s.request_ref for s in request_states(store)]
    assert refs == ["C-2-police", "C-1-police"]
    only = [s.request_ref for s in request_states(store, EventFilter(case_ref="C-1"))]
    assert only == ["C-1-police"]


def test_states_filtered_by_outcome(store: EventStore) -> None:
    """outcomes= keeps only requests whose latest outcome is listed."""
    store.append_many([prepared("C-1"), sent("C-1"), prepared("C-2")])
    assert [s.case_ref for s in request_states(store, outcomes=["pending"])] == ["C-2"]
    assert [s.case_ref for s in request_states(store, outcomes=["sent", "pending"])] == [
        "C-1",
        "C-2",
    ]


def test_unknown_outcome_is_refused(store: EventStore) -> None:
    """An outcome name that does not exist is a ValueError listing the real ones."""
    with pytest.raises(ValueError, match="unknown outcome 'delivered'"):
        list(request_states(store, outcomes=["delivered"]))
