"""Verified heads: a report verifies only what is newer than the last verification, and says
exactly what it verified now, what earlier, and when; a forged or moved head is not trusted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from audit_helpers import RawLog, StoreFactory, prepared, sent

from mash_requests.audit import EventStore
from mash_requests.audit._rows import head_seal
from mash_requests.audit.chain import Chain
from mash_requests.audit.report import build_report, render_html
from mash_requests.audit.verify import Break, start_verification, verify_chain

KEY = b"0123456789abcdef0123456789abcdef"


def fill(store: EventStore, cases: range) -> None:
    store.append_many([e for i in cases for e in (prepared(f"C-{i}"), sent(f"C-{i}"))])


def resumed(store: EventStore, **options: object) -> object:
    return start_verification(store, resume=True, record=True, **options).result()  # type: ignore[arg-type]


@pytest.fixture
def keyed(store_factory: StoreFactory) -> EventStore:
    return store_factory(hmac_key=KEY)


def test_report_after_verify_verifies_only_newer_events(keyed: EventStore) -> None:
    """verify (recording its head) then 4 new events: the report walks seq 7..10 alone, counts
    all 10, and states both parts with the time of the earlier one."""
    fill(keyed, range(3))
    first = verify_chain(keyed, record=True)
    assert first.ok and first.earlier is None
    fill(keyed, range(3, 5))
    data = build_report(keyed)
    v = data.verification
    assert v.ok, v.summary()
    assert (v.count, v.head_seq, v.verified_from) == (10, 10, 7)
    assert v.earlier is not None and (v.earlier.seq, v.earlier.count) == (6, 6)
    assert v.earlier.keyed
    assert v.coverage_lines()[0] == "verified now: seq 7..10"
    assert v.coverage_lines()[1].startswith("verified earlier: seq 1..6 at ")
    assert "HMAC-keyed" in v.coverage_lines()[1]
    page = render_html(data)
    assert "Verified now: seq 7..10" in page
    assert "Verified earlier: seq 1..6 at " in page
    assert "All 10 events in the log verify" not in page  # it did not read them all now


def test_report_records_its_head_for_the_next(keyed: EventStore) -> None:
    """A second report with nothing new verifies nothing now and says so."""
    fill(keyed, range(2))
    build_report(keyed)
    v = build_report(keyed).verification
    assert v.ok
    assert v.verified_from == 5 and v.earlier is not None and v.earlier.seq == 4
    assert v.coverage_lines()[0] == "verified now: no event after seq 4"


def test_unkeyed_head_is_said_to_be_forgeable(store: EventStore) -> None:
    fill(store, range(2))
    verify_chain(store, record=True)
    v = resumed(store)
    assert v.earlier is not None and not v.earlier.keyed  # type: ignore[attr-defined]
    assert "not keyed" in v.coverage_lines()[1]  # type: ignore[attr-defined]


def test_forged_head_without_the_key_is_not_trusted(keyed: EventStore) -> None:
    """An attacker who rewrote an old event and stored a head past it (sealed with SHA-256,
    lacking the key) gains nothing: the whole log is walked and the edit named, and the
    forged head is reported."""
    fill(keyed, range(3))
    verify_chain(keyed, record=True)
    with RawLog.open(keyed) as raw:
        raw.set_column(2, "partner", "health")
        ((hash_,),) = raw.execute("SELECT hash FROM events WHERE seq = 6")
        at = "2030-01-01T00:00:00.000000Z"
        raw.execute(
            "INSERT INTO verified_heads (seq, event_count, hash, verified_at, seal)"
            " VALUES (?, ?, ?, ?, ?)",
            [6, 6, hash_, at, head_seal(Chain(), 6, 6, hash_, at)],
        )
    v = build_report(keyed).verification
    # The genuine head (from verify) is still used: seq 1..6 were verified earlier, before
    # the edit; the forged newer one is not, and it is named.
    assert not v.ok
    assert v.problem is Break.TABLES
    assert "verified_heads holds 1 row(s) whose seal does not verify" in v.summary()
    assert "BROKEN (log tables)" in render_html(build_report(keyed))
    full = verify_chain(keyed)
    assert (full.broken_seq, full.problem) == (2, Break.CHANGED)


def test_head_whose_row_changed_is_not_resumed_from(keyed: EventStore) -> None:
    """If the event at the stored head no longer has its hash, the walk starts from seq 1 and
    names the change."""
    fill(keyed, range(3))
    verify_chain(keyed, record=True)
    with RawLog.open(keyed) as raw:
        raw.set_column(6, "hash", "f" * 64)
    v = resumed(keyed)
    assert not v.ok  # type: ignore[attr-defined]
    assert v.earlier is None and v.broken_seq == 6  # type: ignore[attr-defined]


def test_removed_tail_below_the_head_is_caught(keyed: EventStore) -> None:
    """Events removed from the end after a verification: the head's row is gone, the walk is
    whole and says the newest events were removed."""
    fill(keyed, range(3))
    verify_chain(keyed, record=True)
    with RawLog.open(keyed) as raw:
        raw.delete(6)
        raw.delete(5)
    v = resumed(keyed)
    assert not v.ok  # type: ignore[attr-defined]
    assert v.problem is Break.REMOVED and v.broken_seq == 5  # type: ignore[attr-defined]


def test_resumed_walk_still_names_rows_outside_the_chain(keyed: EventStore) -> None:
    fill(keyed, range(2))
    verify_chain(keyed, record=True)
    with RawLog.open(keyed) as raw:
        raw.execute(
            "INSERT INTO events (seq, recorded_at, kind, case_ref, prev_hash, hash, record)"
            " SELECT -1, recorded_at, kind, 'FORGED', prev_hash, hash, record FROM events"
            " WHERE seq = 2"
        )
    v = resumed(keyed)
    assert not v.ok and v.problem is Break.OUTSIDE  # type: ignore[attr-defined]


def test_edit_before_the_head_is_left_to_a_full_verify(keyed: EventStore) -> None:
    """The limit, stated in the report: rows before the head are not read again. A full
    verify (what `audit verify` runs) names the edit."""
    fill(keyed, range(3))
    verify_chain(keyed, record=True)
    with RawLog.open(keyed) as raw:
        raw.set_column(2, "partner", "health")
    v = resumed(keyed)
    assert v.ok and "were not read again now" in v.coverage_lines()[1]  # type: ignore[attr-defined]
    assert not verify_chain(keyed).ok


@pytest.mark.parametrize("workers", [None, 1, 2])
def test_resumed_walk_gives_the_same_result_in_workers(
    keyed: EventStore, workers: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In worker processes (one range or several) the resumed result is the same, breaks too."""
    from mash_requests.audit import _parallel

    monkeypatch.setattr(_parallel, "PARALLEL_MIN_EVENTS", 0)
    monkeypatch.setattr(_parallel, "ONE_WORKER_MIN_EVENTS", 0)
    fill(keyed, range(3))
    verify_chain(keyed, record=True)
    fill(keyed, range(3, 8))
    with RawLog.open(keyed) as raw:
        raw.set_column(11, "partner", "health")
    v = start_verification(keyed, resume=True, workers=workers, walk_first_here=False).result()
    assert (v.ok, v.broken_seq, v.problem, v.verified_from) == (False, 11, Break.CHANGED, 7)
    assert v.count == 10
    assert v.coverage_lines()[0] == "verified now: seq 7..10"


