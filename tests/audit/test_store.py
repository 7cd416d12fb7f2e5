"""The EventStore contract, on every backend: append, read back, filter, idempotency checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from audit_helpers import prepared, sent

from mash_requests.audit import Event, EventFilter, EventKind, EventStore
from mash_requests.audit.chain import GENESIS_HASH
from mash_requests.errors import LogError


def test_append_returns_numbered_chained_event(store: EventStore) -> None:
    """The first append gets seq 1, the genesis prev_hash and a 64-hex hash."""
    stored = store.append(prepared())
    assert stored.seq == 1
    assert stored.prev_hash == GENESIS_HASH
    assert len(stored.hash) == 64
    assert int(stored.hash, 16) >= 0


def test_appends_link_each_event_to_the_previous_hash(store: EventStore) -> None:
    """Each appended event's prev_hash is the hash of the event before it."""
    first = store.append(prepared())
    second = store.append(sent())
    assert (second.seq, second.prev_hash) == (2, first.hash)


def test_round_trip_keeps_every_field(store: EventStore) -> None:
    """An event read back equals the event appended, every field and detail included."""
    event = Event(
        EventKind.ATTEMPT_FAILED,
        "C-ü/7",
        request_ref="R-1",
        request_key="k",
        partner="health",
        recipients=("a@nhs.net", "b@nhs.net"),
        gateway="graph",
        sender="mash@council.gov.uk",
        message_id="<m@x>",
        gateway_id="AAMk=",
        form_filename="référral.pdf",
        form_sha256="cd" * 32,
        form_size=123_456,
        form_pages=4,
        form_found_in="cases/C-7",
        template="rfi",
        template_version="3",
        operator="op",
        reason="timeout",
        detail="the server did not answer within 30 s",
        attempt=2,
        error_class="transient",
        server_message="451 4.7.0 try later",
        wait_seconds=0.1 + 0.2,
        details={"consent": False, "resend_reason": None, "n": 3, "ratio": 1e-7},
    )
    stored = store.append(event)
    (read,) = store.events()
    assert read == stored
    assert read.event == event


def test_recorded_at_is_utc_now(store: EventStore) -> None:
    """recorded_at is the store's UTC time of the append, to the microsecond."""
    before = datetime.now(UTC)
    stored = store.append(prepared())
    after = datetime.now(UTC)
    assert before <= stored.recorded_at <= after
    assert stored.recorded_at.utcoffset() == timedelta(0)


def test_append_many_appends_in_order_in_one_go(store: EventStore) -> None:
    """append_many numbers the events consecutively in the order given."""
    stored = store.append_many([prepared("C-1"), prepared("C-2"), sent("C-1")])
    assert [s.seq for s in stored] == [1, 2, 3]
    assert [s.event.case_ref for s in store.events()] == ["C-1", "C-2", "C-1"]


def test_append_many_of_nothing_appends_nothing(store: EventStore) -> None:
    """append_many([]) returns [] and leaves the log empty."""
    assert store.append_many([]) == []
    assert list(store.events()) == []


def test_append_many_is_all_or_nothing(store: EventStore) -> None:
    """When one event of a batch cannot be written, none of the batch is."""
    bad = prepared(details={"x": float("nan")})
    with pytest.raises(LogError, match=r"details\['x'\] must be a finite number"):
        store.append_many([prepared(), bad])
    assert list(store.events()) == []
    assert store.append(prepared()).seq == 1


