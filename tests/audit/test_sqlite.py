"""What the SQLite store adds: the file, its schema, durability and the append-only guard."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from audit_helpers import prepared

from mash_requests.audit.sqlite import SCHEMA_VERSION, SQLiteEventStore
from mash_requests.errors import LogError

KEY = b"k" * 32


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "dispatch-log.sqlite3"


def test_creates_folder_and_file_on_first_use(path: Path) -> None:
    """Opening a log in a folder that does not exist creates both."""
    SQLiteEventStore(path).close()
    assert path.is_file()


def test_uses_wal_and_full_sync(path: Path) -> None:
    """The store's connection runs in WAL mode with synchronous = FULL."""
    with SQLiteEventStore(path) as store:
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_schema_version_is_recorded(path: Path) -> None:
    """The applied migrations are listed in schema_migrations."""
    SQLiteEventStore(path).close()
    with sqlite3.connect(path) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_reopening_keeps_events_and_chain(path: Path) -> None:
    """Events appended before a close are there after reopening, and the chain continues."""
    with SQLiteEventStore(path) as store:
        first = store.append(prepared())
    with SQLiteEventStore(path) as store:
        second = store.append(prepared())
        assert [s.seq for s in store.events()] == [1, 2]
    assert second.prev_hash == first.hash


def test_newer_schema_is_refused(path: Path) -> None:
    """A log written by a newer version is refused with advice to upgrade."""
    SQLiteEventStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?, 'future', '2030-01-01T00:00:00.000000Z')",
            (SCHEMA_VERSION + 1,),
        )
    with pytest.raises(LogError, match=r"newer than this mash-requests knows.*upgrade"):
        SQLiteEventStore(path)


def test_not_a_database_names_the_file(path: Path) -> None:
    """A file that is not SQLite gives a LogError naming it and what to do."""
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LogError, match=rf"dispatch log {path}: .*restore it from backup"):
        SQLiteEventStore(path)


def test_unwritable_folder_names_the_folder(tmp_path: Path) -> None:
    """A log path under a regular file fails naming the folder."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(LogError, match="cannot create folder"):
        SQLiteEventStore(tmp_path / "file" / "log.sqlite3")


def test_keyed_log_without_key_is_refused(path: Path) -> None:
    """A log created with an HMAC key cannot be opened without it."""
    SQLiteEventStore(path, hmac_key=KEY).close()
    with pytest.raises(LogError, match=r"is keyed.*hmac_key"):
        SQLiteEventStore(path)


def test_unkeyed_log_with_key_is_refused(path: Path) -> None:
    """A log created without a key is not silently continued with one."""
    SQLiteEventStore(path).close()
    with pytest.raises(LogError, match="created without an HMAC key"):
        SQLiteEventStore(path, hmac_key=KEY)


def test_keyed_log_downgraded_in_its_metadata_is_never_advised_to_drop_the_key(
    path: Path,
) -> None:
    """An attacker marks a keyed log as plain SHA-256 (to rewrite it without the key). The
    refusal must not tell the operator to remove the key, which would let the rewritten log
    verify: it names tampering as one reading and says to keep the key."""
    SQLiteEventStore(path, hmac_key=KEY).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER log_meta_no_update")
        conn.execute("UPDATE log_meta SET value = 'sha256' WHERE key = 'hash_algorithm'")
    with pytest.raises(LogError) as caught:
        SQLiteEventStore(path, hmac_key=KEY)
    message = str(caught.value)
    assert "tampering: keep the key" in message
    assert "remove it" not in message


def test_wrong_key_is_refused(path: Path) -> None:
    """A different HMAC key from the log's own is refused at open."""
    SQLiteEventStore(path, hmac_key=KEY).close()
    with pytest.raises(LogError, match="not the key this log was created with"):
        SQLiteEventStore(path, hmac_key=b"j" * 32)


def test_busy_log_gives_advice(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An append that cannot get the write lock in time says another process holds it."""
    monkeypatch.setattr("mash_requests.audit.sqlite.BUSY_TIMEOUT_SECONDS", 0.05)
    with SQLiteEventStore(path) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(LogError, match="another process held the log"):
                store.append(prepared())
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
