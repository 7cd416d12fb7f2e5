"""Rows put around the log: verify names every one; query and report never count them.

The attacker here can write the database (SQLite: the file, triggers dropped; PostgreSQL: a
superuser with ``session_replication_role = replica``, so no trigger fires) and inserts a
forged ``sent`` row where the chain walk would not look: seq 0, -5, or a duplicate of a
real seq once the primary key is gone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from audit_helpers import RawLog, StoreFactory, canonical, prepared, sent

from mash_requests.audit import EventFilter, EventKind, EventStore
from mash_requests.audit._rows import INDEXED_FIELDS
from mash_requests.audit.chain import Chain
from mash_requests.audit.query import query_events, request_states
from mash_requests.audit.report import build_report, render_html
from mash_requests.audit.verify import Break, verify_chain

KEY = b"0123456789abcdef0123456789abcdef"


@contextmanager
def attacker(raw: RawLog) -> Iterator[None]:
    """Every guard of the database off, as the attacker turns them off."""
    if raw.backend == "sqlite":
        with raw.unguarded():
            yield
        return
    raw.execute("SET session_replication_role = replica")
    try:
        yield
    finally:
        raw.execute("SET session_replication_role = origin")


def forge_sent(raw: RawLog, seq: int, case_ref: str, chain: Chain | None = None) -> None:
    """Insert a well-formed ``sent`` row at ``seq`` for a case that was never sent."""
    ((text, prev_hash, recorded),) = raw.execute(
        "SELECT record, prev_hash, recorded_at FROM events WHERE seq = 2"
    )
    document: dict[str, Any] = json.loads(text)
    document["seq"] = seq
    document["event"]["case_ref"] = case_ref
    document["event"]["request_ref"] = f"{case_ref}-police"
    record = canonical(document)
    hash_ = (chain or Chain()).digest(record.encode())
    columns = ("seq", "recorded_at", "prev_hash", "hash", "record", *INDEXED_FIELDS)
    values = [seq, recorded, prev_hash, hash_, record]
    values += [document["event"].get(name) for name in INDEXED_FIELDS]
    with attacker(raw):
        raw.execute(
            f"INSERT INTO events ({', '.join(columns)})"  # noqa: S608
            f" VALUES ({', '.join('?' * len(columns))})",
            values,
        )


@pytest.fixture
def keyed(store_factory: StoreFactory) -> Iterator[tuple[EventStore, RawLog]]:
    store = store_factory(hmac_key=KEY)
    store.append_many([prepared("C-1"), sent("C-1"), prepared("C-2"), sent("C-2")])
    with RawLog.open(store) as raw:
        yield store, raw


@pytest.mark.parametrize("seq", [0, -5])
def test_forged_row_below_the_chain_is_named_by_verify(
    keyed: tuple[EventStore, RawLog], seq: int
) -> None:
    """A forged sent row at seq 0 or -5 makes verify say BROKEN and name the row's seq."""
    store, raw = keyed
    forge_sent(raw, seq, "FORGED-1", Chain(KEY))
    result = verify_chain(store)
    assert not result.ok
    assert (result.problem, result.broken_seq) == (Break.OUTSIDE, seq)
    assert (result.outside_count, result.outside_seqs) == (1, (seq,))
    assert f"seq {seq})" in result.summary()
    assert "outside the chain 1..4" in result.summary()


def test_forged_rows_are_all_counted_with_a_checkpoint_too(
    keyed: tuple[EventStore, RawLog],
) -> None:
    """Several forged rows are counted and listed; a checkpoint does not hide them."""
    from mash_requests.audit.verify import make_checkpoint

    store, raw = keyed
    checkpoint = make_checkpoint(store)
    for seq in (-5, -1, 0):
        forge_sent(raw, seq, f"FORGED{seq}", Chain(KEY))
    result = verify_chain(store, checkpoint=checkpoint)
    assert not result.ok
    assert result.outside_count == 3
    assert result.outside_seqs == (-5, -1, 0)


