"""Readers open an existing log only: a missing log is an error, never created as empty.

An auditor running ``audit verify`` against a mistyped [log] path must not be told
"intact: 0 events".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from audit_helpers import location_of, prepared
from click.testing import CliRunner

from mash_requests.audit import EventStore, LogSettings, open_store
from mash_requests.cli import main
from mash_requests.errors import ConfigError


def _settings(backend: str, location: str) -> LogSettings:
    if backend == "sqlite":
        return LogSettings(path=Path(location))
    return LogSettings(backend="postgres", dsn=location)


def _nothing_created(backend: str, location: str) -> bool:
    if backend == "sqlite":
        return not Path(location).parent.exists()
    import psycopg

    with psycopg.connect(location, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")
        return (row.fetchone() or [None])[0] == 0


def test_missing_log_is_refused_and_not_created(backend: str, empty_location: str) -> None:
    """open_store(must_exist=True) where there is no log raises ConfigError and creates none."""
    with pytest.raises(ConfigError, match=r"^no dispatch log at "):
        open_store(_settings(backend, empty_location), must_exist=True)
    assert _nothing_created(backend, empty_location)


def test_existing_log_opens_for_reading(backend: str, store: EventStore) -> None:
    """open_store(must_exist=True) opens a log that exists and reads its events."""
    store.append(prepared())
    reader = open_store(_settings(backend, location_of(backend, store)), must_exist=True)
    try:
        assert [s.seq for s in reader.events()] == [1]
    finally:
        reader.close()


def test_empty_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A file that exists but holds no log is refused, and not turned into one."""
    path = tmp_path / "dispatch-log.sqlite3"
    path.touch()
    with pytest.raises(ConfigError, match="no dispatch log at"):
        open_store(LogSettings(path=path), must_exist=True)
    assert path.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dispatch-log.sqlite3"]


@pytest.mark.parametrize(
    "command",
    [["verify"], ["query"], ["report", "--out", "r.html"], ["checkpoint", "--out", "cp.json"]],
    ids=lambda c: c[0],
)
def test_audit_command_on_missing_log_exits_2(
    backend: str,
    empty_location: str,
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each read-only audit command refuses a log that is not there: exit 2, one Error line."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.toml"
    if backend == "sqlite":
        config.write_text(f'[log]\npath = "{empty_location}"\n', encoding="utf-8")
        expected = f"Error: no dispatch log at {empty_location}; check [log] path in the config"
    else:
        monkeypatch.setenv("MASH_TEST_LOG_DSN", empty_location)
        config.write_text('[log]\nbackend = "postgres"\ndsn_env = "MASH_TEST_LOG_DSN"\n')
        expected = "Error: no dispatch log at postgresql://"
    result = CliRunner().invoke(main, ["audit", *command, "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(expected)
    assert result.stdout == ""
    assert _nothing_created(backend, empty_location)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]
