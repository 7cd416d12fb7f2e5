"""[log] configuration: LogSettings.from_table and open_store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mash_requests._tables import Table
from mash_requests.audit import LogSettings, open_store
from mash_requests.audit.sqlite import SQLiteEventStore
from mash_requests.errors import ConfigError

WHERE = "config mash-requests.toml: [log]"


def table(data: dict[str, Any], base_dir: Path) -> Table:
    return Table(data, where=WHERE, base_dir=base_dir)


def test_defaults_to_sqlite_in_data_dir(tmp_path: Path) -> None:
    """An empty [log] means SQLite at <data_dir>/dispatch-log.sqlite3, no key."""
    settings = LogSettings.from_table(table({}, tmp_path), data_dir=tmp_path / "data")
    assert settings == LogSettings(
        backend="sqlite", path=tmp_path / "data" / "dispatch-log.sqlite3"
    )


def test_relative_path_is_against_config_folder(tmp_path: Path) -> None:
    """A relative path is resolved against the config file's folder."""
    settings = LogSettings.from_table(
        table({"path": "logs/x.sqlite3"}, tmp_path), data_dir=tmp_path / "data"
    )
    assert settings.path == tmp_path / "logs" / "x.sqlite3"


def test_postgres_reads_dsn_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """backend = "postgres" takes its DSN from the variable named by dsn_env."""
    monkeypatch.setenv("LOG_DSN", "postgresql://u:secret@db/log")
    settings = LogSettings.from_table(
        table({"backend": "postgres", "dsn_env": "LOG_DSN"}, tmp_path), data_dir=tmp_path
    )
    assert settings.dsn == "postgresql://u:secret@db/log"
    assert "secret" not in repr(settings)


def test_postgres_without_dsn_is_refused(tmp_path: Path) -> None:
    """backend = "postgres" without dsn_env or dsn_file names the missing key."""
    with pytest.raises(ConfigError, match=r"\[log\] dsn: is required"):
        LogSettings.from_table(table({"backend": "postgres"}, tmp_path), data_dir=tmp_path)


def test_literal_dsn_is_refused(tmp_path: Path) -> None:
    """A DSN written in the config (it may hold a password) is refused."""
    with pytest.raises(ConfigError, match="secrets are not written in the config"):
        LogSettings.from_table(
            table({"backend": "postgres", "dsn": "postgresql://x"}, tmp_path), data_dir=tmp_path
        )


def test_dsn_with_sqlite_is_refused(tmp_path: Path) -> None:
    """A DSN for the SQLite backend is a mistake and is named."""
    with pytest.raises(ConfigError, match='dsn: is only used with backend = "postgres"'):
        LogSettings.from_table(table({"dsn_env": "X"}, tmp_path), data_dir=tmp_path)


def test_path_with_postgres_is_refused(tmp_path: Path) -> None:
    """A SQLite path for the PostgreSQL backend is a mistake and is named."""
    with pytest.raises(ConfigError, match='path: is only used with backend = "sqlite"'):
        LogSettings.from_table(
            table({"backend": "postgres", "path": "x", "dsn_env": "X"}, tmp_path),
            data_dir=tmp_path,
        )


def test_unknown_backend_is_refused(tmp_path: Path) -> None:
    """An unknown backend lists the known ones."""
    with pytest.raises(ConfigError, match="backend: expected one of sqlite, postgres"):
        LogSettings.from_table(table({"backend": "mysql"}, tmp_path), data_dir=tmp_path)


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    """A misspelt key in [log] is refused, not ignored."""
    with pytest.raises(ConfigError, match="pathh: unknown key"):
        LogSettings.from_table(table({"pathh": "x"}, tmp_path), data_dir=tmp_path)


def test_hmac_key_from_file(tmp_path: Path) -> None:
    """hmac_key_file supplies the key as bytes, kept out of repr."""
    (tmp_path / "log.key").write_text("0123456789abcdef" * 4 + "\n")
    settings = LogSettings.from_table(
        table({"hmac_key_file": "log.key"}, tmp_path), data_dir=tmp_path
    )
    assert settings.hmac_key == b"0123456789abcdef" * 4
    assert "0123456789abcdef" not in repr(settings)


def test_short_hmac_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An HMAC key shorter than 32 characters is refused with how to make one."""
    monkeypatch.setenv("LOG_KEY", "short")
    with pytest.raises(ConfigError, match="hmac_key: must be at least 32 characters"):
        LogSettings.from_table(table({"hmac_key_env": "LOG_KEY"}, tmp_path), data_dir=tmp_path)


def test_open_store_creates_sqlite_log(tmp_path: Path) -> None:
    """open_store on SQLite settings creates the log file and returns a working store."""
    settings = LogSettings(path=tmp_path / "new" / "log.sqlite3")
    store = open_store(settings)
    try:
        assert isinstance(store, SQLiteEventStore)
        assert settings.path.is_file()
    finally:
        store.close()
