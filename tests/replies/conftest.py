"""Fixtures for the reply tests: a workspace with a replies folder, a real Dovecot."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from dovecot import Dovecot, start, stop
from replies_helpers import with_replies_folder

from workspace import Workspace


@pytest.fixture
def replies_folder(workspace: Workspace) -> Path:
    """The workspace's [replies] folder source (``replies/`` beside the config)."""
    return with_replies_folder(workspace)


@pytest.fixture(scope="session")
def imap_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def dovecot(imap_ca: trustme.CA) -> Iterator[Dovecot]:
    """A real Dovecot on loopback (skips with the reason where it cannot start)."""
    try:
        server = start(imap_ca)
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"Dovecot cannot be started here: {exc}")
    yield server
    stop(server)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def log_backend(
    request: pytest.FixtureRequest, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The workspace's log on each backend: SQLite, or a PostgreSQL schema of its own."""
    name: str = request.param
    if name == "sqlite":
        yield name
        return
    dsn = os.environ.get("MASH_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("PostgreSQL tests need MASH_TEST_POSTGRES_DSN (see .ci/run)")
    import psycopg
    from psycopg import conninfo

    schema = f"replies_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    monkeypatch.setenv(
        "MASH_REPLIES_TEST_DSN", conninfo.make_conninfo(dsn, options=f"-c search_path={schema}")
    )
    with workspace.config.open("a", encoding="utf-8") as handle:
        handle.write('\n[log]\nbackend = "postgres"\ndsn_env = "MASH_REPLIES_TEST_DSN"\n')
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())
