"""Several processes appending at once still build one linear, intact chain."""

from __future__ import annotations

import multiprocessing

from audit_helpers import append_worker

from mash_requests.audit import EventStore
from mash_requests.audit.verify import verify_chain

WORKERS = 4
PER_WORKER = 250


def test_four_processes_build_one_intact_chain(backend: str, store: EventStore) -> None:
    """4 processes x 250 appends give 1,000 events, seq 1..1000, one verified chain."""
    location = str(store.path) if backend == "sqlite" else store._dsn  # type: ignore[attr-defined]
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=append_worker, args=(backend, location, worker, PER_WORKER))
        for worker in range(WORKERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0] * WORKERS

    result = verify_chain(store)
    assert result.ok, result.summary()
    assert (result.count, result.head_seq) == (WORKERS * PER_WORKER, WORKERS * PER_WORKER)
    events = list(store.events())
    assert [e.seq for e in events] == list(range(1, WORKERS * PER_WORKER + 1))
    for worker in range(WORKERS):
        mine = [e.event.details["i"] for e in events if e.event.details["worker"] == worker]
        assert mine == list(range(PER_WORKER))  # each process's events in its own order
