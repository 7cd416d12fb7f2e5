"""Claiming a request: append_many's precondition runs under the write lock, atomically.

Dispatch checks "has this request been sent?" and records "prepared" as one step, so two
processes sending the same request cannot both decide to send it.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable

import pytest
from audit_helpers import claim_worker, location_of, open_store_at, prepared, sent

from mash_requests.audit import Event, EventKind, EventStore
from mash_requests.errors import DuplicateRequestError

KEY = "key-C-1-police"


def _refuse(exc: BaseException) -> Callable[[], None]:
    def precondition() -> None:
        raise exc

    return precondition


# -- last_event_for_key ----------------------------------------------------------------------


def test_last_event_for_key_is_none_for_unknown_key(store: EventStore) -> None:
    """A request key never logged has no last event."""
    store.append(prepared())
    assert store.last_event_for_key("nope") is None


def test_last_event_for_key_is_the_latest_event_of_any_kind(store: EventStore) -> None:
    """The latest event for the key is returned whatever its kind, even a non-outcome."""
    store.append_many(
        [
            prepared(),
            sent(),
            prepared("C-2"),
            Event(EventKind.REJECTED, "C-1", request_key=KEY, reason="duplicate"),
        ]
    )
    last = store.last_event_for_key(KEY)
    assert last is not None
    assert (last.seq, last.event.kind) == (4, EventKind.REJECTED)


# -- precondition ----------------------------------------------------------------------------


def test_precondition_that_returns_lets_the_append_happen(store: EventStore) -> None:
    """A precondition that returns normally is called once and the events are appended."""
    calls: list[int] = []
    stored = store.append_many([prepared(), sent()], precondition=lambda: calls.append(1))
    assert calls == [1]
    assert [s.seq for s in stored] == [1, 2]
    assert [s.seq for s in store.events()] == [1, 2]


def test_precondition_that_raises_appends_nothing(store: EventStore) -> None:
    """When the precondition raises, none of the events is appended."""
    store.append(prepared("C-0"))
    with pytest.raises(DuplicateRequestError):
        store.append_many([prepared(), sent()], precondition=_refuse(DuplicateRequestError("x")))
    assert [s.seq for s in store.events()] == [1]
    assert store.append(sent()).seq == 2


def test_precondition_exception_propagates_unchanged(store: EventStore) -> None:
    """The precondition's own exception object reaches the caller, not a LogError."""
    refusal = DuplicateRequestError("request C-1-police was already sent")
    with pytest.raises(DuplicateRequestError) as caught:
        store.append(prepared(), precondition=_refuse(refusal))
    assert caught.value is refusal


def test_database_error_from_precondition_is_not_translated(
    backend: str, store: EventStore
) -> None:
    """Even a database library's error raised by the precondition propagates as itself."""
    if backend == "sqlite":
        import sqlite3

        error: Exception = sqlite3.OperationalError("the caller's own")
    else:
        import psycopg

        error = psycopg.OperationalError("the caller's own")
    with pytest.raises(type(error)) as caught:
        store.append(prepared(), precondition=_refuse(error))
    assert caught.value is error
    assert list(store.events()) == []


def test_precondition_may_read_the_store(store: EventStore) -> None:
    """Inside the precondition, last_event_for_key, last_outcome and the mailbox's count answer.

    Run in a thread so that a deadlock fails the test instead of hanging it.
    """
    mark = Event(EventKind.HANDING_OVER, "C-1", request_key=KEY, sender="mash@council.gov.uk")
    store.append_many([prepared(), mark, sent()])
    seen: list[object] = []

    def precondition() -> None:
        last = store.last_event_for_key(KEY)
        outcome = store.last_outcome(KEY)
        seen.append((last and last.seq, outcome and outcome.event.kind))
        since = last.recorded_at  # type: ignore[union-attr]
        seen.append(store.count_handed_over_since("mash@council.gov.uk", since, at_most=9))

    worker = threading.Thread(
        target=store.append, args=(prepared("C-2"),), kwargs={"precondition": precondition}
    )
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "append_many deadlocked when its precondition read the store"
    assert seen == [(3, EventKind.SENT), 1]
    assert [s.seq for s in store.events()] == [1, 2, 3, 4]


def test_precondition_sees_events_committed_by_another_writer(
    backend: str, store: EventStore
) -> None:
    """A read in the precondition sees what another connection appended just before."""
    other = open_store_at(backend, location_of(backend, store))
    try:
        store.append(prepared("C-0"))  # this store's connections are open and have read
        other.append(prepared())
        found: list[int | None] = []

        def precondition() -> None:
            last = store.last_event_for_key(KEY)
            found.append(last.seq if last else None)

        store.append(prepared("C-2"), precondition=precondition)
    finally:
        other.close()
    assert found == [2]


def test_precondition_must_not_append(store: EventStore) -> None:
    """A precondition that appends gets RuntimeError (not a deadlock) and nothing is kept."""
    with pytest.raises(RuntimeError, match="must not append"):
        store.append(prepared(), precondition=lambda: store.append(sent()) and None)
    assert list(store.events()) == []


def test_precondition_runs_for_an_empty_batch(store: EventStore) -> None:
    """With no events, a precondition still runs under the lock, and nothing is appended."""
    calls: list[int] = []
    assert store.append_many([], precondition=lambda: calls.append(1)) == []
    assert calls == [1]
    assert list(store.events()) == []


# -- the race --------------------------------------------------------------------------------

ROUNDS = 5
RACERS = 2


def test_two_processes_claiming_one_key_exactly_one_wins(backend: str, store: EventStore) -> None:
    """Two processes claim the same key at the same moment, 5 times: one wins each time.

    The claim is "append prepared if no event for the key exists yet", and the check dawdles
    after finding the key free, so without the store's write lock both would win.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(RACERS)
    results = context.Queue()
    processes = [
        context.Process(
            target=claim_worker,
            args=(backend, location_of(backend, store), worker, ROUNDS, barrier, results),
        )
        for worker in range(RACERS)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in range(ROUNDS * RACERS)]
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * RACERS

    for round_ in range(ROUNDS):
        winners = [worker for r, worker, won in outcomes if r == round_ and won]
        assert len(winners) == 1, f"round {round_}: winners {winners}"
        assert len([e for e in store.events() if e.event.request_key == f"race-{round_}"]) == 1
