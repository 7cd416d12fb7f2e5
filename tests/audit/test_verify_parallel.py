"""Verifying in several processes gives the sequential walk's result, field for field.

The join is checked in this process (ranges walked here with the workers' own code, split at
every point of tampered logs); then real worker processes are started on small logs.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
from audit_helpers import RawLog, StoreFactory, prepared, sent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import MUTATIONS, events
from test_verify_fast import KEY, _tamper

from mash_requests.audit import Event, EventStore
from mash_requests.audit._parallel import join, split, walk_range
from mash_requests.audit._rows import ChainSource
from mash_requests.audit.verify import (
    Break,
    Checkpoint,
    VerifyResult,
    _Verifier,
    make_checkpoint,
    verify_chain,
)
from mash_requests.errors import LogError


def fill(store: EventStore, n: int) -> None:
    store.append_many([(prepared if i % 2 == 0 else sent)(f"C-{i // 2}") for i in range(n)])


def sequential(store: EventStore, checkpoint: Checkpoint | None = None) -> VerifyResult:
    assert isinstance(store, ChainSource)
    return _Verifier(store, checkpoint, fast=False).run()


def joined_here(
    store: EventStore, bounds: list[int], checkpoint: Checkpoint | None = None
) -> VerifyResult:
    """The parallel result with ranges split at ``bounds``, each walked in this process."""
    assert isinstance(store, ChainSource)
    starts = [0, *bounds]
    ends: list[int | None] = [*bounds, None]
    parts = []
    for span in zip(starts, ends, strict=True):
        part = walk_range(store, checkpoint, span)
        parts.append(part)
        if part.get("assumed") is None or part["broken"]:
            break
    return join(store, checkpoint, parts)


@pytest.mark.parametrize(("head", "parts"), [(0, 2), (1, 4), (10, 3), (1_000_000, 2)])
def test_split_covers_every_seq_once(head: int, parts: int) -> None:
    """The ranges start at 0, follow each other without gap or overlap, and the last is open."""
    ranges = split(head, parts)
    assert ranges[0][0] == 0
    assert ranges[-1][1] is None
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert end == start
    assert len(ranges) == max(1, min(parts, head))


def test_intact_log_split_anywhere_verifies(store: EventStore) -> None:
    """An intact log verifies with the same head and count whatever the split points."""
    fill(store, 7)
    expected = sequential(store)
    for bounds in ([1], [3], [6], [7], [2, 5], [1, 2, 3, 4, 5, 6], [9]):
        assert joined_here(store, bounds) == expected


SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(
    log=st.lists(events, min_size=2, max_size=6),
    mutation=st.sampled_from([*MUTATIONS, "odd_column", "none"]),
    keyed=st.booleans(),
    with_checkpoint=st.booleans(),
    data=st.data(),
)
def test_joined_ranges_give_the_sequential_result(
    store_factory: StoreFactory,
    log: list[Event],
    mutation: str,
    keyed: bool,
    with_checkpoint: bool,
    data: st.DataObject,
) -> None:
    """For any tampering and any split points, joining the ranges gives the sequential
    result, break, count and head included."""
    store = store_factory(hmac_key=KEY if keyed else None)
    try:
        store.append_many(log)
        checkpoint = make_checkpoint(store) if with_checkpoint else None
        n = len(log)
        seq = data.draw(st.integers(1, n), label="seq")
        with RawLog.open(store) as raw:
            _tamper(raw, mutation, seq, n, data)
        bounds = sorted(
            data.draw(st.sets(st.integers(1, n + 1), min_size=1, max_size=3), label="bounds")
        )
        assert joined_here(store, bounds, checkpoint) == sequential(store, checkpoint)
    finally:
        store.close()


# -- real worker processes -------------------------------------------------------------------


def test_workers_verify_an_intact_log(store_factory: StoreFactory) -> None:
    """Two worker processes verify an intact (keyed) log as one process does."""
    store = store_factory(hmac_key=KEY)
    fill(store, 9)
    result = verify_chain(store, workers=2, check_database=False)
    assert result == sequential(store)
    assert (result.ok, result.count) == (True, 9)


@pytest.mark.parametrize("broken_at", [2, 5, 8])
def test_workers_find_the_first_break(store: EventStore, raw: RawLog, broken_at: int) -> None:
    """With three workers, an edit in any range is reported at its event, as one process does."""
    fill(store, 9)
    checkpoint = make_checkpoint(store)
    raw.edit_event(broken_at, "partner", "housing")
    raw.delete(9)
    result = verify_chain(store, workers=3, checkpoint=checkpoint, check_database=False)
    assert result == sequential(store, checkpoint)
    assert (result.broken_seq, result.problem) == (broken_at, Break.CHANGED)


def test_removed_newest_events_are_found_by_workers(store: EventStore, raw: RawLog) -> None:
    """Workers still report events removed after the checkpoint."""
    fill(store, 8)
    checkpoint = make_checkpoint(store)
    raw.delete(8)
    result = verify_chain(store, workers=2, checkpoint=checkpoint, check_database=False)
    assert (result.broken_seq, result.problem) == (8, Break.REMOVED)


def test_worker_that_cannot_start_is_replaced(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If no worker process can be started, the log is verified here, with the same result."""
    fill(store, 6)
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    assert verify_chain(store, workers=2, check_database=False) == sequential(store)


def test_worker_that_cannot_read_the_log_is_an_error(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, backend: str, tmp_path: Path
) -> None:
    """A worker that cannot open the log raises LogError naming it, as this process would."""
    fill(store, 6)
    job = store.worker_job()  # type: ignore[attr-defined]
    if backend == "sqlite":
        job["path"] = str(tmp_path / "gone.sqlite3")
    else:
        job["dsn"] = job["dsn"].replace("dbname=", "dbname=no_such_db_")
    monkeypatch.setattr(type(store), "worker_job", lambda self: job)
    with pytest.raises(LogError, match=r"gone\.sqlite3|no_such_db_"):
        verify_chain(store, workers=2, check_database=False)
