"""Fixtures for the dispatch-log tests: a fresh store on each backend, and sample events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mash_requests.audit import EventStore
from mash_requests.audit.sqlite import SQLiteEventStore

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    """An empty dispatch log on each backend."""
    opened = SQLiteEventStore(tmp_path / "log" / "dispatch-log.sqlite3")
    yield opened
    opened.close()
