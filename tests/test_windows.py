"""Windows users' first problems: backslashes in TOML paths, and consoles that cannot show
every character (cp850, cp1252, or ASCII under a scheduled task)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mash_requests.cli import main
from mash_requests.config import load_settings
from mash_requests.errors import ConfigError
from workspace import Workspace

OPERATOR = "Zoë Łukasz → duty"


@pytest.mark.parametrize(
    ("line", "single", "forward"),
    [
        (r'data_dir = "C:\Users\mash\data"', r"'C:\Users\mash\data'", '"C:/Users/mash/data"'),
        (r'templates = "D:\mash\templates"', r"'D:\mash\templates'", '"D:/mash/templates"'),
        (r'data_dir = "\\server\share\mash"', r"'\\server\share\mash'", '"//server/share/mash"'),
    ],
)
def test_windows_path_in_double_quotes_gets_the_fix(
    tmp_path: Path, line: str, single: str, forward: str
) -> None:
    """A backslash path in "…" is refused with the same path in single quotes and with slashes."""
    config = tmp_path / "mash-requests.toml"
    config.write_text(f"[mash]\nname = 'x'\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    message = str(error.value)
    assert "not valid TOML" in message
    assert f"use single quotes ({single})" in message
    assert f"or forward slashes ({forward})" in message


def test_other_toml_errors_get_no_path_hint(tmp_path: Path) -> None:
    """A TOML error that has nothing to do with backslashes is reported without the hint."""
    config = tmp_path / "mash-requests.toml"
    config.write_text('[mash]\nname = "unterminated\n', encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert "single quotes" not in str(error.value)


def run(args: list[str], encoding: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    env.pop("MASH_REQUESTS_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "mash_requests", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",  # what the console got, read back whatever it is
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.fixture
def sent(workspace: Workspace) -> Workspace:
    """A log holding one case's requests, sent by an operator whose name is not ASCII."""
    workspace.config.write_text(
        workspace.config.read_text().replace('operator = "tester"', f'operator = "{OPERATOR}"'),
        encoding="utf-8",
    )
    case = workspace.write_case(workspace.example_case())
    result = CliRunner().invoke(
        main, ["send-request", "--config", str(workspace.config), "--case", str(case)]
    )
    assert result.exit_code == 0, result.output
    return workspace


@pytest.mark.parametrize("encoding", ["cp850", "cp1252", "ascii"])
def test_audit_query_never_crashes_on_the_console(sent: Workspace, encoding: str) -> None:
    """audit query prints every row on a console that cannot encode the operator's name."""
    args = ["audit", "query", "--events", "--format", "csv", "--config", str(sent.config)]
    done = run(args, encoding, sent.root)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "UnicodeEncodeError" not in done.stderr
    assert done.stdout.count("MASH-2026-0412-POLICE-") >= 2
    assert "Zo" in done.stdout and "ukasz" in done.stdout


@pytest.mark.parametrize("encoding", ["cp850", "cp1252", "ascii"])
def test_init_prints_a_folder_name_the_console_cannot_encode(tmp_path: Path, encoding: str) -> None:
    """init into "Łódź → MASH" writes the files and prints what it wrote, without a traceback."""
    done = run(["init", "Łódź → MASH"], encoding, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.count("wrote ") == 4
    assert (tmp_path / "Łódź → MASH" / "mash-requests.toml").is_file()
