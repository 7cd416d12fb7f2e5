"""Fixtures for the dispatch-log tests: fresh stores on each backend, and raw access to them.

PostgreSQL tests run when MASH_TEST_POSTGRES_DSN names a server (``.ci/run`` sets it); each
store gets a schema of its own, dropped afterwards, so tests never see each other's events.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_helpers import RawLog, StoreFactory, postgres_dsn_for_schema

from mash_requests.audit import EventStore
from mash_requests.audit.sqlite import SQLiteEventStore

POSTGRES_DSN = os.environ.get("MASH_TEST_POSTGRES_DSN")

BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each store backend by name; PostgreSQL skips when no test server is configured."""
    name: str = request.param
    if name == "postgres" and not POSTGRES_DSN:
        pytest.skip("PostgreSQL store tests need MASH_TEST_POSTGRES_DSN (see .ci/run)")
    return name


@pytest.fixture
def store_factory(backend: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """Makes fresh, empty logs on the backend: ``store_factory(hmac_key=None)``."""
    opened: list[EventStore] = []
    schemas: list[str] = []

    def make(*, hmac_key: bytes | None = None) -> EventStore:
        store: EventStore
        if backend == "sqlite":
            path = tmp_path / f"log-{len(opened)}" / "dispatch-log.sqlite3"
            store = SQLiteEventStore(path, hmac_key=hmac_key)
        else:
            from mash_requests.audit.postgres import PostgresEventStore

            schema = f"test_{uuid.uuid4().hex[:12]}"
            _admin(f"CREATE SCHEMA {schema}")
            schemas.append(schema)
            assert POSTGRES_DSN is not None
            store = PostgresEventStore(
                postgres_dsn_for_schema(POSTGRES_DSN, schema), hmac_key=hmac_key
            )
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    for schema in schemas:
        _admin(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def empty_location(backend: str, tmp_path: Path) -> Iterator[str]:
    """Where a log could be but is not: a path to nothing, or a DSN of an empty schema."""
    if backend == "sqlite":
        yield str(tmp_path / "no-such-folder" / "dispatch-log.sqlite3")
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE SCHEMA {schema}")
    assert POSTGRES_DSN is not None
    try:
        yield postgres_dsn_for_schema(POSTGRES_DSN, schema)
    finally:
        _admin(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def store(store_factory: StoreFactory) -> EventStore:
    """An empty dispatch log on each backend."""
    return store_factory()


@pytest.fixture
def raw(store: EventStore) -> Iterator[RawLog]:
    """Direct access to ``store``'s database, as an attacker with the file or a login has."""
    with RawLog.open(store) as raw_log:
        yield raw_log


def _admin(statement: str) -> None:
    import psycopg

    assert POSTGRES_DSN is not None
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(statement.encode())
