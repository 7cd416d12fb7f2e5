"""What the SQLite and PostgreSQL stores share: the row layout and the verifier's view of it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from mash_requests.audit.chain import Chain, decode_record, event_from_fields, parse_time
from mash_requests.audit.events import Event, EventKind, StoredEvent
from mash_requests.errors import LogError

#: The schema version that added the ``verified_heads`` table (both stores).
HEADS_VERSION = 3
#: A verified head's columns, in the order :func:`sealed_head` reads them.
HEADS_QUERY = "SELECT seq, event_count, hash, verified_at, seal FROM verified_heads"

#: Event fields copied beside the record into their own indexed columns, for filtering.
#: The record is the evidence; these columns are a convenience the verifier checks against it.
INDEXED_FIELDS: tuple[str, ...] = (
    "kind",
    "case_ref",
    "request_ref",
    "request_key",
    "partner",
    "gateway",
    "sender",
    "form_sha256",
)

#: Kinds :meth:`EventStore.last_outcome` looks at (a rejection is not an outcome of a send).
OUTCOME_KINDS: tuple[str, ...] = (
    str(EventKind.SENT),
    str(EventKind.FAILED),
    str(EventKind.UNCONFIRMED),
    str(EventKind.RECONCILED),
)

C = TypeVar("C")

#: The most problems a database check lists (the first ones say enough).
MAX_FINDINGS = 20

#: Rows fetched per round trip when streaming; bounds memory whatever the log's size.
BATCH_SIZE = 1000

#: Rows per batch when verifying: larger, as the verifier does little per row (~5 MB a batch).
VERIFY_BATCH_SIZE = 5000


def indexed_values(event: Event) -> tuple[str | None, ...]:
    """The values of :data:`INDEXED_FIELDS` for one event, in that order."""
    return tuple(
        str(event.kind) if name == "kind" else getattr(event, name) for name in INDEXED_FIELDS
    )


@dataclass(frozen=True, slots=True)
class ChainRow:
    """One stored row exactly as the database holds it, for the verifier."""

    seq: int
    recorded_at: str
    prev_hash: str
    hash: str
    record: str
    #: The indexed columns as stored, in :data:`INDEXED_FIELDS` order, to compare with the record.
    columns: tuple[str | None, ...]


@dataclass(frozen=True)
class VerifiedHead:
    """A head the whole chain up to it was verified at, stored in the log (``verified_heads``).

    Sealed with the log's hash (HMAC under the log's key when there is one, so someone who
    can write the database but lacks the key cannot move it; plain SHA-256 otherwise, which
    anyone able to write the database could forge). A verification may start from it and
    walk only what is newer; it then says what was verified earlier, and when.
    """

    seq: int
    count: int
    hash: str
    verified_at: datetime
    #: Whether the seal is an HMAC under the log's key.
    keyed: bool


def head_seal(chain: Chain, seq: int, count: int, hash_: str, verified_at: str) -> str:
    """The seal of a ``verified_heads`` row: the log's hash over its fields."""
    text = f"mash-requests verified head v1\x1f{seq}\x1f{count}\x1f{hash_}\x1f{verified_at}"
    return chain.digest(text.encode("utf-8"))


def sealed_head(chain: Chain, row: tuple[Any, ...]) -> VerifiedHead | None:
    """The VerifiedHead of a ``(seq, count, hash, verified_at text, seal)`` row, or None when
    its seal does not verify (forged or edited)."""
    seq, count, hash_, verified_at, seal = row
    if not (isinstance(seq, int) and isinstance(count, int) and isinstance(verified_at, str)):
        return None
    if head_seal(chain, seq, count, str(hash_), verified_at) != seal:
        return None
    try:
        moment = parse_time(verified_at)
    except ValueError:
        return None
    return VerifiedHead(seq, count, str(hash_), moment, keyed=chain.algorithm != "sha256")


