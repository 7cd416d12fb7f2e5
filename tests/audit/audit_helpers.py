"""Helpers for the dispatch-log tests: sample events, and raw access to a store's database.

:class:`RawLog` plays the attacker: it goes around the store, switches the append-only
triggers off, edits rows, and switches them back on, so the tests can show that the hash
chain catches what the database guard alone would not.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from mash_requests.audit import Event, EventKind, EventStore
from mash_requests.audit._rows import INDEXED_FIELDS
from mash_requests.audit.chain import Chain

#: ``store_factory(hmac_key=None)`` makes a fresh, empty log (see conftest).
StoreFactory = Callable[..., EventStore]


def sent(case_ref: str = "C-1", **fields: object) -> Event:
    """A ``sent`` event with typical evidence; keyword arguments override fields."""
    values: dict[str, object] = {
        "request_ref": f"{case_ref}-police",
        "request_key": f"key-{case_ref}-police",
        "partner": "police",
        "recipients": ("mash@police.uk",),
        "gateway": "smtp",
        "sender": "mash@council.gov.uk",
        "message_id": f"<{case_ref}@council.gov.uk>",
        "form_sha256": "ab" * 32,
        "form_filename": "referral.pdf",
    }
    values.update(fields)
    return Event(EventKind.SENT, case_ref, **values)  # type: ignore[arg-type]


def prepared(case_ref: str = "C-1", **fields: object) -> Event:
    """A ``prepared`` event for the same request as :func:`sent`."""
    values: dict[str, object] = {
        "request_ref": f"{case_ref}-police",
        "request_key": f"key-{case_ref}-police",
        "partner": "police",
        "recipients": ("mash@police.uk",),
        "template": "rfi-police",
        "operator": "jsmith",
    }
    values.update(fields)
    return Event(EventKind.PREPARED, case_ref, **values)  # type: ignore[arg-type]


def postgres_dsn_for_schema(dsn: str, schema: str) -> str:
    """``dsn`` with its search_path set to ``schema`` (each test's private schema)."""
    from psycopg import conninfo

    return conninfo.make_conninfo(dsn, options=f"-c search_path={schema}")


def canonical(document: dict[str, Any]) -> str:
    """JSON the way the chain writes it (the attacker knows the format)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class RawLog:
    """The store's database, reached directly; ``?`` placeholders on both backends."""

    conn: Any
    backend: str

    @classmethod
    @contextmanager
    def open(cls, store: EventStore) -> Iterator[RawLog]:
        if type(store).__name__ == "SQLiteEventStore":
            conn: Any = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
            backend = "sqlite"
        else:
            import psycopg

            conn = psycopg.connect(store._dsn, autocommit=True)  # type: ignore[attr-defined]
            backend = "postgres"
        try:
            yield cls(conn, backend)
        finally:
            conn.close()

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        if self.backend == "postgres":
            sql = sql.replace("?", "%s")
        cursor = self.conn.execute(sql.encode() if self.backend == "postgres" else sql, params)
        return list(cursor.fetchall()) if cursor.description else []

    def unguarded(self) -> AbstractContextManager[None]:
        """Switch the append-only triggers off for the block, as an attacker would."""
        return self._unguarded_sqlite() if self.backend == "sqlite" else self._unguarded_pg()

    @contextmanager
    def _unguarded_sqlite(self) -> Iterator[None]:
        triggers = self.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"
        )
        self.execute("BEGIN")
        for name in ("events_no_update", "events_no_delete"):
            self.execute(f"DROP TRIGGER {name}")
        yield
        for (sql,) in triggers:
            self.execute(sql)
        self.execute("COMMIT")

    @contextmanager
    def _unguarded_pg(self) -> Iterator[None]:
        self.execute("ALTER TABLE events DISABLE TRIGGER USER")
        try:
            yield
        finally:
            self.execute("ALTER TABLE events ENABLE TRIGGER USER")

    # -- what an attacker does ---------------------------------------------------------------

    def record(self, seq: int) -> dict[str, Any]:
        ((text,),) = self.execute("SELECT record FROM events WHERE seq = ?", [seq])
        document: dict[str, Any] = json.loads(text)
        return document

    def set_column(self, seq: int, column: str, value: object) -> None:
        with self.unguarded():
            sql = f"UPDATE events SET {column} = ? WHERE seq = ?"  # noqa: S608 (test's own names)
            self.execute(sql, [value, seq])

    def edit_event(
        self, seq: int, field: str, value: object, *, rehash_with: Chain | None = None
    ) -> None:
        """Change one event field in the record (and its column), optionally re-hashing."""
        document = self.record(seq)
        document["event"][field] = value
        self.replace_record(seq, document, rehash_with=rehash_with)

    def replace_record(
        self, seq: int, document: dict[str, Any], *, rehash_with: Chain | None = None
    ) -> None:
        text = canonical(document)
        with self.unguarded():
            self.execute("UPDATE events SET record = ? WHERE seq = ?", [text, seq])
            for column in INDEXED_FIELDS:
                self.execute(
                    f"UPDATE events SET {column} = ? WHERE seq = ?",  # noqa: S608
                    [document["event"].get(column), seq],
                )
            if rehash_with is not None:
                new_hash = rehash_with.digest(text.encode())
                self.execute("UPDATE events SET hash = ? WHERE seq = ?", [new_hash, seq])

    def delete(self, seq: int) -> None:
        with self.unguarded():
            self.execute("DELETE FROM events WHERE seq = ?", [seq])

    def shift(self, after_seq: int, delta: int) -> None:
        """Renumber every event after ``after_seq`` by ``delta`` (to hide a gap or make room)."""
        with self.unguarded():
            # Through negative numbers: the primary key is checked row by row.
            self.execute("UPDATE events SET seq = -seq WHERE seq > ?", [after_seq])
            self.execute("UPDATE events SET seq = -seq + ? WHERE seq < 0", [delta])

    def swap(self, a: int, b: int) -> None:
        """Exchange the positions of two events."""
        with self.unguarded():
            self.execute("UPDATE events SET seq = -1 WHERE seq = ?", [a])
            self.execute("UPDATE events SET seq = ? WHERE seq = ?", [a, b])
            self.execute("UPDATE events SET seq = ? WHERE seq = -1", [b])

    def insert_after(self, seq: int, event_fields: dict[str, Any], chain: Chain) -> None:
        """Slip a well-formed event in after ``seq``, renumbering the rest up by one."""
        self.shift(seq, 1)
        prev_hash = self.execute("SELECT hash FROM events WHERE seq = ?", [seq])[0][0]
        recorded = self.record(seq)["recorded_at"]
        document = {
            "v": 1,
            "seq": seq + 1,
            "recorded_at": recorded,
            "prev_hash": prev_hash,
            "event": event_fields,
        }
        text = canonical(document)
        columns = ("seq", "recorded_at", "prev_hash", "hash", "record", *INDEXED_FIELDS)
        values = [seq + 1, recorded, prev_hash, chain.digest(text.encode()), text]
        values += [event_fields.get(name) for name in INDEXED_FIELDS]
        with self.unguarded():
            self.execute(
                f"INSERT INTO events ({', '.join(columns)})"  # noqa: S608
                f" VALUES ({', '.join('?' * len(columns))})",
                values,
            )


