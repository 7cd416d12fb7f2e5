"""The operational log names the command run by its full path ("audit verify"), so a SIEM
or a scheduled task's history tells one nested command from its siblings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from mash_requests.cli import main
from workspace import Workspace


def started(workspace: Workspace, *args: str) -> dict[str, Any]:
    """Run ``mash-requests -v --log-format json --log-file F ARGS``; its 'command started'."""
    log_file = workspace.root / "mash.log"
    log_file.unlink(missing_ok=True)
    result = CliRunner().invoke(
        main, ["-v", "--log-format", "json", "--log-file", str(log_file), *args]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    records = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    [record] = [r for r in records if r["message"] == "command started"]
    return record


def test_nested_commands_are_logged_by_their_full_path(workspace: Workspace) -> None:
    """audit verify, audit query, form check, gateway check: the group and the command."""
    config = str(workspace.config)
    case = workspace.write_case(workspace.example_case())
    form = workspace.forms / "MASH-2026-0412.pdf"
    assert (
        started(workspace, "send-request", "--case", str(case), "--config", config)["command"]
        == "send-request"
    )
    assert started(workspace, "audit", "verify", "--config", config)["command"] == "audit verify"
    assert started(workspace, "audit", "query", "--config", config)["command"] == "audit query"
    assert (
        started(workspace, "form", "check", str(form), "--case-ref", "MASH-2026-0412")["command"]
        == "form check"
    )
    assert started(workspace, "gateway", "check", "--config", config)["command"] == (
        "gateway check"
    )


def test_a_command_that_fails_is_logged_by_its_full_path(workspace: Workspace) -> None:
    """A refused run (exit 2) still names the nested command that was asked for."""
    missing = str(workspace.root / "no-such.toml")
    record = started(workspace, "audit", "verify", "--config", missing)
    assert record["command"] == "audit verify"


def test_a_group_without_its_command_is_logged_by_the_group(workspace: Workspace) -> None:
    """'audit --help' and an unknown subcommand name only what is known: the group."""
    assert started(workspace, "audit", "--help")["command"] == "audit"


def test_the_text_log_names_the_full_path_too(workspace: Workspace, tmp_path: Path) -> None:
    """The text format writes the same field: command="audit verify" (quoted: a space)."""
    log_file = tmp_path / "text.log"
    CliRunner().invoke(
        main,
        ["-v", "--log-file", str(log_file), "audit", "verify", "--config", str(workspace.config)],
    )
    assert 'command="audit verify"' in log_file.read_text(encoding="utf-8")
