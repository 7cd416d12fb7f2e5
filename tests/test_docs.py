"""The README documents every command and every config key, and its quick start is two commands."""

from __future__ import annotations

import re
from pathlib import Path

import click

from mash_requests.cli import main

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names.extend(_commands(command, f"{prefix}{name} "))
        else:
            names.append(f"{prefix}{name}")
    return names


def test_every_command_is_in_the_readme() -> None:
    """Each CLI command appears in the README's command table."""
    missing = [name for name in _commands(main) if name not in README]
    assert missing == []


def test_quick_start_has_exactly_two_commands() -> None:
    """The Quick start section holds exactly two shell commands."""
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    assert all(len(block.strip().splitlines()) == 1 for block in blocks)


def test_every_example_config_key_is_documented() -> None:
    """Every key used in the example config appears in the configuration reference."""
    import tomllib

    example = Path(__file__).parents[1] / "examples" / "mash-requests.toml"
    data = tomllib.loads(example.read_text(encoding="utf-8"))
    reference = README.split("## Configuration reference", 1)[1]
    for section, table in data.items():
        if section == "partners":
            continue
        for key, value in table.items():
            if isinstance(value, dict):
                continue
            assert key in reference, f"[{section}] {key} is not in the README"


def test_every_starter_config_key_is_documented() -> None:
    """Every key in the config that `init` writes appears in the configuration reference."""
    import tomllib

    starter = Path(__file__).parents[1] / "src" / "mash_requests" / "starter"
    data = tomllib.loads((starter / "mash-requests.toml").read_text(encoding="utf-8"))
    reference = README.split("## Configuration reference", 1)[1]
    missing = [
        f"[{section}] {key}"
        for section, table in data.items()
        if section != "partners"
        for key, value in table.items()
        if not isinstance(value, dict) and key not in reference
    ]
    assert missing == []


def test_every_option_of_the_group_and_send_request_is_documented() -> None:
    """The log options and --version, on the group and on send-request, are in the README."""
    from mash_requests.cli import _standalone, send_request

    options = {
        name
        for command in (main, _standalone(send_request, "send-request"))
        for param in command.params
        for name in param.opts
        if name.startswith("--") and name != "--help"
    }
    assert {"--verbose", "--quiet", "--log-file", "--log-format", "--version"} <= options
    assert [name for name in sorted(options) if name not in README] == []


def test_development_section_says_how_to_run_the_benchmarks() -> None:
    """The Development section names benchmarks/run.py and every benchmark script."""
    section = README.split("## Development", 1)[1]
    assert ".venv/bin/python benchmarks/run.py" in section
    for script in (Path(__file__).parents[1] / "benchmarks").glob("bench_*.py"):
        assert f"benchmarks/{script.name}" in section, script.name
