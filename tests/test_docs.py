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
