"""The database itself refuses to change or remove events, on every backend."""

from __future__ import annotations

import pytest
from audit_helpers import RawLog, prepared

from mash_requests.audit import EventStore


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET case_ref = 'X'",
        "UPDATE events SET hash = 'x' WHERE seq = 1",
        "DELETE FROM events",
        "DELETE FROM events WHERE seq = 1",
    ],
)
def test_update_and_delete_are_refused(store: EventStore, raw: RawLog, statement: str) -> None:
    """UPDATE and DELETE of events abort in the database, and the event stays as written."""
    before = store.append(prepared())
    with pytest.raises(Exception, match="append-only"):
        raw.execute(statement)
    assert list(store.events()) == [before]


@pytest.mark.parametrize(
    "statement", ["UPDATE log_meta SET value = 'sha256'", "DELETE FROM log_meta"]
)
def test_log_metadata_is_write_once(store: EventStore, raw: RawLog, statement: str) -> None:
    """The record of how the log is hashed cannot be changed or removed."""
    with pytest.raises(Exception, match="write-once"):
        raw.execute(statement)