@pytest.mark.parametrize("workers", [1, 2])
def test_forged_row_after_the_head_breaks_the_chain_there(
    keyed: tuple[EventStore, RawLog], workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forged row at head+1 of a keyed log is the first break, at head+1, however many
    processes walk the log."""
    from mash_requests.audit import _parallel

    monkeypatch.setattr(_parallel, "PARALLEL_MIN_EVENTS", 0)
    store, raw = keyed
    forge_sent(raw, 5, "FORGED-1")  # the attacker has no key: a SHA-256 hash
    result = verify_chain(store, workers=workers)
    assert (result.ok, result.broken_seq, result.problem) == (False, 5, Break.CHANGED)
    assert result.head_seq == 4


def test_query_and_states_leave_rows_outside_the_chain_out(
    keyed: tuple[EventStore, RawLog],
) -> None:
    """audit query's events and request states never show a row outside 1..head."""
    store, raw = keyed
    forge_sent(raw, 0, "FORGED-0", Chain(KEY))
    forge_sent(raw, -5, "FORGED-5", Chain(KEY))
    seqs = [stored.seq for stored in query_events(store)]
    assert seqs == [1, 2, 3, 4]
    assert not list(query_events(store, EventFilter(case_ref="FORGED-0")))
    assert {state.case_ref for state in request_states(store)} == {"C-1", "C-2"}
    assert store.last_event_for_key("key-FORGED-0-police") is None


def test_report_counts_only_what_verifies(keyed: tuple[EventStore, RawLog]) -> None:
    """The report neither counts a forged row outside the chain nor one after the last event
    that verifies, and says BROKEN."""
    store, raw = keyed
    forge_sent(raw, 0, "FORGED-0", Chain(KEY))
    forge_sent(raw, 5, "FORGED-5")
    data = build_report(store)
    assert data.totals.sent == 2
    assert not data.verification.ok
    assert data.verification.head_seq == 4
    assert data.verification.outside_count == 1
    page = render_html(data)
    assert "BROKEN at event 5" in page
    assert "FORGED" not in page


def test_duplicate_seq_is_named(keyed: tuple[EventStore, RawLog]) -> None:
    """With the primary key dropped, a second row with an existing seq is 'stored twice'."""
    store, raw = keyed
    if raw.backend == "sqlite":
        pytest.skip("SQLite's seq is the rowid: it cannot be stored twice")
    raw.execute("ALTER TABLE events DROP CONSTRAINT events_pkey")
    forge_sent(raw, 3, "FORGED-3", Chain(KEY))
    result = verify_chain(store)
    assert (result.ok, result.broken_seq, result.problem) == (False, 3, Break.REORDERED)
    assert "stored twice" in result.detail


def test_null_seq_is_named(keyed: tuple[EventStore, RawLog]) -> None:
    """PostgreSQL: a row whose seq is NULL (the key dropped) is outside the chain too."""
    store, raw = keyed
    if raw.backend == "sqlite":
        pytest.skip("SQLite's seq is the rowid: never NULL")
    raw.execute("ALTER TABLE events DROP CONSTRAINT events_pkey")
    raw.execute("ALTER TABLE events ALTER COLUMN seq DROP NOT NULL")
    raw.execute(
        "INSERT INTO events (recorded_at, kind, case_ref, prev_hash, hash, record)"
        " SELECT recorded_at, kind, 'FORGED', prev_hash, hash, record FROM events WHERE seq = 2"
    )
    result = verify_chain(store)
    assert (result.ok, result.problem, result.outside_seqs) == (False, Break.OUTSIDE, (None,))
    assert "seq NULL" in result.summary()


def test_rows_in_metadata_tables_are_named(keyed: tuple[EventStore, RawLog]) -> None:
    """A row added to log_meta or schema_migrations is reported: verify covers every table."""
    store, raw = keyed
    with attacker(raw):
        raw.execute("INSERT INTO log_meta (key, value) VALUES ('backdoor', 'x')")
        raw.execute(
            "INSERT INTO schema_migrations (version, description, applied_at)"
            " VALUES (99, 'forged', '2026-01-01T00:00:00Z')"
        )
    result = verify_chain(store)
    assert (result.ok, result.problem) == (False, Break.TABLES)
    assert "'backdoor'" in result.summary()
    assert "99]" in result.summary()


def test_intact_log_has_nothing_outside(keyed: tuple[EventStore, RawLog]) -> None:
    store, _ = keyed
    result = verify_chain(store)
    assert result.ok
    assert (result.outside_count, result.table_problems) == (0, ())
    assert [s.event.kind for s in query_events(store)][-1] is EventKind.SENT


def test_cli_query_warns_about_rows_outside_the_chain(
    keyed: tuple[EventStore, RawLog], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`audit query` leaves the forged row out and says on stderr that the table holds it."""
    from audit_helpers import log_section
    from click.testing import CliRunner

    from mash_requests.cli import main

    store, raw = keyed
    forge_sent(raw, -5, "FORGED-5", Chain(KEY))
    backend = raw.backend
    config = tmp_path / "mash-requests.toml"
    config.write_text(
        f'[mash]\nname = "Testbury MASH"\nsender = "mash@testbury.gov.uk"\n'
        f'data_dir = "data"\n\n{log_section(backend, store, monkeypatch)}',
        encoding="utf-8",
    )
    monkeypatch.setenv("MASH_TEST_HMAC_KEY", KEY.decode())
    with config.open("a", encoding="utf-8") as f:
        f.write('hmac_key_env = "MASH_TEST_HMAC_KEY"\n')
    result = CliRunner().invoke(
        main, ["audit", "query", "--events", "--format", "jsonl", "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert "FORGED" not in result.stdout
    assert "1 row(s) with a seq outside the chain" in result.stderr
    verified = CliRunner().invoke(main, ["audit", "verify", "--config", str(config)])
    assert verified.exit_code == 1
    assert "seq -5" in verified.stdout


def _forge_prepared(raw: RawLog, seq: int | None, case_ref: str) -> None:
    """A copy of the ``prepared`` row 1, stored for ``case_ref`` at ``seq`` (None: the
    PostgreSQL primary key dropped and seq NULL, what probe pg/outside_null does)."""
    if seq is None:
        raw.execute("ALTER TABLE events DROP CONSTRAINT IF EXISTS events_pkey")
        raw.execute("ALTER TABLE events ALTER COLUMN seq DROP NOT NULL")
    with attacker(raw):
        raw.execute(
            "INSERT INTO events (seq, recorded_at, kind, case_ref, request_ref, request_key,"
            " partner, prev_hash, hash, record) SELECT ?, recorded_at, kind, ?, ?, ?, partner,"
            " prev_hash, hash, record FROM events WHERE seq = 1",
            [seq, case_ref, f"{case_ref}-police", f"key-{case_ref}-police"],
        )


def test_open_requests_leave_rows_outside_the_chain_out(
    keyed: tuple[EventStore, RawLog],
) -> None:
    """The overdue read (open_request_events) neither crashes on a NULL seq nor returns a row
    outside 1..head; its head is the chain's."""
    from mash_requests.replies.tracking import TRACKED_KINDS, OpenRequestSource

    store, raw = keyed
    forge_sent(raw, 0, "FORGED-0", Chain(KEY))
    _forge_prepared(raw, -5, "FORGED-5")
    if raw.backend == "postgres":
        _forge_prepared(raw, None, "FORGED-N")
    assert isinstance(store, OpenRequestSource)
    head, _, events = store.open_request_events([str(kind) for kind in TRACKED_KINDS])
    assert head == 4
    assert [stored.seq for stored in events] == [1, 2, 3, 4]


def test_overdue_warns_once_about_rows_outside_the_chain(
    keyed: tuple[EventStore, RawLog],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """overdue() reads the log without the forged rows and logs one warning that counts them
    and names `audit verify` (so the command says it on stderr)."""
    import logging

    from audit_helpers import log_section

    from mash_requests.config import load_settings
    from mash_requests.replies.overdue import overdue

    store, raw = keyed
    _forge_prepared(raw, -5, "FORGED-5")
    expected = 1
    if raw.backend == "postgres":
        _forge_prepared(raw, None, "FORGED-N")
        expected = 2
    config = tmp_path / "mash-requests.toml"
    monkeypatch.setenv("MASH_TEST_HMAC_KEY", KEY.decode())
    config.write_text(
        f'[mash]\nname = "Testbury MASH"\nsender = "mash@testbury.gov.uk"\n'
        f'data_dir = "data"\n\n{log_section(raw.backend, store, monkeypatch)}'
        'hmac_key_env = "MASH_TEST_HMAC_KEY"\n',
        encoding="utf-8",
    )
    settings = load_settings(config)
    with caplog.at_level(logging.WARNING, logger="mash_requests"):
        assert overdue(settings, store=store, use_cache=False) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"{expected} row(s) with a seq outside the chain" in warnings[0]
    assert "mash-requests audit verify" in warnings[0]