def test_reader_of_an_older_log_does_not_migrate_it(keyed: EventStore, backend: str) -> None:
    """An auditor opening a log of schema version 2 reads it as it is (no table is added,
    nothing to resume from); the next sender migrates it and reports resume from then on."""
    from audit_helpers import location_of

    from mash_requests.audit import LogSettings, open_store

    fill(keyed, range(2))
    with RawLog.open(keyed) as raw:
        raw.execute("DROP TABLE verified_heads")
        if backend == "postgres":
            raw.execute("DROP FUNCTION verified_heads_refuse_change()")
        raw.execute("DELETE FROM schema_migrations WHERE version = 3")
    location = location_of(backend, keyed)
    if backend == "sqlite":
        settings = LogSettings(path=keyed.path, hmac_key=KEY)  # type: ignore[attr-defined]
    else:
        settings = LogSettings(backend="postgres", dsn=location, hmac_key=KEY)
    reader = open_store(settings, must_exist=True)
    try:
        assert verify_chain(reader, record=True).ok
        v = build_report(reader).verification
        assert v.ok and v.earlier is None and v.verified_from == 1
    finally:
        reader.close()
    with RawLog.open(keyed) as raw:
        ((versions,),) = raw.execute("SELECT count(*) FROM schema_migrations")
    assert versions == 2
    writer = open_store(settings)
    try:
        verify_chain(writer, record=True)
        v = build_report(writer).verification
        assert v.ok and v.earlier is not None and v.earlier.seq == 4
    finally:
        writer.close()


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "keyed"])
def test_full_verify_honours_the_stored_heads_after_the_tail_was_removed(
    store_factory: StoreFactory, key: bytes | None
) -> None:
    """audit verify walks the whole log, but the log also holds what earlier verifications
    saw: events removed from the end since are named, whichever of verify and the report
    runs first, and verify stores no head that would hide the removal."""
    store = store_factory(hmac_key=key)
    fill(store, range(3))
    verify_chain(store, record=True)
    with RawLog.open(store) as raw:
        raw.delete(6)
        raw.delete(5)
    for _ in range(2):  # the second time: nothing recorded by the first hides it
        v = verify_chain(store, record=True)
        assert not v.ok
        assert (v.problem, v.broken_seq) == (Break.REMOVED, 5)
        assert "recorded seq 6: the newest events were removed" in v.detail
    assert not build_report(store).verification.ok


