"""The dispatch log in PostgreSQL, for a shared service with many senders (``postgres`` extra).

Same contract and same records as the SQLite store, so a log can move between them and
:mod:`~mash_requests.audit.verify` checks both alike. In PostgreSQL:

- each append takes ``LOCK TABLE events IN EXCLUSIVE MODE`` inside its transaction (readers
  go on; writers queue) and reads the head after it, so every writer on every host extends
  one linear chain; ``recorded_at`` is the server's clock, one clock for all of them; a
  caller's ``precondition`` runs once the lock is held, so a check and the append it guards
  are one atomic step for every sender;
- triggers refuse UPDATE, DELETE and TRUNCATE of events (grant the application role INSERT
  and SELECT only, so it cannot drop them either);
- the schema is versioned in ``schema_migrations``; each migration is recorded in the same
  transaction as the change, under an advisory lock so two processes never migrate at once.

The tables live in the first schema of the connection's ``search_path``: to keep the log in
its own schema, add ``options=-csearch_path=mash_log`` to the DSN. psycopg is imported when
a store is opened, never when this module is.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mash_requests.audit import _open_requests
from mash_requests.audit._rows import (
    BATCH_SIZE,
    HEADS_VERSION,
    INDEXED_FIELDS,
    MAX_FINDINGS,
    OUTCOME_KINDS,
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
from mash_requests.audit.chain import GENESIS_HASH, Chain, format_time
from mash_requests.audit.events import SHA256_HEX_LENGTH, Event, EventFilter, StoredEvent
from mash_requests.errors import ConfigError, LogError

if TYPE_CHECKING:
    import psycopg

#: How long an append waits for another writer's lock before giving up.
LOCK_TIMEOUT_SECONDS = 30
#: Connect timeout used when the DSN does not set one.
CONNECT_TIMEOUT_SECONDS = 10
# Arbitrary constant naming "a mash-requests log migration" among advisory locks.
_MIGRATION_LOCK = 0x6D617368_6C6F67  # "mashlog"

_APPEND_ONLY = "dispatch log events are append-only"

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "events table, append-only triggers, filter indexes, log metadata",
        (
            "CREATE TABLE log_meta (key text PRIMARY KEY, value text NOT NULL)",
            """
            CREATE TABLE events (
                seq bigint PRIMARY KEY,
                recorded_at timestamptz NOT NULL,
                kind text NOT NULL,
                case_ref text NOT NULL,
                request_ref text,
                request_key text,
                partner text,
                gateway text,
                sender text,
                form_sha256 text,
                prev_hash text NOT NULL,
                hash text NOT NULL,
                record text NOT NULL
            )
            """,
            "CREATE INDEX events_case_ref ON events (case_ref, seq)",
            "CREATE INDEX events_request_ref ON events (request_ref, seq)",
            "CREATE INDEX events_request_key ON events (request_key, seq)",
            "CREATE INDEX events_partner ON events (partner, seq)",
            "CREATE INDEX events_gateway ON events (gateway, seq)",
            "CREATE INDEX events_kind ON events (kind, seq)",
            "CREATE INDEX events_form_sha256 ON events (form_sha256, seq)",
            "CREATE INDEX events_recorded_at ON events (recorded_at)",
            "CREATE INDEX events_sender ON events (sender, kind, recorded_at)",
            f"""
            CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{_APPEND_ONLY}' USING ERRCODE = 'integrity_constraint_violation';
            END $$
            """,
            """
            CREATE FUNCTION log_meta_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'dispatch log metadata is write-once'
                    USING ERRCODE = 'integrity_constraint_violation';
            END $$
            """,
            "CREATE TRIGGER events_no_change BEFORE UPDATE OR DELETE ON events"
            " FOR EACH ROW EXECUTE FUNCTION events_refuse_change()",
            "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events"
            " FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change()",
            "CREATE TRIGGER log_meta_no_change BEFORE UPDATE OR DELETE ON log_meta"
            " FOR EACH ROW EXECUTE FUNCTION log_meta_refuse_change()",
            "CREATE TRIGGER log_meta_no_truncate BEFORE TRUNCATE ON log_meta"
            " FOR EACH STATEMENT EXECUTE FUNCTION log_meta_refuse_change()",
        ),
    ),
    # For ``overdue`` on a large log (see mash_requests.audit._open_requests).
    (2, _open_requests.MIGRATION_DESCRIPTION, (_open_requests.POSTGRES_INDEX,)),
    (
        3,
        "verified heads: where a later verification may start",
        (
            """
            CREATE TABLE verified_heads (
                id bigserial PRIMARY KEY,
                seq bigint NOT NULL,
                event_count bigint NOT NULL,
                hash text NOT NULL,
                verified_at text NOT NULL,
                seal text NOT NULL
            )
            """,
            """
            CREATE FUNCTION verified_heads_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'dispatch log verified heads are append-only'
                    USING ERRCODE = 'integrity_constraint_violation';
            END $$
            """,
            "CREATE TRIGGER verified_heads_no_change BEFORE UPDATE OR DELETE ON verified_heads"
            " FOR EACH ROW EXECUTE FUNCTION verified_heads_refuse_change()",
            "CREATE TRIGGER verified_heads_no_truncate BEFORE TRUNCATE ON verified_heads"
            " FOR EACH STATEMENT EXECUTE FUNCTION verified_heads_refuse_change()",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]

_COLUMNS = "seq, recorded_at, prev_hash, hash, record, " + ", ".join(INDEXED_FIELDS)
# SQL here is built only from the constant column names above; every value is a parameter.
#: An append's first statements: its limits, then the table lock (see append_many).
_TAKE_LOCK = (
    f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_SECONDS}s';"
    " SET LOCAL synchronous_commit = on;"
    " LOCK TABLE events IN EXCLUSIVE MODE"
)
#: The chain's head (no row in an empty log gives NULLs) and the server's clock, in one.
_HEAD_AND_NOW = (
    "SELECT head.seq, head.hash, clock_timestamp() FROM (SELECT 1) AS one"
    " LEFT JOIN (SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1) AS head ON true"
)
#: An append's start, in one round trip (a query without parameters may hold several
#: statements): the transaction, its limits, the table lock, then the head it appends to.
_BEGIN_APPEND = f"BEGIN; {_TAKE_LOCK}; {_HEAD_AND_NOW}".encode()
#: Hand-over marks from one mailbox since a time, each part stopping at a limit: requests'
#: ``handing_over`` events, and reminders' ``chased`` steps whose outcome is ``handing_over``.
_COUNT_HANDED_OVER = """
    SELECT
      (SELECT count(*) FROM (SELECT 1 FROM events
         WHERE sender = %(sender)s AND kind = 'handing_over' AND recorded_at >= %(since)s
         AND seq > 0 LIMIT %(most)s) AS requests)
    + (SELECT count(*) FROM (SELECT 1 FROM events
         WHERE sender = %(sender)s AND kind = 'chased' AND recorded_at >= %(since)s AND seq > 0
         AND record::jsonb #>> '{event,details,outcome}' = 'handing_over'
         LIMIT %(most)s) AS reminders)
