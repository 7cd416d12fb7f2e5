"""A record damaged on disk is reported as a LogError naming the event, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from audit_helpers import RawLog, canonical, log_section, prepared, sent
from click.testing import CliRunner

from mash_requests.audit import EventStore
from mash_requests.audit.verify import verify_chain
from mash_requests.cli import main
from mash_requests.errors import LogError

KEY = "key-C-1-police"

#: What a damaged record may look like: not JSON, JSON but not a record, a record missing a
#: field, and a record with an event kind no version wrote.
DAMAGES: dict[str, Callable[[dict[str, object]], str]] = {
    "not_json": lambda document: '{"v": 1, "seq": 2, "event": {',
    "not_a_record": lambda document: "[1, 2, 3]",
    "missing_time": lambda document: canonical(
        {k: v for k, v in document.items() if k != "recorded_at"}
    ),
    "unknown_kind": lambda document: canonical(
        {**document, "event": {**document["event"], "kind": "teleported"}}  # type: ignore[dict-item]
    ),
}

DAMAGED_MESSAGE = (
    r"event 2 is damaged \(its stored record cannot be read\); "
    r"run `mash-requests audit verify`"
)


@pytest.fixture(params=sorted(DAMAGES))
def damaged(request: pytest.FixtureRequest, store: EventStore, raw: RawLog) -> EventStore:
    """``store`` with three events, the second (the key's ``sent``) damaged in one way."""
    store.append_many([prepared(), sent(), prepared("C-2")])
    raw.set_column(2, "record", DAMAGES[request.param](raw.record(2)))
    return store


def test_reading_events_names_the_damaged_event(damaged: EventStore) -> None:
    """events() raises LogError naming the damaged seq and the verify command."""
    with pytest.raises(LogError, match=DAMAGED_MESSAGE):
        list(damaged.events())


def test_last_outcome_names_the_damaged_event(damaged: EventStore) -> None:
    """last_outcome raises LogError naming the damaged seq when that is the key's outcome."""
    with pytest.raises(LogError, match=DAMAGED_MESSAGE):
        damaged.last_outcome(KEY)


def test_audit_query_on_damaged_record_is_an_error_line(
    backend: str, damaged: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """audit query prints 'Error: … event 2 is damaged …' and exits 2, with no traceback."""
    config = tmp_path / "c.toml"
    config.write_text(log_section(backend, damaged, monkeypatch), encoding="utf-8")
    result = CliRunner().invoke(main, ["audit", "query", "--config", str(config)])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: dispatch log ")
    assert "event 2 is damaged" in line


def test_a_dropped_log_table_is_named_as_changed_outside_the_log(
    store: EventStore, raw: RawLog
) -> None:
    """verified_heads dropped: the error says the log was altered outside mash-requests and
    to restore it, not to check the disk space or the server."""
    with raw.unguarded():
        raw.execute("DROP TABLE verified_heads")
    with pytest.raises(LogError) as caught:
        verify_chain(store)
    message = str(caught.value)
    assert "which mash-requests never does" in message
    assert "free disk space" not in message and "server is running" not in message


def test_a_dropped_or_disabled_append_only_trigger_is_named(
    store: EventStore, raw: RawLog, backend: str
) -> None:
    """The log never drops or disables its own triggers: verify names one that is gone, even
    when every row still verifies, since the tables no longer refuse changes."""
    store.append(prepared("C-1"))
    if backend == "sqlite":
        raw.execute("DROP TRIGGER events_no_delete")
        gone = "trigger(s) events_no_delete were dropped"
    else:
        raw.execute("ALTER TABLE events DISABLE TRIGGER events_no_change")
        gone = "trigger(s) events_no_change are disabled"
    result = verify_chain(store)
    assert not result.ok
    assert any(gone in problem for problem in result.table_problems)
    assert "no longer refuse changes" in result.summary()