def open_store_at(backend: str, location: str) -> EventStore:
    """Open the store a test made, from another process (location: path or DSN)."""
    from pathlib import Path

    if backend == "sqlite":
        from mash_requests.audit.sqlite import SQLiteEventStore

        return SQLiteEventStore(Path(location))
    from mash_requests.audit.postgres import PostgresEventStore

    return PostgresEventStore(location)


def append_worker(backend: str, location: str, worker: int, count: int) -> None:
    """Child process: append ``count`` events one by one, each its own durable transaction."""
    store = open_store_at(backend, location)
    try:
        for i in range(count):
            store.append(
                prepared(f"W{worker}", details={"worker": worker, "i": i}, operator=f"p{worker}")
            )
    finally:
        store.close()


def log_section(backend: str, store: EventStore, monkeypatch: Any) -> str:
    """A config's ``[log]`` table naming ``store`` (a PostgreSQL DSN goes via the environment)."""
    if backend == "sqlite":
        return f'[log]\npath = "{store.path}"\n'  # type: ignore[attr-defined]
    monkeypatch.setenv("MASH_TEST_LOG_DSN", store._dsn)  # type: ignore[attr-defined]
    return '[log]\nbackend = "postgres"\ndsn_env = "MASH_TEST_LOG_DSN"\n'


def location_of(backend: str, store: EventStore) -> str:
    """Where a test's store is, for :func:`open_store_at` (a file path or a DSN)."""
    if backend == "sqlite":
        return str(store.path)  # type: ignore[attr-defined]
    return str(store._dsn)  # type: ignore[attr-defined]


#: How long a claiming precondition dawdles after finding the key free: long enough that,
#: without the store's write lock, the other process would find it free too.
CLAIM_DAWDLE_SECONDS = 0.05


def claim_worker(
    backend: str,
    location: str,
    worker: int,
    rounds: int,
    barrier: Any,
    results: Any,
) -> None:
    """Child process: in each round, race the other workers to claim the key ``race-<round>``.

    A claim is ``append(prepared, precondition=<no event for the key yet>)``; the worker puts
    ``(round, worker, won)`` on ``results``.
    """
    import time

    from mash_requests.errors import DuplicateRequestError

    store = open_store_at(backend, location)
    try:
        for round_ in range(rounds):
            key = f"race-{round_}"

            def key_is_free(key: str = key) -> None:
                if store.last_event_for_key(key) is not None:
                    raise DuplicateRequestError(f"request {key} was already claimed")
                time.sleep(CLAIM_DAWDLE_SECONDS)

            barrier.wait(timeout=60)
            try:
                store.append(
                    prepared(f"W{worker}", request_key=key, operator=f"p{worker}"),
                    precondition=key_is_free,
                )
            except DuplicateRequestError:
                results.put((round_, worker, False))
            else:
                results.put((round_, worker, True))
    finally:
        store.close()


def damage_sqlite_index(path: Any, index: str, old: bytes, new: bytes) -> int:
    """Edit the bytes of one SQLite index's root page on disk, the table rows untouched.

    Every occurrence of ``old`` in that page becomes ``new`` (same length), as a disk fault
    or an editor of index pages would leave it. The WAL is folded into the file first, and
    no connection may be open. Returns how many occurrences were changed.
    """
    assert len(old) == len(new)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        ((root,),) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND name = ?", (index,)
        ).fetchall()
    finally:
        conn.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        page = f.read(page_size)
        changed = page.count(old)
        f.seek((root - 1) * page_size)
        f.write(page.replace(old, new))
    return changed