"""
_INSERT = (
    f"INSERT INTO events ({_COLUMNS}) "  # noqa: S608
    f"VALUES ({', '.join(['%s'] * (5 + len(INDEXED_FIELDS)))})"
)

#: The schema version that added verified_heads.

#: The largest seq a bigint holds: "no upper bound" for a range of rows.
_MAX_SEQ = 2**63 - 1

# For the verifier's fast path: recorded_at as the text format_time() makes of it, formatted
# by the server (a datetime per row costs more than the rest of the row). Years before 1000
# are left to format_time (NULL here), which does not pad them to four digits. PostgreSQL's
# own JSON parsing is slower than Python's json.loads (measured on 1,000,000 records: the
# jsonb cast alone 9.3 s, json.loads 6 s), so the record is compared in the verifier.
_CHAIN_BATCHES = (
    "SELECT seq, record, hash, prev_hash,"  # noqa: S608
    " CASE WHEN recorded_at >= '1000-01-01T00:00:00Z' THEN"
    """ to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END, """
    f"{', '.join(INDEXED_FIELDS)} FROM events WHERE seq > %s AND seq <= %s ORDER BY seq"
)


class PostgresEventStore(SmallTablesReader):
    """An :class:`~mash_requests.audit.events.EventStore` in a PostgreSQL database.

    Opening connects and creates the schema when it does not exist yet; with ``must_exist``
    (readers) a database without the events table raises ConfigError instead. Safe to share
    between threads; a connection that broke (server restart) is replaced on the next call.
    """

    GUARDS = (
        (1, "events_no_change"),
        (1, "events_no_truncate"),
        (1, "log_meta_no_change"),
        (1, "log_meta_no_truncate"),
        (HEADS_VERSION, "verified_heads_no_change"),
        (HEADS_VERSION, "verified_heads_no_truncate"),
    )
    # A trigger fires in normal sessions when it is enabled 'O' (origin) or 'A' (always);
    # 'D' is disabled, 'R' fires only where replication is being applied.
    TRIGGERS_QUERY = (
        "SELECT tgname, tgenabled IN ('O', 'A') FROM pg_trigger WHERE NOT tgisinternal"
        " AND tgrelid IN (to_regclass('events'), to_regclass('log_meta'),"
        " to_regclass('verified_heads'))"
    )

    def __init__(
        self, dsn: str, *, hmac_key: bytes | None = None, must_exist: bool = False
    ) -> None:
        self._dsn = dsn
        self.location = _describe(dsn)
        self.chain = Chain(hmac_key)
        self._hmac_key = hmac_key
        self._lock = threading.Lock()
        # The thread inside append_many's locked section, if any: its precondition's reads run
        # in the append's transaction without taking the lock again (no deadlock).
        self._writer: int | None = None
        self._readers = ReaderPool(self._open_reader, _reset_reader, _close)
        self._conn = self._connect()
        try:
            # Before anything is created: the log's schema holds the log alone, and the log
            # never adds its tables to another application's.
            self._refuse_foreign()
            if must_exist:
                # For readers (auditors): a database without the log must not get one created
                # and be reported as an intact log of 0 events.
                with self._translate("open"):
                    found = self._conn.execute("SELECT to_regclass('events')").fetchone()
                if found is None or found[0] is None:
                    raise ConfigError(
                        f"no dispatch log at {self.location} (no events table in its "
                        "search_path); check [log] dsn in the config"
                    )
            with self._translate("create the schema of"):
                # Readers (must_exist) never migrate: an auditor's SELECT-only role must be
                # enough. An older schema is read as it is until a sender opens the log.
                if not must_exist and self._schema_version() < SCHEMA_VERSION:
                    self._migrate()
                self._check_meta()
                self._version = self._schema_version()
        except BaseException:
            self._conn.close()
            raise

    # -- connection and schema -------------------------------------------------------------

    def _connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        try:
            import psycopg
            from psycopg import conninfo
        except ImportError as exc:
            raise LogError(
                '[log] backend = "postgres" needs psycopg: pip install "mash-requests[postgres]"'
            ) from exc
        with self._translate("connect to"):
            extra: dict[str, Any] = {}
            if "connect_timeout" not in conninfo.conninfo_to_dict(self._dsn):
                extra["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
            return psycopg.connect(self._dsn, autocommit=autocommit, **extra)

    def _live(self) -> psycopg.Connection[Any]:
        if self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _appending(self) -> psycopg.Connection[Any]:
        """The connection to append on: idle, outside any transaction. One left inside a
        failed append's transaction (its ROLLBACK failed too) is replaced, never reused."""
        from psycopg.pq import TransactionStatus

        conn = self._live()
        if not conn.closed and conn.info.transaction_status is not TransactionStatus.IDLE:
            conn.close()
            conn = self._conn = self._connect()
        return conn

    def _refuse_foreign(self) -> None:
        with self._translate("open"):
            rows = self._conn.execute(
                "SELECT c.relname FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema()"
                " AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            ).fetchall()
        foreign = foreign_tables([str(row[0]) for row in rows])
        if foreign:
            shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
            raise ConfigError(
                f"[log] dsn {self.location}: the schema holds tables that are not the dispatch "
                f"log's ({shown}), so it belongs to another application; give the log a schema "
                "of its own (add options=-csearch_path=mash_log to the DSN; nothing was added)"
            )

    def _schema_version(self) -> int:
        exists = self._conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        if exists is None or exists[0] is None:
            return 0
        row = self._conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0) if row else 0

    def _migrate(self) -> None:
        conn = self._conn
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, description text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = self._schema_version()  # again: another process may have migrated
            for version, description, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    # bytes: psycopg's typing wants literal SQL, and these are constants.
                    conn.execute(statement.encode())
                if version == 1:
                    conn.cursor().executemany(
                        "INSERT INTO log_meta (key, value) VALUES (%s, %s)",
                        [
                            ("hash_algorithm", self.chain.algorithm),
                            ("key_check", self.chain.key_check),
                            ("created_at", format_time(_server_now(conn))),
                        ],
                    )
                conn.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                    (version, description),
                )

    def _check_meta(self) -> None:
        version = self._schema_version()
        if version > SCHEMA_VERSION:
            raise LogError(
                f"dispatch log {self.location} has schema version {version}, newer than this "
                f"mash-requests knows ({SCHEMA_VERSION}); upgrade mash-requests to use it"
            )
        rows = self._conn.execute("SELECT key, value FROM log_meta").fetchall()
        check_meta(self.location, self.chain, {str(k): str(v) for k, v in rows})

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

        ``precondition`` runs after ``LOCK TABLE events IN EXCLUSIVE MODE`` (no other
        process can append until this transaction ends) and before anything is written. It
        may call this store's read methods, which then read inside this transaction and see
        every committed event. If it raises, nothing is appended and its exception propagates
        unchanged (it is the caller's, not a LogError). It must not append: that raises
        RuntimeError.
        """
        if not events and precondition is None:
            return []
        me = threading.get_ident()
        if self._writer == me:
            raise RuntimeError("a precondition of append_many must not append to the log")
        errors = self._translate("append to")
        with self._lock, errors:
            conn = self._appending()
            self._writer = me
            try:
                # Each round trip is paid once per append, and an append once per message:
                # BEGIN, the lock and the head go in one, then the precondition's reads,
                # the insert, and COMMIT.
                cursor = conn.execute(_BEGIN_APPEND)
                try:
                    while cursor.nextset():
                        pass  # to the last statement's result: the head
                    head = cursor.fetchone()
                    if precondition is not None:
                        try:
                            precondition()
                        except BaseException as exc:
                            errors.passthrough = exc
                            raise
                    stored = self._insert(conn, events, head)
                    conn.execute(b"COMMIT")
                except BaseException:
                    _roll_back(conn)
                    raise
                return stored
            finally:
                self._writer = None

    def _insert(
        self,
        conn: psycopg.Connection[Any],
        events: Sequence[Event],
        head: tuple[Any, ...] | None,
    ) -> list[StoredEvent]:
        """Chain and insert ``events`` after ``head`` (seq, hash, server time); the caller
        holds the table lock."""
        assert head is not None and isinstance(head[2], datetime)
        seq, prev_hash = (int(head[0]), str(head[1])) if head[0] is not None else (0, GENESIS_HASH)
        # In UTC whatever the server's TimeZone setting, as the SQLite store returns it.
        now = head[2].astimezone(UTC)
        stored: list[StoredEvent] = []
        rows: list[tuple[Any, ...]] = []
        for event in events:
            seq += 1
            record, hash_ = self.chain.seal(
                seq=seq, recorded_at=now, prev_hash=prev_hash, event=event
            )
            rows.append((seq, now, prev_hash, hash_, record, *indexed_values(event)))
            stored.append(StoredEvent(seq, now, event, prev_hash, hash_))
            prev_hash = hash_
        if rows:
            conn.cursor().executemany(_INSERT.encode(), rows)
        return stored

    # -- reading -----------------------------------------------------------------------------

    def events(self, where: EventFilter | None = None) -> Iterator[StoredEvent]:
        """Stream matching events in ``seq`` order (``since`` inclusive, ``until`` exclusive)."""
        where = where or EventFilter()
        clause, params = _where(where)
        sql = f"SELECT seq, hash, record FROM events{clause} ORDER BY seq"  # noqa: S608
        # A period (a report's month) is read to its end: planned for its first rows, as a
        # cursor is by default, it walks the whole log in seq order (0.73 s on a million
        # events) rather than take the recorded_at index and sort the month (0.46 s).
        whole = where.since is not None or where.until is not None
        for rows in self._stream_batches(sql, params, BATCH_SIZE, read_all=whole):
            for seq, hash_, record in rows:
                yield stored_event(seq, hash_, record, location=self.location)

    def any_event_since(self, kinds: Sequence[str], since: datetime | None) -> bool:
        """Whether the log holds an event of ``kinds`` recorded at or after ``since``.

        One probe per kind down the ``(kind, seq)`` index from the newest row, stopping at
        the first match: nothing to sort, and the answer is usually the newest row of its kind.
        """
        sql = "SELECT 1 FROM events WHERE kind = %s AND seq > 0"
        bound: list[object] = []
        if since is not None:
            format_time(since)  # refuses a naive datetime, as the SQLite store does
            sql += " AND recorded_at >= %s"
            bound.append(since)
        sql += " ORDER BY kind DESC, seq DESC LIMIT 1"
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
        format_time(since)  # refuses a naive datetime, as the SQLite store does
        sql = (
            "SELECT seq, hash, record FROM events WHERE request_ref = ANY(%s)"
            " AND kind = ANY(%s) AND recorded_at >= %s AND seq > 0 AND seq <= %s ORDER BY seq"
        )
        upto = _MAX_SEQ if upto_seq is None else upto_seq
        params = [sorted(refs), list(kinds), since, upto]
        # Fetched whole (a few rows per reference), not through a server-side cursor: a
        # cursor is planned for its first rows, and PostgreSQL then walks the whole log in
        # seq order (0.8 s on a million events) rather than look the references up and sort.
        conn = self._readers.take()
        try:
            with self._translate("read"):
                rows = conn.execute(sql.encode(), params).fetchall()
        finally:
            self._readers.give(conn)
        for seq, hash_, record in rows:
            yield stored_event(seq, hash_, record, location=self.location)

    #: :meth:`chain_batches` rows carry the columns; the verifier compares them with the record.
    columns_checked_in_database = False

    def chain_rows(self, after_seq: int = 0, upto_seq: int | None = None) -> Iterator[ChainRow]:
        """Every stored row with ``after_seq < seq <= upto_seq``, in ``seq`` order, as stored."""
        sql = f"SELECT {_COLUMNS} FROM events WHERE seq > %s AND seq <= %s ORDER BY seq"  # noqa: S608
        upto = _MAX_SEQ if upto_seq is None else upto_seq
        for row in self._stream(sql, [after_seq, upto]):
            yield ChainRow(
                seq=row[0],
                recorded_at=format_time(row[1]),
                prev_hash=row[2],
                hash=row[3],
                record=row[4],
                columns=tuple(row[5:]),
            )

    def chain_batches(
        self, after_seq: int = 0, upto_seq: int | None = None
    ) -> Iterator[list[tuple[Any, ...]]]:
        """``(seq, record, hash, prev_hash, recorded_at text, *indexed)`` (see ChainSource)."""
        upto = _MAX_SEQ if upto_seq is None else upto_seq
        return self._stream_batches(_CHAIN_BATCHES, [after_seq, upto], BATCH_SIZE)

    def worker_job(self) -> dict[str, Any]:
        """How a verification worker process opens this log (never printed: holds the key)."""
        key = self._hmac_key
        return {
            "backend": "postgres",
            "dsn": self._dsn,
            "hmac_key": key.hex() if key is not None else None,
        }

    def head_seq(self) -> int:
        """The highest ``seq`` stored (0 for an empty log)."""
        row = self._fetch_one("SELECT max(seq) FROM events", ())
        return max(0, int(row[0])) if row and row[0] is not None else 0

    def rows_outside_chain(self, limit: int = 10) -> tuple[int, tuple[int | None, ...]]:
        """How many rows have a ``seq`` that is no chain position (NULL, 0 or below), and the
        first ``limit`` of those seqs. The store never writes one; someone went around it."""
        outside = "seq IS NULL OR seq < 1"
        row = self._fetch_one(f"SELECT count(*) FROM events WHERE {outside}", ())  # noqa: S608
        count = int(row[0]) if row else 0
        if not count or limit <= 0:
            return count, ()
        sql = f"SELECT seq FROM events WHERE {outside} ORDER BY seq NULLS FIRST LIMIT %s"  # noqa: S608
        return count, tuple(r[0] for r in self._stream(sql, [limit]))

    def database_check(self) -> DatabaseCheck:
        """amcheck's ``bt_index_check(index, heapallindexed => true)`` on every index of the
        log's tables: each index's structure, and that every row is in it. Creates the
        ``amcheck`` extension if it can; where it cannot, the result says it was not run."""
        method = "PostgreSQL amcheck bt_index_check with heapallindexed"
        conn = self._connect()
        try:
            with self._translate("check"):
                return self._amcheck(conn, method)
        finally:
            conn.close()

    def _amcheck(self, conn: psycopg.Connection[Any], method: str) -> DatabaseCheck:
        import psycopg

        schema = _amcheck_schema(conn)
        if schema.startswith("!"):
            return DatabaseCheck(ran=False, ok=False, method=method, note=schema[1:])
        indexes = [
            (str(row[0]), int(row[1]))
            for row in conn.execute(
                "SELECT c.relname, c.oid FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_am a ON a.oid = c.relam"
                " WHERE a.amname = 'btree' AND i.indrelid IN ("
                "  to_regclass('events'), to_regclass('log_meta'),"
                "  to_regclass('schema_migrations'))"
                " ORDER BY c.relname"
            ).fetchall()
        ]
        findings: list[str] = []
        check = f"SELECT {_quote_ident(schema)}.bt_index_check(%s::oid::regclass, true)"
        for name, oid in indexes:
            try:
                conn.execute(check.encode(), (oid,))
            except psycopg.Error as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                if exc.sqlstate == "42501":
                    return DatabaseCheck(
                        ran=False,
                        ok=False,
                        method=method,
                        note=f"this database user may not run amcheck ({first}); "
                        "ask the database admin to GRANT EXECUTE on its functions",
                    )
                findings.append(f"index {name}: {first}")
                if len(findings) >= MAX_FINDINGS:
                    break
        return DatabaseCheck(
            ran=True,
            ok=not findings,
            method=f"{method}, {len(indexes)} indexes",
            findings=tuple(findings),
        )

    def record_verified_head(self, seq: int, count: int, hash_: str) -> None:
        """Store a sealed verified head (its own short transaction, apart from appends); a
        log of an older schema opened by a reader has nowhere to keep one."""
        if self._version < HEADS_VERSION:
            return
        with self._lock, self._translate("record a verified head in"):
            conn = self._live()
            with conn.transaction():
                at = format_time(_server_now(conn))
                conn.execute(
                    "INSERT INTO verified_heads (seq, event_count, hash, verified_at, seal)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (seq, count, hash_, at, head_seal(self.chain, seq, count, hash_, at)),
                )

    def last_event_for_key(self, request_key: str) -> StoredEvent | None:
        """The latest event of any kind for this request key (committed state)."""
        row = self._fetch_one(
            "SELECT seq, hash, record FROM events WHERE request_key = %s AND seq > 0"
            " ORDER BY seq DESC LIMIT 1",
            (request_key,),
        )
        return None if row is None else stored_event(*row, location=self.location)

    def last_events_for_keys(self, request_keys: Sequence[str]) -> dict[str, StoredEvent]:
        """The latest event of each of these request keys that has one, in one read."""
        if not request_keys:
            return {}
        rows = self._fetch_all(
            "SELECT DISTINCT ON (request_key) request_key, seq, hash, record FROM events"
            " WHERE request_key = ANY(%s) AND seq > 0 ORDER BY request_key, seq DESC",
            (list(request_keys),),
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
        rows = self._fetch_all(
            # `|| ''`: an expression no index covers, so the request_key index is never used.
            "SELECT request_key || '', max(seq) FROM events"
            " WHERE case_ref = %s AND request_key || '' = ANY(%s) AND seq > 0 GROUP BY 1",
            (case_ref, list(request_keys)),
        )
        return {str(key): int(seq) for key, seq in rows}

    def last_outcome(self, request_key: str) -> StoredEvent | None:
        """The latest sent/failed/unconfirmed/reconciled event for this request key."""
        row = self._fetch_one(
            "SELECT seq, hash, record FROM events WHERE request_key = %s AND seq > 0"
            " AND kind = ANY(%s) ORDER BY seq DESC LIMIT 1",
            (request_key, list(OUTCOME_KINDS)),
        )
        return None if row is None else stored_event(*row, location=self.location)

    def count_handed_over_since(self, sender: str, since: datetime, *, at_most: int) -> int:
        """How many messages this mailbox handed to its gateway at or after ``since``.

        Counted up to ``at_most`` (see EventStore), on the ``events_sender`` index; only a
        reminder's record is read.
        """
        format_time(since)  # refuses a naive datetime, as the SQLite store does
        params = {"sender": sender, "since": since, "most": at_most}
        row = self._fetch_one(_COUNT_HANDED_OVER, params)
        return min(int(row[0]), at_most) if row else 0

    def _fetch_one(
        self, sql: str, params: Sequence[object] | Mapping[str, object]
    ) -> tuple[Any, ...] | None:
        """The row of a query that has at most one (an aggregate, or LIMIT 1)."""
        rows = self._fetch_all(sql, params)
        return rows[0] if rows else None

    def _fetch_all(
        self, sql: str, params: Sequence[object] | Mapping[str, object]
    ) -> list[tuple[Any, ...]]:
        # Literal SQL from this module only; psycopg's typing wants LiteralString.
        query = sql.encode()
        if self._writer == threading.get_ident():
            # A precondition, inside the append's transaction (READ COMMITTED, table locked
            # against writers): sees every committed event; the lock is already ours.
            with self._translate("read"):
                return self._conn.execute(query, params).fetchall()
        with self._lock, self._translate("read"):
            return self._live().execute(query, params).fetchall()

    def _stream(self, sql: str, params: Sequence[object]) -> Iterator[tuple[Any, ...]]:
        for rows in self._stream_batches(sql, params, BATCH_SIZE):
            yield from rows

    def _stream_batches(
        self, sql: str, params: Sequence[object], size: int, *, read_all: bool = False
    ) -> Iterator[list[tuple[Any, ...]]]:
        # Its own connection (from the pool) and a server-side cursor: memory stays bounded,
        # and a half-read stream never holds a transaction open on the appending connection.
        # ``read_all``: the caller reads every row, so the query is planned for all of them
        # (for this read transaction only; the pool's rollback ends the setting).
        conn = self._readers.take()
        try:
            if read_all:
                with self._translate("read"):
                    conn.execute(b"SET LOCAL cursor_tuple_fraction = 1")
            with self._translate("read"), conn.cursor(name="mash_log_stream") as cursor:
                cursor.itersize = size
                cursor.execute(sql.encode(), params)
                while True:
                    rows = cursor.fetchmany(size)
                    if not rows:
                        return
                    yield rows
        finally:
            self._readers.give(conn)

    def _open_reader(self) -> psycopg.Connection[Any]:
        conn = self._connect(autocommit=False)
        conn.read_only = True
        return conn

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections; the store may not be used afterwards."""
        self._readers.close()
        self._conn.close()

    def __enter__(self) -> PostgresEventStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresEventStore({self.location!r})"

    def _translate(self, action: str) -> _PostgresErrors:
        return _PostgresErrors(self.location, action)

    # -- open requests (for ``overdue``) ---------------------------------------------------

    def open_request_events(self, kinds: Sequence[str]) -> tuple[int, str, list[StoredEvent]]:
        """The last event of ``kinds`` (seq, hash; 0 and "" for none) and, in seq order, the
        events of ``kinds`` of every request key that may still be open, all read from one
        snapshot (see :mod:`mash_requests.audit._open_requests`)."""
        conn = self._readers.take()
        try:
            with self._translate("read"):
                # One snapshot for every statement; the pool's reset ends the transaction.
                conn.execute(b"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                conn.execute(b"SET LOCAL jit = off")  # compiling costs more than it saves
                head = conn.execute(_open_requests.head_sql(kinds).encode()).fetchone()
                found = conn.execute(_open_requests.POSTGRES_UNCLOSED_REFS.encode())
                unclosed = [row[0] for row in found]
                rows: list[tuple[Any, ...]] = []
                if unclosed:
                    found = conn.execute(_open_requests.POSTGRES_KEYS_OF_REFS.encode(), [unclosed])
                    keys = [row[0] for row in found]
                    found = conn.execute(_open_requests.POSTGRES_REFS_OF_KEYS.encode(), [keys])
                    refs = [row[0] for row in found]
                    sql = _open_requests.postgres_events_of_refs_sql(kinds)
                    rows = conn.execute(sql.encode(), [refs]).fetchall()
                    rows.sort(key=lambda row: int(row[0]))
        finally:
            self._readers.give(conn)
        events = [stored_event(*row, location=self.location) for row in rows]
        return (int(head[0]), str(head[1]), events) if head else (0, "", events)


def _roll_back(conn: psycopg.Connection[Any]) -> None:
    """End a failed append's transaction, if the connection still has one. If even that
    fails, the connection is left as it is: the next append does not use it (_appending)."""
    import psycopg
    from psycopg.pq import TransactionStatus

    if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        with contextlib.suppress(psycopg.Error):
            conn.execute(b"ROLLBACK")


def _amcheck_schema(conn: psycopg.Connection[Any]) -> str:
    """The schema holding the amcheck extension, created if need be; ``"!why"`` if it is not
    there and cannot be created."""
    import psycopg

    find = (
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'amcheck'"
    )
    row = conn.execute(find).fetchone()
    if row is not None:
        return str(row[0])
    why = ""
    # In public when there is one (it outlives any one log's schema), else where it may.
    for statement in (
        "CREATE EXTENSION IF NOT EXISTS amcheck SCHEMA public",
        "CREATE EXTENSION IF NOT EXISTS amcheck",
    ):
        try:
            conn.execute(statement.encode())
        except psycopg.Error as exc:
            # Another session may have created it meanwhile: look again below.
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        row = conn.execute(find).fetchone()
        if row is not None:
            return str(row[0])
    return (
        f"!the amcheck extension is not installed and cannot be created here ({why}); "
        "ask the database admin to run CREATE EXTENSION amcheck"
    )


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _reset_reader(conn: psycopg.Connection[Any]) -> bool:
    """End the stream's read transaction; a broken connection is not reused."""
    if conn.broken or conn.closed:
        return False
    conn.rollback()
    return True


def _close(conn: psycopg.Connection[Any]) -> None:
    conn.close()


def _server_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    value = row[0]
    assert isinstance(value, datetime)
    # In UTC whatever the server's TimeZone setting, as the SQLite store returns it.
    return value.astimezone(UTC)


class _PostgresErrors:
    """Turns psycopg errors into LogError naming the database (never its password)."""

    def __init__(self, location: str, action: str) -> None:
        self.location = location
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
        if exc is None or exc is self.passthrough:
            return
        if not type(exc).__module__.startswith("psycopg"):
            return
        import psycopg

        if isinstance(exc, psycopg.Error):
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise LogError(
                f"dispatch log {self.location}: cannot {self.action} the log: {first_line}; "
                f"{_advice(exc.sqlstate or '')}"
            ) from exc


def _advice(sqlstate: str) -> str:
    if sqlstate.startswith("28"):
        return "check the user and password in [log] dsn"
    if sqlstate == "3D000":
        return "the database in [log] dsn does not exist; create it or fix the DSN"
    if sqlstate == "42501":
        return "the database user lacks a privilege; grant it CREATE, INSERT and SELECT"
    if sqlstate in ("55P03", "57014"):
        return (
            f"another writer held the log for more than {LOCK_TIMEOUT_SECONDS} s; try again, "
            "and look for a stuck mash-requests process"
        )
    if sqlstate.startswith("23"):
        return "events are never changed or removed; record a new event instead"
    if sqlstate.startswith("53"):
        return "the database server is out of resources (disk or memory); tell its admin"
    if sqlstate in ("42P01", "42703"):  # undefined table or column in the log's schema
        return (
            "a table of the log is missing or changed, which mash-requests never does: the "
            "schema was altered outside it; keep it as evidence and restore the log from a "
            "backup (check [log] dsn names the log's schema)"
        )
    return "check the server is running and [log] dsn is right"


def _describe(dsn: str) -> str:
    """The DSN without its password: ``postgresql://user@host:port/dbname``."""
    try:
        from psycopg import conninfo

        parts = conninfo.conninfo_to_dict(dsn)
    except ImportError:
        return "postgresql database"
    except Exception:  # psycopg.ProgrammingError
        # Not chained: the parser's message may quote the DSN, password and all.
        raise LogError(
            "[log] dsn is not a valid PostgreSQL connection string; check its syntax"
        ) from None
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = str(parts.get("host") or "localhost")
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


def _where(where: EventFilter) -> tuple[str, list[object]]:
    """SQL WHERE clause (``%s`` placeholders) and parameters for a filter."""
    # Only chain positions: a row stored with seq 0 or below was put there around the log,
    # never by it; `audit verify` names such rows (see rows_outside_chain).
    terms: list[str] = ["seq > 0"]
    params: list[object] = []
    for name in ("case_ref", "request_ref", "request_key", "partner", "gateway", "form_sha256"):
        value = getattr(where, name)
        if name == "form_sha256" and value and len(value) < SHA256_HEX_LENGTH:
            # A prefix (as chase prints it). left() rather than a range: a range would follow
            # the database's collation, which need not compare text byte by byte.
            terms.append("left(form_sha256, %s) = %s")
            params.extend((len(value), value))
        elif value is not None:
            terms.append(f"{name} = %s")
            params.append(value)
    if where.kinds is not None:
        terms.append("kind = ANY(%s)")
        params.append([str(kind) for kind in where.kinds])
    if where.since is not None:
        format_time(where.since)
        terms.append("recorded_at >= %s")
        params.append(where.since)
    if where.until is not None:
        format_time(where.until)
        terms.append("recorded_at < %s")
        params.append(where.until)
    if where.after_seq is not None:
        terms.append("seq > %s")
        params.append(where.after_seq)
    if where.upto_seq is not None:
        terms.append("seq <= %s")
        params.append(where.upto_seq)
    return " WHERE " + " AND ".join(terms), params