@dataclass(frozen=True)
class DatabaseCheck:
    """The database's own consistency check (tables against their indexes, page structure)."""

    #: False when the check could not be run (then ``note`` says why).
    ran: bool
    #: True when it ran and found nothing wrong.
    ok: bool
    #: What was run: "SQLite PRAGMA integrity_check", "PostgreSQL amcheck (…)".
    method: str
    #: What the database reported, one line each (at most a few dozen).
    findings: tuple[str, ...] = ()
    #: Why it was not run, or anything else a reader must know.
    note: str = ""

    def summary(self) -> str:
        """One line: what was run and what it found."""
        if not self.ran:
            return f"database check NOT RUN: {self.note}"
        if self.ok:
            return f"database check ok ({self.method})"
        shown = "; ".join(self.findings[:3])
        more = f" (+{len(self.findings) - 3} more)" if len(self.findings) > 3 else ""
        return f"database check FAILED ({self.method}): {shown}{more}"


@runtime_checkable
class ChainSource(Protocol):
    """A store whose raw rows can be verified (both built-in stores are).

    The verifier reads :meth:`chain_batches` (fast, one shape per store, below) and turns to
    :meth:`chain_rows` (every column exactly as stored) for any row the fast check does not
    pass, so that what it reports about a broken row never depends on the fast path.
    """

    #: How this log's hashes are made (with or without the configured key).
    chain: Chain

    #: Where the log is, for messages: a file path or a database without its password.
    location: str

    #: The shape of :meth:`chain_batches` rows. True: ``(seq, record bytes, hash, prev_hash,
    #: agrees)``, where the database itself compared the record's ``v``, ``seq``,
    #: ``prev_hash``, ``recorded_at`` and indexed fields with the columns (``agrees`` is 1
    #: only when all are equal, with equal JSON types). False: ``(seq, record text, hash,
    #: prev_hash, recorded_at text or None, *indexed columns)``, compared by the verifier.
    columns_checked_in_database: bool

    def chain_rows(self, after_seq: int = 0, upto_seq: int | None = None) -> Iterator[ChainRow]:
        """Every row with ``after_seq < seq <= upto_seq``, in ``seq`` order, streamed."""
        ...

    def chain_batches(
        self, after_seq: int = 0, upto_seq: int | None = None
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The same rows as :meth:`chain_rows`, in batches, in the shape the verifier reads fast."""
        ...

    def head_seq(self) -> int:
        """The highest ``seq`` stored (0 for an empty log)."""
        ...

    def rows_outside_chain(self, limit: int = 10) -> tuple[int, tuple[int | None, ...]]:
        """How many rows have a ``seq`` that is no chain position, and the first ``limit``."""
        ...

    def log_table_problems(self) -> tuple[str, ...]:
        """Rows of ``log_meta`` and ``schema_migrations`` the log never writes, one sentence
        each (empty when there are none)."""
        ...

    def database_check(self) -> DatabaseCheck:
        """Run the database's own consistency check on the log's tables and indexes."""
        ...

    def latest_verified_head(self) -> VerifiedHead | None:
        """The most recently stored verified head whose seal verifies, if any."""
        ...

    def furthest_verified_head(self) -> VerifiedHead | None:
        """The sealed verified head with the highest seq, if any: the log must still reach
        it, with the same hash there."""
        ...

    def record_verified_head(self, seq: int, count: int, hash_: str) -> None:
        """Store that the chain up to ``seq`` (``count`` events, head ``hash_``) verified now."""
        ...

    def worker_job(self) -> dict[str, Any]:
        """JSON telling a verification worker process how to open this log (holds the DSN
        and the key: it goes to the worker through a pipe, never a command line)."""
        ...


def stored_event(seq: int, hash_: str, record: str, *, location: str) -> StoredEvent:
    """A StoredEvent from a row: the record is the truth for everything it holds.

    A record that cannot be decoded (edited or damaged on disk) raises LogError naming the
    event, so a reader gets a sentence and a next step instead of a traceback.
    """
    try:
        document = decode_record(record)
        # As StoredEvent(...) would, without its frozen __init__'s object.__setattr__ calls.
        stored: StoredEvent = object.__new__(StoredEvent)
        stored.__dict__.update(
            seq=seq,
            recorded_at=parse_time(document["recorded_at"]),
            event=event_from_fields(document["event"]),
            prev_hash=document["prev_hash"],
            hash=hash_,
        )
        return stored
    except (KeyError, TypeError, ValueError) as exc:
        # Not the record's text: it may be anything, and would be damaged evidence anyway.
        raise LogError(
            f"dispatch log {location}: event {seq} is damaged (its stored record cannot be "
            "read); run `mash-requests audit verify` to see what happened to it"
        ) from exc


#: The tables (and views) a log's database may hold: the log's own, nothing else.
LOG_TABLES = frozenset({"events", "log_meta", "schema_migrations", "verified_heads"})


def foreign_tables(names: list[str]) -> list[str]:
    """The names among ``names`` that are not the log's tables, sorted."""
    return sorted(set(names) - LOG_TABLES)


#: The keys ``log_meta`` holds: written once, when the log is created.
META_KEYS = frozenset({"hash_algorithm", "key_check", "created_at"})


def table_problems(
    meta_keys: list[str],
    versions: list[int],
    schema_version: int,
    unsealed_heads: int = 0,
) -> tuple[str, ...]:
    """What is wrong with the metadata tables' rows (see ChainSource.log_table_problems)."""
    problems: list[str] = []
    if unsealed_heads:
        problems.append(
            f"verified_heads holds {unsealed_heads} row(s) whose seal does not verify "
            "(not written by the log, or edited)"
        )
    unknown = sorted(set(meta_keys) - META_KEYS)
    if unknown:
        names = ", ".join(map(repr, unknown[:5]))
        problems.append(f"log_meta holds {len(unknown)} row(s) the log never writes ({names})")
    repeated = len(meta_keys) - len(set(meta_keys))
    if repeated:
        problems.append(f"log_meta holds {repeated} repeated key(s)")
    missing = sorted(META_KEYS - set(meta_keys))
    if missing:
        problems.append(f"log_meta lacks {', '.join(missing)}")
    expected = list(range(1, schema_version + 1))
    if sorted(versions) != expected:
        problems.append(f"schema_migrations holds versions {sorted(versions)}, expected {expected}")
    return tuple(problems)


def check_meta(location: str, chain: Chain, meta: dict[str, str]) -> None:
    """Refuse a log whose hashing differs from the configured one (key added, removed or wrong).

    Shared with the PostgreSQL store. A mismatch is caught at open, before any event is
    written that could never verify.
    """
    algorithm = meta.get("hash_algorithm")
    if algorithm != chain.algorithm:
        # The metadata says which; whoever can write the database can change it too, so
        # the advice covers both readings and never tells anyone to drop a key.
        tampered = (
            "the log's metadata was changed, which is tampering: keep the key, keep the file "
            "as evidence, and verify it against a checkpoint kept elsewhere or restore it "
            "from a backup"
        )
        if algorithm == "hmac-sha256":
            raise LogError(
                f"dispatch log {location} says it is keyed (HMAC-SHA256) but no [log] "
                "hmac_key is configured. If it was created with a key, set hmac_key_env or "
                f"hmac_key_file to that key; if it never had one, {tampered}"
            )
        raise LogError(
            f"dispatch log {location} says it was created without an HMAC key ({algorithm}) "
            "but [log] hmac_key is set. If it was created before the key was configured, "
            "keep using it without the key or start a new log for keyed hashing; if it was "
            f"created with this key, {tampered}"
        )
    if chain.key_check != meta.get("key_check", ""):
        raise LogError(
            f"dispatch log {location}: the configured [log] hmac_key is not the key this log "
            "was created with; use the original key"
        )


class ReaderPool(Generic[C]):
    """A few idle read connections kept for reuse: a stream costs a connection, not a login.

    Each stream takes its own connection (an unfinished read must never hold a snapshot or
    transaction open on the connection that appends) and gives it back when it ends.
    """

    def __init__(
        self,
        open_: Callable[[], C],
        reset: Callable[[C], bool],
        close: Callable[[C], None],
        *,
        size: int = 4,
    ) -> None:
        self._open = open_
        self._reset = reset
        self._close = close
        self._size = size
        self._idle: list[C] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> C:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._open()

    def give(self, conn: C) -> None:
        """Return a connection whose stream ended; it is closed if it cannot be reused."""
        try:
            reusable = self._reset(conn)
        except Exception:
            reusable = False
        with self._lock:
            if reusable and not self._closed and len(self._idle) < self._size:
                self._idle.append(conn)
                return
        self._close(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._close(conn)


class SmallTablesReader:
    """What both stores read alike from the log's small tables (``log_meta``,
    ``schema_migrations``, ``verified_heads``): one definition, mixed into each store.

    A store provides ``chain``, ``_version`` (the schema version it opened) and
    ``_stream(sql, params)``, which yields rows of a query in this module's SQL (the same
    text on SQLite and PostgreSQL: no parameters).
    """

    chain: Chain
    _version: int
    #: The triggers that make the log's tables append-only, by the schema version that
    #: added them (each store names its own).
    GUARDS: tuple[tuple[int, str], ...] = ()
    #: (name, enabled) of every trigger on the log's tables, in the store's own SQL.
    TRIGGERS_QUERY = ""

    def _stream(self, sql: str, params: Sequence[object]) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError  # provided by the store

    def guard_problems(self) -> list[str]:
        """The append-only triggers that are missing or disabled. The log never drops or
        disables one: whoever did went around it, and the tables no longer refuse changes."""
        states = {
            str(name): bool(enabled) for name, enabled in self._stream(self.TRIGGERS_QUERY, ())
        }
        missing = [n for v, n in self.GUARDS if v <= self._version and n not in states]
        disabled = [n for v, n in self.GUARDS if v <= self._version and states.get(n) is False]
        problems = []
        if missing:
            problems.append(f"trigger(s) {', '.join(missing)} were dropped")
        if disabled:
            problems.append(f"trigger(s) {', '.join(disabled)} are disabled")
        if problems:
            problems[-1] += (
                ": the log's tables no longer refuse changes (done outside mash-requests)"
            )
        return problems

    def log_table_problems(self) -> tuple[str, ...]:
        """Rows of the log's small tables the log never writes (see ChainSource)."""
        keys = [str(row[0]) for row in self._stream("SELECT key FROM log_meta", ())]
        versions = [
            int(row[0]) for row in self._stream("SELECT version FROM schema_migrations", ())
        ]
        unsealed = 0
        if self._version >= HEADS_VERSION:
            heads = self._stream(HEADS_QUERY, ())
            unsealed = sum(sealed_head(self.chain, row) is None for row in heads)
        return table_problems(keys, versions, self._version, unsealed) + tuple(
            self.guard_problems()
        )

    def latest_verified_head(self) -> VerifiedHead | None:
        """The most recently stored verified head whose seal verifies, if any."""
        return self._first_sealed_head("id DESC")

    def furthest_verified_head(self) -> VerifiedHead | None:
        """The sealed verified head with the highest seq (the newest of those), if any."""
        return self._first_sealed_head("seq DESC, id DESC")

    def _first_sealed_head(self, order: str) -> VerifiedHead | None:
        if self._version < HEADS_VERSION:
            return None
        for row in self._stream(f"{HEADS_QUERY} ORDER BY {order}", ()):
            head = sealed_head(self.chain, row)
            if head is not None:
                return head
        return None
