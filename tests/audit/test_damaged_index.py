"""The database's own consistency: a damaged index is found by verify and never lets the
send path deliver a second copy.

The attacker (or a disk fault) edits only an index page: the table rows are untouched, so
the hash chain verifies, but an index lookup no longer finds a request's events.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from audit_helpers import RawLog, StoreFactory, damage_sqlite_index, prepared, sent
from click.testing import CliRunner

from mash_requests.audit import EventFilter, EventStore
from mash_requests.audit.sqlite import SQLiteEventStore
from mash_requests.audit.verify import Break, verify_chain
from mash_requests.cli import main
from workspace import Workspace

KEY = b"0123456789abcdef0123456789abcdef"


def _damaged_log(tmp_path: Path) -> Path:
    path = tmp_path / "dispatch-log.sqlite3"
    store = SQLiteEventStore(path)
    store.append_many([prepared("C-1"), sent("C-1"), prepared("C-2"), sent("C-2")])
    store.close()
    changed = damage_sqlite_index(path, "events_request_key", b"key-C-1-police", b"key-C-1-polixe")
    assert changed == 2
    return path


def test_verify_reports_a_damaged_index_as_broken(tmp_path: Path) -> None:
    """Every row still verifies, but verify says BROKEN (database): row missing from index."""
    path = _damaged_log(tmp_path)
    with SQLiteEventStore(path, must_exist=True) as store:
        assert store.last_event_for_key("key-C-1-police") is None  # the damage is real
        result = verify_chain(store)
    assert not result.ok
    assert result.problem is Break.DATABASE
    assert result.count == 4 and result.head_seq == 4
    assert result.database is not None and result.database.ran and not result.database.ok
    assert any("missing from index events_request_key" in f for f in result.database.findings)
    assert "database check FAILED (SQLite PRAGMA integrity_check)" in result.summary()


def test_cli_verify_exits_1_on_a_damaged_index(tmp_path: Path) -> None:
    path = _damaged_log(tmp_path)
    config = tmp_path / "mash-requests.toml"
    config.write_text(
        f'[mash]\nname = "T"\nsender = "mash@t.gov.uk"\n\n[log]\npath = "{path}"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["audit", "verify", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "BROKEN (database)" in result.output
    assert "missing from index events_request_key" in result.output


def test_intact_log_says_the_database_check_ran(store: EventStore) -> None:
    """On an intact log the result says which check ran and that it found nothing."""
    store.append_many([prepared("C-1"), sent("C-1")])
    result = verify_chain(store)
    assert result.ok, result.summary()
    assert result.database is not None and result.database.ran and result.database.ok
    assert result.lines()[-1].startswith("database check ok (")


def test_database_check_can_be_left_out(store: EventStore) -> None:
    store.append(prepared("C-1"))
    assert verify_chain(store, check_database=False).database is None


def test_claim_refuses_when_the_index_lost_the_key(tmp_path: Path) -> None:
    """The store's second lookup, through the case's rows, disagrees with the index."""
    from mash_requests.audit.events import cross_check_keys
    from mash_requests.errors import LogError

    path = _damaged_log(tmp_path)
    with SQLiteEventStore(path) as store:
        last = store.last_event_for_key("key-C-1-police")
        assert last is None
        assert store.last_events_for_keys(["key-C-1-police"]) == {}
        with pytest.raises(LogError, match=r"indexes disagree .* audit verify"):
            cross_check_keys(store, "C-1", {"key-C-1-police": last})
        # An intact key passes.
        intact = store.last_events_for_keys(["key-C-2-police"])
        cross_check_keys(store, "C-2", {"key-C-2-police": intact["key-C-2-police"]})
        assert [s.seq for s in store.events(EventFilter(case_ref="C-2"))] == [3, 4]


@pytest.mark.postgres
def test_postgres_amcheck_is_run(store_factory: StoreFactory, backend: str) -> None:
    """On PostgreSQL the result names amcheck and the indexes it checked."""
    if backend != "postgres":
        pytest.skip("amcheck is PostgreSQL's")
    store = store_factory(hmac_key=KEY)
    store.append_many([prepared("C-1"), sent("C-1")])
    result = verify_chain(store)
    assert result.ok, result.summary()
    assert result.database is not None and result.database.ran
    assert "amcheck" in result.database.method
    assert "indexes" in result.database.method


@pytest.mark.postgres
def test_postgres_amcheck_not_allowed_is_stated(store_factory: StoreFactory, backend: str) -> None:
    """A user who may not run amcheck gets an intact chain and 'database check NOT RUN'."""
    if backend != "postgres":
        pytest.skip("amcheck is PostgreSQL's")
    import psycopg
    from psycopg import conninfo

    from mash_requests.audit.postgres import PostgresEventStore

    store = store_factory()
    store.append_many([prepared("C-1"), sent("C-1")])
    dsn = store._dsn  # type: ignore[attr-defined]
    with RawLog.open(store) as raw:
        ((schema,),) = raw.execute("SELECT current_schema()")
    role = f"auditor_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN".encode())
        admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}".encode())
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}".encode())
    try:
        reader = PostgresEventStore(conninfo.make_conninfo(dsn, user=role), must_exist=True)
        try:
            result = verify_chain(reader)
        finally:
            reader.close()
        assert result.ok, result.summary()
        assert result.database is not None and not result.database.ran
        assert result.lines()[-1].startswith("database check NOT RUN: ")
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}".encode())
            admin.execute(f"DROP ROLE {role}".encode())


def test_send_request_never_sends_again_through_a_damaged_index(workspace: Workspace) -> None:
    """send-request after the request_key index lost a sent request's entries: refused, exit
    non-zero, pointing at audit verify; no second copy reaches the outbox."""
    case = workspace.write_case(workspace.example_case())
    first = CliRunner().invoke(
        main, ["send-request", "--config", str(workspace.config), "--case", str(case)]
    )
    assert first.exit_code == 0, first.output
    assert len(workspace.outbox_files()) == 2
    keys = {e.request_key for e in workspace.events() if e.request_key}
    assert len(keys) == 2
    for key in keys:
        flipped = key[:-1] + ("0" if key[-1] != "0" else "1")
        damage_sqlite_index(
            workspace.log_path, "events_request_key", key.encode(), flipped.encode()
        )
    again = CliRunner().invoke(
        main, ["send-request", "--config", str(workspace.config), "--case", str(case)]
    )
    assert again.exit_code != 0, again.output
    assert "indexes disagree" in again.output
    assert "mash-requests audit verify" in again.output
    assert "Traceback" not in again.output
    assert len(workspace.outbox_files()) == 2