def test_last_event_rewritten_after_a_verification_is_caught(store: EventStore) -> None:
    """The newest event edited and re-hashed (nothing links to it yet): the chain alone
    cannot tell, the head a verification stored can."""
    fill(store, range(3))
    verify_chain(store, record=True)
    with RawLog.open(store) as raw:
        raw.edit_event(6, "partner", "housing", rehash_with=Chain())
    v = verify_chain(store)
    assert not v.ok
    assert (v.problem, v.broken_seq) == (Break.HASH_MISMATCH, 6)
    assert "log was rewritten up to here" in v.detail
    # What it vouches for stops before the rewritten event.
    assert (v.count, v.head_seq, v.verified_upto()) == (5, 5, 5)


def test_new_events_after_a_verified_head_stay_intact(store: EventStore) -> None:
    """The check against stored heads finds nothing in a log that only grew."""
    fill(store, range(2))
    verify_chain(store, record=True)
    fill(store, range(2, 4))
    assert verify_chain(store, record=True).ok
    assert verify_chain(store).ok


def test_a_head_stored_by_a_verification_running_beside_this_one_is_no_alarm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between this walk's end and its check against the stored heads, a send appends and a
    report in another process stores a head past where this walk ended: that is the log
    growing, not events removed. Only heads stored before the walk began bind it."""
    import mash_requests.audit._parallel as parallel
    from mash_requests.audit.sqlite import SQLiteEventStore

    path = tmp_path / "log.sqlite3"
    store = SQLiteEventStore(path, hmac_key=KEY)
    fill(store, range(1))
    real = parallel.against_stored_heads
    raced: list[bool] = []

    def meanwhile(source: object, walked: object, head: object) -> object:
        if not raced:  # the first check only: the other verification's own runs as it is
            raced.append(True)
            other = SQLiteEventStore(path, hmac_key=KEY)
            try:
                other.append(prepared("C-2"))
                assert verify_chain(other, record=True).ok
            finally:
                other.close()
        return real(source, walked, head)  # type: ignore[arg-type]

    monkeypatch.setattr(parallel, "against_stored_heads", meanwhile)
    result = verify_chain(store, record=True)
    store.close()
    assert result.ok, result.summary()