def test_events_of_empty_log_is_empty(store: EventStore) -> None:
    """Reading an empty log yields nothing."""
    assert list(store.events()) == []


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (EventFilter(case_ref="C-2"), [2, 4]),
        (EventFilter(request_ref="C-1-police"), [1, 3]),
        (EventFilter(request_key="key-C-2-police"), [2, 4]),
        (EventFilter(partner="health"), [5]),
        (EventFilter(gateway="graph"), [4]),
        (EventFilter(kinds=[EventKind.SENT]), [3, 4]),
        (EventFilter(kinds=[EventKind.SENT, EventKind.REJECTED]), [3, 4, 5]),
        (EventFilter(kinds=[]), []),
        (EventFilter(form_sha256="ef" * 32), [4]),
        (EventFilter(case_ref="C-2", kinds=[EventKind.SENT]), [4]),
        (EventFilter(case_ref="C-9"), []),
        (EventFilter(), [1, 2, 3, 4, 5]),
    ],
)
def test_filters_select_matching_events(
    store: EventStore, where: EventFilter, expected: list[int]
) -> None:
    """Each filter field selects exactly the events that match it, in seq order."""
    store.append_many(
        [
            prepared("C-1"),
            prepared("C-2"),
            sent("C-1"),
            sent("C-2", gateway="graph", form_sha256="ef" * 32),
            Event(EventKind.REJECTED, "C-3", partner="health", reason="form_missing"),
        ]
    )
    assert [s.seq for s in store.events(where)] == expected


def test_time_filter_is_since_inclusive_until_exclusive(store: EventStore) -> None:
    """since includes an event recorded at that instant; until excludes it."""
    stored = store.append(prepared())
    at = stored.recorded_at
    assert [s.seq for s in store.events(EventFilter(since=at))] == [1]
    assert list(store.events(EventFilter(until=at))) == []
    assert [s.seq for s in store.events(EventFilter(until=at + timedelta(microseconds=1)))] == [1]
    assert list(store.events(EventFilter(since=at + timedelta(microseconds=1)))) == []


def test_time_filter_accepts_any_time_zone(store: EventStore) -> None:
    """A since given in another time zone is compared as the same instant in UTC."""
    stored = store.append(prepared())
    from datetime import timezone

    plus_two = stored.recorded_at.astimezone(timezone(timedelta(hours=2)))
    assert [s.seq for s in store.events(EventFilter(since=plus_two))] == [1]


def test_streams_more_events_than_one_batch(store: EventStore) -> None:
    """events() yields every event of a log larger than its fetch batch, in order."""
    store.append_many([prepared(f"C-{i}") for i in range(2500)])
    seqs = [s.seq for s in store.events()]
    assert seqs == list(range(1, 2501))


def test_append_while_reading_is_allowed(store: EventStore) -> None:
    """An append made while a read is half consumed succeeds and the read goes on."""
    store.append_many([prepared(f"C-{i}") for i in range(3)])
    reading = store.events()
    first = next(reading)
    store.append(sent())
    rest = list(reading)
    assert first.seq == 1
    assert [s.seq for s in rest][:2] == [2, 3]
    assert [s.seq for s in store.events()] == [1, 2, 3, 4]


def test_last_outcome_is_none_for_unknown_key(store: EventStore) -> None:
    """A request key never logged has no last outcome."""
    store.append(prepared())
    assert store.last_outcome("nope") is None


def test_last_outcome_ignores_prepared_attempts_and_rejections(store: EventStore) -> None:
    """prepared, attempt_failed and rejected events are not outcomes."""
    store.append_many(
        [
            prepared(),
            Event(EventKind.ATTEMPT_FAILED, "C-1", request_key="key-C-1-police", attempt=1),
            Event(EventKind.REJECTED, "C-1", request_key="key-C-1-police", reason="dup"),
        ]
    )
    assert store.last_outcome("key-C-1-police") is None


def test_last_outcome_is_the_latest_outcome_of_that_key(store: EventStore) -> None:
    """The latest sent/failed/unconfirmed/reconciled event of the key is returned."""
    store.append_many(
        [
            prepared(),
            Event(EventKind.UNCONFIRMED, "C-1", request_key="key-C-1-police"),
            sent("C-2"),
            Event(
                EventKind.RECONCILED,
                "C-1",
                request_key="key-C-1-police",
                details={"outcome": "sent"},
            ),
            prepared(),
        ]
    )
    outcome = store.last_outcome("key-C-1-police")
    assert outcome is not None
    assert (outcome.seq, outcome.event.kind) == (4, EventKind.RECONCILED)


def _mark(case_ref: str, sender: str = "mash@council.gov.uk") -> Event:
    return Event(EventKind.HANDING_OVER, case_ref, request_key=f"key-{case_ref}", sender=sender)


