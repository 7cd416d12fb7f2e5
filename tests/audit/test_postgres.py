"""What the PostgreSQL store adds: its schema, TRUNCATE guard, and errors without passwords."""

from __future__ import annotations

import os

import pytest
from audit_helpers import RawLog, StoreFactory, prepared

from mash_requests.audit import EventStore
from mash_requests.audit.postgres import SCHEMA_VERSION, PostgresEventStore
from mash_requests.errors import LogError

pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg (postgres extra)")


@pytest.fixture
def backend() -> str:
    """This module's stores are PostgreSQL only."""
    if not os.environ.get("MASH_TEST_POSTGRES_DSN"):
        pytest.skip("PostgreSQL store tests need MASH_TEST_POSTGRES_DSN (see .ci/run)")
    return "postgres"


@pytest.fixture
def pg_store(store: EventStore) -> EventStore:
    return store


def test_schema_version_is_recorded(pg_store: EventStore, raw: RawLog) -> None:
    """The applied migrations are listed in schema_migrations."""
    versions = [row[0] for row in raw.execute("SELECT version FROM schema_migrations")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_truncate_is_refused(pg_store: EventStore, raw: RawLog) -> None:
    """TRUNCATE of events aborts in the database."""
    pg_store.append(prepared())
    with pytest.raises(Exception, match="append-only"):
        raw.execute("TRUNCATE events")
    assert len(list(pg_store.events())) == 1


def test_reopening_finds_the_existing_schema(pg_store: EventStore) -> None:
    """A second store on the same database continues the same chain."""
    first = pg_store.append(prepared())
    with PostgresEventStore(pg_store._dsn) as again:  # type: ignore[attr-defined]
        second = again.append(prepared())
    assert (second.seq, second.prev_hash) == (2, first.hash)


def test_recorded_at_is_the_servers_clock(pg_store: EventStore, raw: RawLog) -> None:
    """recorded_at comes from the database server, one clock for every writer."""
    stored = pg_store.append(prepared())
    ((server_now,),) = raw.execute("SELECT clock_timestamp()")
    assert stored.recorded_at <= server_now
    assert (server_now - stored.recorded_at).total_seconds() < 5


def test_unreachable_server_names_the_database_not_the_password() -> None:
    """A refused connection names host and database, says what to check, hides the password."""
    dsn = "postgresql://mash:hunter2secret@127.0.0.1:1/log?connect_timeout=2"
    with pytest.raises(LogError) as caught:
        PostgresEventStore(dsn)
    message = str(caught.value)
    assert message.startswith("dispatch log postgresql://mash@127.0.0.1:1/log: cannot connect")
    assert "check the server is running" in message
    assert "hunter2secret" not in message


def test_invalid_dsn_is_refused_without_echoing_it() -> None:
    """A DSN that does not parse is refused without repeating it (it may hold a password)."""
    with pytest.raises(LogError, match="not a valid PostgreSQL connection string") as caught:
        PostgresEventStore("host=x password='hunter2secret")
    assert "hunter2secret" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_open_store_opens_postgres(pg_store: EventStore) -> None:
    """open_store with postgres settings returns a working PostgreSQL store."""
    from mash_requests.audit import LogSettings, open_store

    dsn = pg_store._dsn  # type: ignore[attr-defined]
    opened = open_store(LogSettings(backend="postgres", dsn=dsn))
    try:
        assert isinstance(opened, PostgresEventStore)
        assert opened.append(prepared()).seq == 1
    finally:
        opened.close()


def test_wrong_hmac_key_is_refused(store_factory: StoreFactory) -> None:
    """A keyed PostgreSQL log refuses to open with another key."""
    keyed = store_factory(hmac_key=b"k" * 32)
    with pytest.raises(LogError, match="not the key this log was created with"):
        PostgresEventStore(keyed._dsn, hmac_key=b"j" * 32)  # type: ignore[attr-defined]


def test_a_refused_append_leaves_nothing_and_the_connection_ready(pg_store: EventStore) -> None:
    """A precondition that refuses ends the transaction it ran in: nothing is appended, the
    table lock is released, and the next append on the same connection follows the head."""
    first = pg_store.append(prepared())

    def refuse() -> None:
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        pg_store.append(prepared("C-2"), precondition=refuse)
    with PostgresEventStore(pg_store._dsn) as other:  # type: ignore[attr-defined]
        # Another writer is not held by a lock left behind.
        second = other.append(prepared("C-3"))
    third = pg_store.append(prepared("C-4"))
    assert (second.seq, second.prev_hash, third.seq) == (2, first.hash, 3)
    assert [s.event.case_ref for s in pg_store.events()] == ["C-1", "C-3", "C-4"]


def test_an_append_whose_connection_dies_appends_nothing_and_the_next_reconnects(
    pg_store: EventStore, raw: RawLog
) -> None:
    """The server ends the connection in the middle of an append (after its lock, before its
    insert): LogError, nothing of it in the log, and the next append works on a new one."""
    pg_store.append(prepared())
    pid = pg_store._conn.info.backend_pid  # type: ignore[attr-defined]

    def terminate() -> None:
        raw.execute("SELECT pg_terminate_backend(?)", (pid,))

    with pytest.raises(LogError):
        pg_store.append(prepared("C-2"), precondition=terminate)
    again = pg_store.append(prepared("C-3"))
    assert again.seq == 2
    assert [s.event.case_ref for s in pg_store.events()] == ["C-1", "C-3"]
