"""A log belongs to us alone: a database holding another application's tables is refused.

Pointing ``[log] path`` (or the DSN's schema) at another application's database must never
add the log's tables to it, and must say so clearly, for writers and readers alike.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from mash_requests.audit import LogSettings, open_store
from mash_requests.cli import main
from mash_requests.errors import ConfigError


def _foreign(backend: str, empty_location: str) -> tuple[LogSettings, str]:
    """Another application's database (a ``patients`` table) where the log is configured."""
    if backend == "sqlite":
        path = Path(empty_location)
        path.parent.mkdir(parents=True)
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT)")
            conn.execute("INSERT INTO patients (name) VALUES ('someone')")
        conn.close()
        return LogSettings(path=path), empty_location
    import psycopg

    with psycopg.connect(empty_location, autocommit=True) as conn:
        conn.execute("CREATE TABLE patients (id serial PRIMARY KEY, name text)")
    return LogSettings(backend="postgres", dsn=empty_location), empty_location


def _tables(backend: str, location: str) -> set[str]:
    if backend == "sqlite":
        with sqlite3.connect(location) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        conn.close()
        return {str(row[0]) for row in rows}
    import psycopg

    with psycopg.connect(location, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    return {str(row[0]) for row in rows}


@pytest.mark.parametrize("must_exist", [False, True])
def test_database_of_another_application_is_refused(
    backend: str, empty_location: str, must_exist: bool
) -> None:
    """Opening it to write or to read raises ConfigError naming the foreign table; no table
    of the log is added."""
    settings, location = _foreign(backend, empty_location)
    with pytest.raises(ConfigError, match=r"not the (dispatch )?log's \(patients\)"):
        open_store(settings, must_exist=must_exist)
    assert _tables(backend, location) == {"patients"}


def test_log_beside_a_foreign_table_is_refused(backend: str, empty_location: str) -> None:
    """A log that someone later shares with another table is refused too."""
    if backend == "sqlite":
        settings = LogSettings(path=Path(empty_location))
    else:
        settings = LogSettings(backend="postgres", dsn=empty_location)
    open_store(settings).close()
    if backend == "sqlite":
        with sqlite3.connect(empty_location) as conn:
            conn.execute("CREATE VIEW cases AS SELECT 1")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(empty_location, autocommit=True) as conn:
            conn.execute("CREATE TABLE cases (id int)")
    with pytest.raises(ConfigError, match=r"\(cases\)"):
        open_store(settings)


def test_cli_refuses_another_applications_file(tmp_path: Path) -> None:
    """audit verify exits 2 with one 'Error:' line; the file is unchanged."""
    path = tmp_path / "app.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE patients (id INTEGER PRIMARY KEY)")
    conn.close()
    config = tmp_path / "mash-requests.toml"
    config.write_text(
        '[mash]\nname = "Testbury MASH"\nsender = "mash@testbury.gov.uk"\n'
        f'data_dir = "data"\n\n[log]\npath = "{path}"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["audit", "verify", "--config", str(config)])
    assert result.exit_code == 2
    assert result.output.startswith("Error: [log] path ")
    assert "Traceback" not in result.output
    assert "point [log] path at a file of its own" in result.output
    assert _tables("sqlite", str(path)) == {"patients"}