def _chased(case_ref: str, outcome: str) -> Event:
    return Event(
        EventKind.CHASED,
        case_ref,
        partner="police",
        sender="mash@council.gov.uk",
        details={"outcome": outcome, "reminder": 1},
    )


def test_count_handed_over_since_counts_that_mailboxs_marks(store: EventStore) -> None:
    """Requests' hand-over marks and reminders handed over count; outcomes, other steps and
    other mailboxes do not; the count stops at the limit asked."""
    start = datetime.now(UTC) - timedelta(seconds=1)
    store.append_many(
        [
            _mark("C-1"),
            sent("C-1"),  # the outcome of a request already counted by its mark
            _mark("C-2"),
            _mark("C-3", sender="other@council.gov.uk"),
            prepared("C-4", sender="mash@council.gov.uk"),
            _chased("C-5", "handing_over"),
            _chased("C-5", "sent"),
            _chased("C-6", "skipped"),
        ]
    )
    count = store.count_handed_over_since
    assert count("mash@council.gov.uk", start, at_most=100) == 3
    assert count("other@council.gov.uk", start, at_most=100) == 1
    assert count("mash@council.gov.uk", start, at_most=2) == 2
    assert count("mash@council.gov.uk", start, at_most=1) == 1
    later = datetime.now(UTC) + timedelta(days=1)
    assert count("mash@council.gov.uk", later, at_most=100) == 0


def test_naive_datetime_is_refused(store: EventStore) -> None:
    """A time without a time zone is refused rather than guessed."""
    with pytest.raises(ValueError, match="timezone-aware"):
        store.count_handed_over_since("mash@council.gov.uk", datetime(2026, 1, 1), at_most=30)


def test_unencodable_text_is_refused_with_the_case(store: EventStore) -> None:
    """Text that is not valid Unicode (a surrogate) is refused naming the case."""
    with pytest.raises(LogError, match=r"case 'C-1'.*not valid Unicode"):
        store.append(prepared(form_filename="bad\udcff.pdf"))
    assert list(store.events()) == []


def test_non_scalar_detail_is_refused(store: EventStore) -> None:
    """A details value that is not a JSON scalar is refused naming the key."""
    with pytest.raises(LogError, match=r"details\['who'\] must be a string"):
        store.append(prepared(details={"who": ["a"]}))


def test_two_streams_read_side_by_side(store: EventStore) -> None:
    """Two unfinished reads of the same log advance independently."""
    store.append_many([prepared(f"C-{i}") for i in range(4)])
    one, two = store.events(), store.events()
    assert [next(one).seq, next(two).seq, next(one).seq, next(two).seq] == [1, 1, 2, 2]
    assert [s.seq for s in one] == [3, 4]


def test_abandoned_streams_leave_the_store_usable(store: EventStore) -> None:
    """Many reads stopped halfway neither leak locks nor block appends and later reads."""
    store.append_many([prepared(f"C-{i}") for i in range(3)])
    for _ in range(20):
        reading = store.events()
        next(reading)
        reading.close()
    store.append(sent())
    assert store.last_outcome("key-C-1-police") is not None
    assert len(list(store.events())) == 4


def test_last_events_for_keys_is_last_event_for_key_of_each(store: EventStore) -> None:
    """One read of several keys gives what one read of each gives; keys without events are
    left out; the reads through the case's rows agree."""
    store.append_many(
        [
            prepared("C-1"),
            sent("C-1"),
            prepared("C-2"),
            prepared("C-1", request_key="key-C-1-health", partner="health"),
            sent("C-2"),
            sent("C-2", request_key="key-C-2-other"),
        ]
    )
    keys = ["key-C-1-police", "key-C-1-health", "key-C-2-police", "key-C-2-other", "key-none"]
    found = store.last_events_for_keys(keys)
    expected = {key: store.last_event_for_key(key) for key in keys}
    assert found == {key: last for key, last in expected.items() if last is not None}
    assert [found[k].seq for k in keys[:4]] == [2, 4, 5, 6]
    assert store.last_events_for_keys([]) == {}
    through_case = store.last_seqs_for_keys_in_case(keys, "C-1")  # type: ignore[attr-defined]
    assert through_case == {"key-C-1-police": 2, "key-C-1-health": 4}
