"""The dispatch log in one SQLite file: the default store, for one office or one server.

Durability and order, whatever number of processes write:

- WAL journal and ``synchronous = FULL``: a returned ``append`` has reached the disk.
- Each append runs under ``BEGIN IMMEDIATE`` (the database's single write lock) and reads
  the chain's head *inside* that transaction, so concurrent writers queue up and the chain
  stays one line. Writers wait up to :data:`BUSY_TIMEOUT_SECONDS` for the lock. A caller's
  ``precondition`` runs while that lock is held, so a check and the append it guards are one
  atomic step for every process sharing the file.
- Triggers make the database itself refuse ``UPDATE`` and ``DELETE`` of events. Someone with
  the file can still drop them; the hash chain (and checkpoints kept elsewhere) shows that.
- The schema is versioned in ``schema_migrations``; each migration is recorded in the same
  transaction as the change.

Reads use their own connections (committed state only), so a half-read result never holds
up an append and no reader sees another thread's unfinished append; the one exception is a
read made by a ``precondition``, which runs inside the append's transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from mash_requests.audit import _open_requests
from mash_requests.audit._rows import (
    BATCH_SIZE,
    HEADS_VERSION,
    INDEXED_FIELDS,
    MAX_FINDINGS,
    OUTCOME_KINDS,
    VERIFY_BATCH_SIZE,
    ChainRow,
    DatabaseCheck,
    ReaderPool,
    SmallTablesReader,
    check_meta,
    foreign_tables,
    head_seal,
    indexed_values,
    stored_event,
)
from mash_requests.audit.chain import GENESIS_HASH, RECORD_VERSION, Chain, format_time
from mash_requests.audit.events import SHA256_HEX_LENGTH, Event, EventFilter, StoredEvent
from mash_requests.errors import ConfigError, LogError

#: How long a writer waits for another process's append before giving up.
BUSY_TIMEOUT_SECONDS = 30.0
#: A writer that finds the log locked tries again this soon, doubling up to _RETRY_MAX.
#: SQLite's own busy handler sleeps 1, 2, 5, 10 … 100 ms between tries, so with several
#: processes appending (send-batch --workers) the log stood idle most of the time a writer
#: waited: an append holds the lock for about a millisecond.
_RETRY_FIRST = 0.0001
_RETRY_MAX = 0.002

_APPEND_ONLY = "dispatch log events are append-only"

#: (version, description, statements). Append new migrations; never edit a released one.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "events table, append-only triggers, filter indexes, log metadata",
        (
            """
            CREATE TABLE log_meta (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE events (
                seq INTEGER PRIMARY KEY,
                recorded_at TEXT NOT NULL,
                kind TEXT NOT NULL,
                case_ref TEXT NOT NULL,
                request_ref TEXT,
                request_key TEXT,
                partner TEXT,
                gateway TEXT,
                sender TEXT,
                form_sha256 TEXT,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL,
                record TEXT NOT NULL
            )
            """,
            # An index entry ends with the rowid (= seq), so each of these also streams in order.
            "CREATE INDEX events_case_ref ON events (case_ref)",
            "CREATE INDEX events_request_ref ON events (request_ref)",
            "CREATE INDEX events_request_key ON events (request_key)",
            "CREATE INDEX events_partner ON events (partner)",
            "CREATE INDEX events_gateway ON events (gateway)",
            "CREATE INDEX events_kind ON events (kind)",
            "CREATE INDEX events_form_sha256 ON events (form_sha256)",
            "CREATE INDEX events_recorded_at ON events (recorded_at)",
            "CREATE INDEX events_sender ON events (sender, kind, recorded_at)",
            f"""
            CREATE TRIGGER events_no_update BEFORE UPDATE ON events
            BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END
            """,
            f"""
            CREATE TRIGGER events_no_delete BEFORE DELETE ON events
            BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END
            """,
            """
            CREATE TRIGGER log_meta_no_update BEFORE UPDATE ON log_meta
            BEGIN SELECT RAISE(ABORT, 'dispatch log metadata is write-once'); END
            """,
            """
            CREATE TRIGGER log_meta_no_delete BEFORE DELETE ON log_meta
            BEGIN SELECT RAISE(ABORT, 'dispatch log metadata is write-once'); END
            """,
        ),
    ),
    # For ``overdue`` on a large log (see mash_requests.audit._open_requests).
    (2, _open_requests.MIGRATION_DESCRIPTION, (_open_requests.SQLITE_INDEX,)),
    (
        3,
        "verified heads: where a later verification may start",
        (
            """
            CREATE TABLE verified_heads (
                id INTEGER PRIMARY KEY,
                seq INTEGER NOT NULL,
                event_count INTEGER NOT NULL,
                hash TEXT NOT NULL,
                verified_at TEXT NOT NULL,
                seal TEXT NOT NULL
            )
            """,
            """
            CREATE TRIGGER verified_heads_no_update BEFORE UPDATE ON verified_heads
            BEGIN SELECT RAISE(ABORT, 'dispatch log verified heads are append-only'); END
            """,
            """
            CREATE TRIGGER verified_heads_no_delete BEFORE DELETE ON verified_heads
            BEGIN SELECT RAISE(ABORT, 'dispatch log verified heads are append-only'); END
            """,
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]

_COLUMNS = "seq, recorded_at, prev_hash, hash, record, " + ", ".join(INDEXED_FIELDS)


# SQL here is built only from the constant column names above; every value is a parameter.
#: Hand-over marks from one mailbox since a time, each part stopping at a limit: requests'
#: ``handing_over`` events, and reminders' ``chased`` steps whose outcome is ``handing_over``.
_COUNT_HANDED_OVER = """
    SELECT
      (SELECT count(*) FROM (SELECT 1 FROM events INDEXED BY events_sender
         WHERE sender = ?1 AND kind = 'handing_over' AND recorded_at >= ?2 AND seq > 0 LIMIT ?3))
    + (SELECT count(*) FROM (SELECT 1 FROM events INDEXED BY events_sender
         WHERE sender = ?1 AND kind = 'chased' AND recorded_at >= ?2 AND seq > 0
         AND json_extract(record, '$.event.details.outcome') = 'handing_over' LIMIT ?3))
"""
_INSERT = (
    f"INSERT INTO events ({_COLUMNS}) "  # noqa: S608
    f"VALUES ({', '.join('?' * (5 + len(INDEXED_FIELDS)))})"
)

#: The schema version that added verified_heads.

#: The largest seq SQLite can store: "no upper bound" for a range of rows.
_MAX_SEQ = 2**63 - 1

# For the verifier's fast path: SQLite parses each record once (in C) and compares what it
# says with the columns. Both sides are rendered as JSON (the record's values as written, the
# columns by json_array), so a type change (5 for "5") is a difference, as it is in Python.
# A record that is not JSON text gives 0 without raising; a BLOB column makes json_array
# raise, and the verifier then reads on without the fast path.
_RECORD_PATHS = ", ".join(
    ["'$.v'", "'$.seq'", "'$.prev_hash'", "'$.recorded_at'"]
    + [f"'$.event.{name}'" for name in INDEXED_FIELDS]
)
_AGREES = (
    "CASE WHEN typeof(record) = 'text' AND json_valid(record)"
    " THEN json_type(record, '$.event') = 'object'"
    f" AND json_extract(record, {_RECORD_PATHS})"
    f" = json_array({RECORD_VERSION}, seq, prev_hash, recorded_at, {', '.join(INDEXED_FIELDS)})"
    " ELSE 0 END"
)
_CHAIN_BATCHES = (
    f"SELECT seq, CAST(record AS BLOB), hash, prev_hash, {_AGREES} FROM events"  # noqa: S608
    " WHERE seq > ? AND seq <= ? ORDER BY seq"
)


class SQLiteEventStore(SmallTablesReader):
    """An :class:`~mash_requests.audit.events.EventStore` in a SQLite file.

    Opening creates the folder, the file and the schema when they do not exist yet; with
    ``must_exist`` (readers) it creates nothing and raises ConfigError instead. Safe to share
    between threads; open one per process.
    """

    GUARDS = (
        (1, "events_no_update"),
        (1, "events_no_delete"),
        (1, "log_meta_no_update"),
        (1, "log_meta_no_delete"),
        (HEADS_VERSION, "verified_heads_no_update"),
        (HEADS_VERSION, "verified_heads_no_delete"),
    )
    # SQLite cannot disable a trigger, only drop it.
    TRIGGERS_QUERY = "SELECT name, 1 FROM sqlite_master WHERE type = 'trigger'"

    def __init__(
        self, path: Path, *, hmac_key: bytes | None = None, must_exist: bool = False
    ) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.chain = Chain(hmac_key)
        self._hmac_key = hmac_key
        self._lock = threading.Lock()
        # The thread inside append_many's locked section, if any: its precondition's reads go
        # to the writing connection (no second lock, no deadlock) and it may not append again.
        self._writer: int | None = None
        if must_exist:
            # For readers (auditors): a missing log must not be created and reported as an
            # intact log of 0 events.
            if not self.path.is_file():
                raise self._missing()
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LogError(
                    f"dispatch log {self.path}: cannot create folder {self.path.parent}: "
                    f"{exc.strerror}; check [log] path and the folder's permissions"
                ) from exc
        self._readers = ReaderPool(self._open_reader, lambda conn: True, sqlite3.Connection.close)
        self._conn = self._connect(must_exist=must_exist)
        try:
            self._prepare(migrate=not must_exist)
        except BaseException:
            self._conn.close()
            raise

    def _missing(self) -> ConfigError:
        return ConfigError(
            f"no dispatch log at {self.path}; check [log] path in the config (or [mash] "
            "data_dir, where the log is when path is not set)"
        )

    # -- connection and schema -------------------------------------------------------------

    def _connect(self, *, must_exist: bool = False) -> sqlite3.Connection:
        with self._translate("open"):
            conn = sqlite3.connect(
                # mode=rw: open an existing file only, never create one.
                f"{self.path.resolve().as_uri()}?mode=rw" if must_exist else self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,
                uri=must_exist,
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
                # Before anything is written: a log never shares its file with another
                # application's tables, and never adds its own to them.
                self._refuse_foreign(conn)
                if must_exist and not _has_events_table(conn):
                    # Checked before switching to WAL, which would write to the file.
                    raise self._missing()
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise LogError(
                        f"dispatch log {self.path}: cannot switch to WAL journal mode "
                        f"(got {mode!r}); put the log on a local disk, not a network share"
                    )
                conn.execute("PRAGMA synchronous = FULL")
            except BaseException:
                conn.close()
                raise
        return conn

    def _refuse_foreign(self, conn: sqlite3.Connection) -> None:
        names = [
            str(row[0])
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
                " AND name NOT LIKE 'sqlite^_%' ESCAPE '^'"
            )
        ]
        foreign = foreign_tables(names)
        if foreign:
            shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
            raise ConfigError(
                f"[log] path {self.path} is not a dispatch log: the file holds tables that are "
                f"not the log's ({shown}), so it belongs to another application; point "
                "[log] path at a file of its own (nothing was added to this one)"
            )

    def _prepare(self, *, migrate: bool) -> None:
        # Readers (must_exist) never migrate: an auditor's read-only access must be enough.
        # A log of an older schema is read as it is (no verified heads before version 2)
        # until a sender opens it.
        with self._translate("create the schema of"):
            if migrate and self._schema_version() < SCHEMA_VERSION:
                self._migrate()
            self._check_meta()
            self._version = self._schema_version()

    def _schema_version(self) -> int:
        exists = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if not exists:
            return 0
        version = self._conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        return int(version or 0)

    def _migrate(self) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
                " applied_at TEXT NOT NULL)"
            )
            # Another process may have migrated while we waited for the lock: read again.
            current = self._schema_version()
            for version, description, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    conn.execute(statement)
                if version == 1:
                    conn.executemany(
                        "INSERT INTO log_meta (key, value) VALUES (?, ?)",
                        [
                            ("hash_algorithm", self.chain.algorithm),
                            ("key_check", self.chain.key_check),
                            ("created_at", format_time(datetime.now(UTC))),
                        ],
                    )
                conn.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at)"
                    " VALUES (?, ?, ?)",
                    (version, description, format_time(datetime.now(UTC))),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _check_meta(self) -> None:
        version = self._schema_version()
        if version > SCHEMA_VERSION:
            raise LogError(
                f"dispatch log {self.path} has schema version {version}, newer than this "
                f"mash-requests knows ({SCHEMA_VERSION}); upgrade mash-requests to use it"
            )
        meta = dict(self._conn.execute("SELECT key, value FROM log_meta").fetchall())
        check_meta(self.location, self.chain, meta)

    # -- writing -----------------------------------------------------------------------------

    def append(
        self, event: Event, *, precondition: Callable[[], None] | None = None
    ) -> StoredEvent:
        """Durably append one event to the chain and return it as stored (see append_many)."""
        return self.append_many([event], precondition=precondition)[0]

    def append_many(
        self, events: Sequence[Event], *, precondition: Callable[[], None] | None = None
    ) -> list[StoredEvent]:
        """Durably append several events in one transaction, in order.

        ``precondition`` runs after ``BEGIN IMMEDIATE`` (no other process or thread can
        append until this transaction ends) and before anything is written. It may call this
        store's read methods, which then see every committed event. If it raises, nothing is
        appended and its exception propagates unchanged (it is the caller's, not a LogError).
        It must not append: that raises RuntimeError.
        """
        if not events and precondition is None:
            return []
        me = threading.get_ident()
        if self._writer == me:
            raise RuntimeError("a precondition of append_many must not append to the log")
        conn = self._conn
        errors = self._translate("append to")
        with self._lock, errors:
            self._writer = me
            try:
                self._begin(conn)
                try:
                    if precondition is not None:
                        try:
                            precondition()
                        except BaseException as exc:
                            errors.passthrough = exc
                            raise
                    stored = self._insert(conn, events)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                self._writer = None
        return stored

    def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, retried briskly while another process holds the write lock."""
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        wait = _RETRY_FIRST
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    # The primary code: BUSY_RECOVERY, BUSY_SNAPSHOT … are worth a retry too.
                    if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                        raise
                    if time.monotonic() >= deadline:
                        raise
                time.sleep(wait)
                wait = min(wait * 2, _RETRY_MAX)
        finally:
            # Inside the transaction (and for everything else) SQLite's own handler again.
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")

    def _insert(self, conn: sqlite3.Connection, events: Sequence[Event]) -> list[StoredEvent]:
        """Chain and insert ``events`` after the head; the caller holds the write lock."""
        head = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev_hash = (int(head[0]), str(head[1])) if head else (0, GENESIS_HASH)
        now = datetime.now(UTC)
        stored: list[StoredEvent] = []
        for event in events:
            seq += 1
            record, hash_ = self.chain.seal(
                seq=seq, recorded_at=now, prev_hash=prev_hash, event=event
            )
            conn.execute(
                _INSERT,
                (seq, format_time(now), prev_hash, hash_, record, *indexed_values(event)),
            )
            stored.append(StoredEvent(seq, now, event, prev_hash, hash_))
            prev_hash = hash_
        return stored

    # -- reading -----------------------------------------------------------------------------

    def events(self, where: EventFilter | None = None) -> Iterator[StoredEvent]:
        """Stream matching events in ``seq`` order (``since`` inclusive, ``until`` exclusive)."""
        clause, params = _where(where or EventFilter())
        sql = f"SELECT seq, hash, record FROM events{clause} ORDER BY seq"  # noqa: S608
        for seq, hash_, record in self._stream(sql, params):
            yield stored_event(seq, hash_, record, location=self.location)

    def any_event_since(self, kinds: Sequence[str], since: datetime | None) -> bool:
        """Whether the log holds an event of ``kinds`` recorded at or after ``since``.

        One probe per kind down the ``kind`` index from the newest row, stopping at the first
        match: nothing to sort, and the answer is usually the newest row of its kind.
        """
        sql = "SELECT 1 FROM events INDEXED BY events_kind WHERE kind = ? AND +seq > 0"
        bound: list[object] = []
        if since is not None:
            sql += " AND recorded_at >= ?"
            bound.append(format_time(since))
        sql += " ORDER BY seq DESC LIMIT 1"
        return any(self._fetch_one(sql, (str(kind), *bound)) for kind in kinds)

    def events_of_refs(
        self,
        refs: Collection[str],
        kinds: Sequence[str],
        *,
        since: datetime,
        upto_seq: int | None = None,
    ) -> Iterator[StoredEvent]:
        """The events of ``kinds`` for these request references recorded at or after
        ``since`` (and up to ``upto_seq``), in ``seq`` order: a few index lookups per
        reference, however long the log after ``since``."""
        if not refs or not kinds:
            return
        marks = ", ".join("?" * len(kinds))
        sql = (
            "SELECT seq, hash, record FROM events INDEXED BY events_request_ref"  # noqa: S608
            " WHERE request_ref IN (SELECT value FROM json_each(?))"
            f" AND kind IN ({marks}) AND recorded_at >= ? AND +seq > 0 AND +seq <= ?"
            " ORDER BY seq"
        )
        upto = _MAX_SEQ if upto_seq is None else upto_seq
        params = [json.dumps(sorted(refs)), *kinds, format_time(since), upto]
        for seq, hash_, record in self._stream(sql, params):
            yield stored_event(seq, hash_, record, location=self.location)

    #: :meth:`chain_batches` rows carry SQLite's own comparison of record and columns.
    columns_checked_in_database = True

    def chain_rows(self, after_seq: int = 0, upto_seq: int | None = None) -> Iterator[ChainRow]:
        """Every stored row with ``after_seq < seq <= upto_seq``, in ``seq`` order, as stored."""
        sql = f"SELECT {_COLUMNS} FROM events WHERE seq > ? AND seq <= ? ORDER BY seq"  # noqa: S608
        upto = _MAX_SEQ if upto_seq is None else upto_seq
        for row in self._stream(sql, [after_seq, upto]):
            yield ChainRow(
                seq=row[0],
                recorded_at=row[1],
                prev_hash=row[2],
                hash=row[3],
                record=row[4],
                columns=tuple(row[5:]),
            )

    def chain_batches(
        self, after_seq: int = 0, upto_seq: int | None = None
    ) -> Iterator[list[tuple[Any, ...]]]:
        """``(seq, record bytes, hash, prev_hash, agrees)`` in batches (see ChainSource)."""
        upto = _MAX_SEQ if upto_seq is None else upto_seq
        return self._stream_batches(_CHAIN_BATCHES, [after_seq, upto], VERIFY_BATCH_SIZE)

    def worker_job(self) -> dict[str, Any]:
        """How a verification worker process opens this log (never printed: holds the key)."""
        key = self._hmac_key
        return {
            "backend": "sqlite",
            "path": str(self.path.resolve()),
            "hmac_key": key.hex() if key is not None else None,
        }

    def head_seq(self) -> int:
        """The highest ``seq`` stored (0 for an empty log)."""
        row = self._fetch_one("SELECT max(seq) FROM events", ())
        return max(0, int(row[0])) if row and row[0] is not None else 0

    def rows_outside_chain(self, limit: int = 10) -> tuple[int, tuple[int | None, ...]]:
        """How many rows have a ``seq`` that is no chain position (0 or below), and the
        first ``limit`` of those seqs. The store never writes one; someone went around it."""
        row = self._fetch_one("SELECT count(*) FROM events WHERE seq < 1", ())
        count = int(row[0]) if row else 0
        if not count or limit <= 0:
            return count, ()
        seqs = [
            r[0]
            for r in self._stream(
                "SELECT seq FROM events WHERE seq < 1 ORDER BY seq LIMIT ?", [limit]
            )
        ]
        return count, tuple(seqs)

    def database_check(self) -> DatabaseCheck:
        """``PRAGMA integrity_check``: every table against its indexes, every page (reads the
        whole file: about 30 s for 1,000,000 events on a busy 2-core machine)."""
        with self._translate("check"):
            conn = self._readers.take()
            try:
                rows = conn.execute(f"PRAGMA integrity_check({MAX_FINDINGS})").fetchall()
            finally:
                self._readers.give(conn)
        findings = tuple(str(row[0]) for row in rows)
        ok = findings == ("ok",)
        return DatabaseCheck(
            ran=True,
            ok=ok,
            method="SQLite PRAGMA integrity_check",
            findings=() if ok else findings,
        )

    def record_verified_head(self, seq: int, count: int, hash_: str) -> None:
        """Store a sealed verified head (its own short transaction, apart from appends); a
        log of an older schema opened by a reader has nowhere to keep one."""
        if self._version < HEADS_VERSION:
            return
        at = format_time(datetime.now(UTC))
        seal = head_seal(self.chain, seq, count, hash_, at)
        conn = self._conn
        with self._lock, self._translate("record a verified head in"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO verified_heads (seq, event_count, hash, verified_at, seal)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (seq, count, hash_, at, seal),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def last_event_for_key(self, request_key: str) -> StoredEvent | None:
        """The latest event of any kind for this request key (committed state)."""
        row = self._fetch_one(
            "SELECT seq, hash, record FROM events WHERE request_key = ? AND seq > 0"
            " ORDER BY seq DESC LIMIT 1",
            (request_key,),
        )
        return None if row is None else stored_event(*row, location=self.location)

    def last_events_for_keys(self, request_keys: Sequence[str]) -> dict[str, StoredEvent]:
        """The latest event of each of these request keys that has one, in one read."""
        if not request_keys:
            return {}
        marks = ", ".join("?" * len(request_keys))
        # SQLite takes the bare columns of an aggregate query from the row holding max().
        rows = self._fetch_all(
            f"SELECT request_key, max(seq), hash, record FROM events"  # noqa: S608
            f" WHERE request_key IN ({marks}) AND seq > 0 GROUP BY request_key",
            tuple(request_keys),
        )
        return {
            str(key): stored_event(seq, hash_, record, location=self.location)
            for key, seq, hash_, record in rows
        }

    def last_seqs_for_keys_in_case(
        self, request_keys: Sequence[str], case_ref: str
    ) -> dict[str, int]:
        """The latest ``seq`` of each key among the case's rows, read without the request_key
        index (see :func:`~mash_requests.audit.events.cross_check_keys`)."""
        if not request_keys:
            return {}
        marks = ", ".join("?" * len(request_keys))
        rows = self._fetch_all(
            f"SELECT +request_key, max(seq) FROM events INDEXED BY events_case_ref"  # noqa: S608
            f" WHERE case_ref = ? AND +request_key IN ({marks}) AND seq > 0 GROUP BY +request_key",
            (case_ref, *request_keys),
        )
        return {str(key): int(seq) for key, seq in rows}

    def last_outcome(self, request_key: str) -> StoredEvent | None:
        """The latest sent/failed/unconfirmed/reconciled event for this request key."""
        marks = ", ".join("?" * len(OUTCOME_KINDS))
        row = self._fetch_one(
            f"SELECT seq, hash, record FROM events WHERE request_key = ? AND seq > 0"  # noqa: S608
            f" AND kind IN ({marks}) ORDER BY seq DESC LIMIT 1",
            (request_key, *OUTCOME_KINDS),
        )
        return None if row is None else stored_event(*row, location=self.location)

    def count_handed_over_since(self, sender: str, since: datetime, *, at_most: int) -> int:
        """How many messages this mailbox handed to its gateway at or after ``since``.

        Counted up to ``at_most`` (see EventStore); each part walks the ``events_sender``
        index, which holds ``seq`` too, and only a reminder's record is read.
        """
        row = self._fetch_one(_COUNT_HANDED_OVER, (sender, format_time(since), at_most))
        assert row is not None
        return min(int(row[0]), at_most)

    def _fetch_one(self, sql: str, params: Sequence[object]) -> tuple[Any, ...] | None:
        """The row of a query that has at most one (an aggregate, or LIMIT 1)."""
        rows = self._fetch_all(sql, params)
        return rows[0] if rows else None

    def _fetch_all(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        with self._translate("read"):
            if self._writer == threading.get_ident():
                # A precondition, inside the append's transaction: this thread holds the
                # write lock, so the writing connection sees every committed event.
                return self._conn.execute(sql, params).fetchall()
            # Everyone else reads on a connection of their own: the writing connection may be
            # in the middle of another thread's append, whose rows are not committed yet.
            conn = self._readers.take()
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                self._readers.give(conn)

    def _stream(self, sql: str, params: Sequence[object]) -> Iterator[tuple[Any, ...]]:
        for rows in self._stream_batches(sql, params, BATCH_SIZE):
            yield from rows

    def _stream_batches(
        self, sql: str, params: Sequence[object], size: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        # A connection of its own (from the pool): an unfinished read must not hold a
        # snapshot open on the connection that appends, and streams may be read side by side.
        with self._translate("read"):
            conn = self._readers.take()
        cursor: sqlite3.Cursor | None = None
        try:
            with self._translate("read"):
                cursor = conn.execute(sql, params)
            while True:
                with self._translate("read"):
                    rows = cursor.fetchmany(size)
                if not rows:
                    return
                yield rows
        finally:
            if cursor is not None:
                cursor.close()
            self._readers.give(conn)

    def _open_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        return conn

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections; the store may not be used afterwards."""
        self._readers.close()
        self._conn.close()

    def __enter__(self) -> SQLiteEventStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteEventStore({str(self.path)!r})"

    def _translate(self, action: str) -> _SQLiteErrors:
        return _SQLiteErrors(self.path, action)

    # -- open requests (for ``overdue``) ---------------------------------------------------

    def open_request_events(self, kinds: Sequence[str]) -> tuple[int, str, list[StoredEvent]]:
        """The last event of ``kinds`` (seq, hash; 0 and "" for none) and, in seq order, the
        events of ``kinds`` of every request key that may still be open, all read from one
        snapshot (see :mod:`mash_requests.audit._open_requests`)."""
        with self._translate("read"):
            conn = self._readers.take()
            try:
                conn.execute("BEGIN")  # one snapshot for every statement (WAL)
                try:
                    head = conn.execute(_open_requests.head_sql(kinds)).fetchone()
                    indexed = conn.execute(
                        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                        (_open_requests.INDEX_NAME,),
                    ).fetchone()
                    sql = _open_requests.candidates_sql(kinds, indexed=indexed is not None)
                    rows = conn.execute(sql).fetchall()
                finally:
                    conn.execute("ROLLBACK")
            finally:
                self._readers.give(conn)
        events = [stored_event(*row, location=self.location) for row in rows]
        return (int(head[0]), str(head[1]), events) if head else (0, "", events)


class _SQLiteErrors:
    """Turns sqlite3 errors into LogError naming the file and what to do."""

    def __init__(self, path: Path, action: str) -> None:
        self.path = path
        self.action = action
        #: An exception that is the caller's own (a precondition's): never translated.
        self.passthrough: BaseException | None = None

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, sqlite3.Error) and exc is not self.passthrough:
            raise LogError(
                f"dispatch log {self.path}: cannot {self.action} the log: {exc}; {_advice(exc)}"
            ) from exc


def _has_events_table(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
    ).fetchone()
    return row is not None


def _advice(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return (
            f"another process held the log for more than {BUSY_TIMEOUT_SECONDS:g} s; "
            "try again, and look for a stuck mash-requests process"
        )
    if "readonly" in text or "read-only" in text:
        return "the file or its folder is not writable by this user; fix the permissions"
    if "unable to open" in text:
        return "check that [log] path names a file in a folder this user can write"
    if "not a database" in text or "malformed" in text:
        return "[log] path does not point at an intact dispatch log; restore it from backup"
    if "full" in text:
        return "the disk is full; free space and try again"
    if "append-only" in text or "write-once" in text:
        return "events are never changed or removed; record a new event instead"
    if "no such table" in text or "no such column" in text:
        # The log made its tables when it was created and never drops one.
        return (
            "a table of the log is missing or changed, which mash-requests never does: the "
            "file was altered outside it (or is a damaged copy); keep it as evidence and "
            "restore the log from a backup"
        )
    return "check the file, its folder and the free disk space"


def _where(where: EventFilter) -> tuple[str, list[object]]:
    """SQL WHERE clause (``?`` placeholders) and parameters for a filter."""
    # Only chain positions: a row stored with seq 0 or below was put there around the log,
    # never by it; `audit verify` names such rows (see rows_outside_chain). The unary plus
    # keeps SQLite from taking this for a rowid range and leaving the filters' indexes unused.
    terms: list[str] = ["+seq > 0"]
    params: list[object] = []
    for name in ("case_ref", "request_ref", "request_key", "partner", "gateway", "form_sha256"):
        value = getattr(where, name)
        if name == "form_sha256" and value and len(value) < SHA256_HEX_LENGTH:
            # A prefix (as chase prints it): the values that start with it are exactly the
            # range [prefix, prefix with its last character bumped), as a TEXT column compares
            # byte by byte; the range keeps the index on form_sha256 in use.
            terms.append("form_sha256 >= ? AND form_sha256 < ?")
            params.extend((value, value[:-1] + chr(ord(value[-1]) + 1)))
        elif value is not None:
            terms.append(f"{name} = ?")
            params.append(value)
    if where.kinds is not None:
        kinds = [str(kind) for kind in where.kinds]
        if not kinds:
            terms.append("0")
        else:
            terms.append(f"kind IN ({', '.join('?' * len(kinds))})")
            params.extend(kinds)
    if where.since is not None:
        terms.append("recorded_at >= ?")
        params.append(format_time(where.since))
    if where.until is not None:
        terms.append("recorded_at < ?")
        params.append(format_time(where.until))
    if where.after_seq is not None:
        terms.append("seq > ?")
        params.append(where.after_seq)
    if where.upto_seq is not None:
        terms.append("seq <= ?")
        params.append(where.upto_seq)
    return " WHERE " + " AND ".join(terms), params
