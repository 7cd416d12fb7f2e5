"""`mash-requests init`: a starter that works as it is, and never overwrites by accident."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from mash_requests.case_schema import case_schema
from mash_requests.cli import main

FILES = ["mash-requests.toml", "cases/MASH-2026-0001.json", "forms/MASH-2026-0001.pdf",
         "case.schema.json"]  # fmt: skip


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MASH_REQUESTS_CONFIG", raising=False)
    return tmp_path


def test_init_writes_the_starter_files(here: Path) -> None:
    """init DIR writes the config, the example case and form, and the schema there."""
    result = CliRunner().invoke(main, ["init", "my-mash"])
    assert result.exit_code == 0, result.output
    for name in FILES:
        assert (here / "my-mash" / name).is_file(), name
    schema = json.loads((here / "my-mash" / "case.schema.json").read_text())
    assert schema == case_schema()


def test_the_printed_next_command_sends_the_example_to_the_outbox(here: Path) -> None:
    """The command init prints runs as it is: three requests to the outbox, exit 0."""
    init = CliRunner().invoke(main, ["init", "my-mash"])
    commands = [line.strip() for line in init.output.splitlines() if "send-request" in line]
    assert len(commands) == 2 and commands[0].endswith("--dry-run")
    args = shlex.split(commands[1])[1:]
    sent = CliRunner().invoke(main, ["send-request", *args])
    assert sent.exit_code == 0, sent.output
    assert "3 of 3 request(s) sent for case MASH-2026-0001" in sent.output
    assert len(list((here / "my-mash" / "mash-data" / "outbox").glob("*.eml"))) == 3
    assert (here / "my-mash" / "mash-data" / "dispatch-log.sqlite3").is_file()


def test_init_refuses_to_overwrite_and_writes_nothing(here: Path) -> None:
    """With one starter file already there, init exits 2, names it, and changes nothing."""
    (here / "mash-requests.toml").write_text("# mine\n")
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 2
    assert "mash-requests.toml: already there; nothing was written" in result.output
    assert "--force" in result.output
    assert (here / "mash-requests.toml").read_text() == "# mine\n"
    assert not (here / "cases").exists()


def test_force_replaces_the_starter_files(here: Path) -> None:
    """init --force replaces starter files that are there."""
    (here / "mash-requests.toml").write_text("# mine\n")
    result = CliRunner().invoke(main, ["init", "--force"])
    assert result.exit_code == 0, result.output
    assert "[partners.police]" in (here / "mash-requests.toml").read_text()


def test_init_into_an_unwritable_place_is_a_clear_error(here: Path) -> None:
    """A folder that cannot be made (a file is in the way) exits 2 with one Error line."""
    (here / "blocked").write_text("a file, not a folder")
    result = CliRunner().invoke(main, ["init", "blocked"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: blocked: is a file, not a folder")
    assert "Traceback" not in result.output


def test_the_starter_s_replies_and_chase_blocks_work_uncommented(here: Path) -> None:
    """The commented [replies] and [chase] blocks of the starter are valid as they stand:
    uncommented, the config loads and replies fetch reads the (new) folder."""
    from mash_requests.config import load_settings

    assert CliRunner().invoke(main, ["init", "my-mash"]).exit_code == 0
    config = here / "my-mash" / "mash-requests.toml"
    lines = config.read_text(encoding="utf-8").splitlines()
    start = lines.index("# [replies]")
    end = next(i for i, line in enumerate(lines) if line.startswith("# [chase]")) + 3
    for i in range(start, end + 1):
        lines[i] = lines[i].removeprefix("# ")
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings(config)
    assert settings.replies is not None and settings.replies.source == "folder"
    assert settings.replies.address == "mash-replies@council.example"
    # A fetch reads replies to requests in the log: send the starter's case first.
    case = here / "my-mash" / "cases" / "MASH-2026-0001.json"
    sent = CliRunner().invoke(main, ["send-request", "--config", str(config), "--case", str(case)])
    assert sent.exit_code == 0, sent.output
    (here / "my-mash" / "mash-data" / "replies").mkdir(parents=True)
    fetched = CliRunner().invoke(main, ["replies", "fetch", "--config", str(config)])
    assert fetched.exit_code == 0, fetched.output
