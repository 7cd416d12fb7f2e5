"""``mash-requests init`` and ``mash-requests schema``: getting started without a checkout."""

from __future__ import annotations

import os
from pathlib import Path

import click

from mash_requests.cli._common import CONTEXT_SETTINGS, EXIT_BAD_INPUT, CliError, library_errors


def _shown(path: Path) -> str:
    """A path as the user would type it from here: relative when it is below the cwd."""
    absolute = path.absolute()
    if absolute.is_relative_to(Path.cwd()):
        return os.path.relpath(absolute)
    return str(absolute)


@click.command(
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  mash-requests init                 the current folder
  mash-requests init my-mash         a new folder my-mash/
  mash-requests init my-mash --force replace the starter files there

\b
Writes:
  mash-requests.toml                 a commented config: outbox folder and SQLite log under
                                     mash-data/, example partners at .example addresses
  cases/MASH-2026-0001.json          an example case ...
  forms/MASH-2026-0001.pdf           ... with its referral form, so the first send works
  case.schema.json                   the case file's JSON Schema, for editors

Exit codes: 0 written; 2 a file is already there (nothing written) or cannot be written.""",
)
@click.argument("folder", required=False, default=".", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace starter files that are already there.")
def init(folder: Path, force: bool) -> None:
    """Write a starter config, an example case with its referral form, and the case file's
    JSON Schema into FOLDER (default: the current folder), then say what to run next.

    Nothing is sent anywhere until you choose a gateway in the config: the starter sends
    to an outbox folder of .eml files.
    """
    from mash_requests.starter import Starter

    starter = Starter(folder)
    existing = starter.existing()
    if existing and not force:
        names = ", ".join(_shown(path) for path in existing)
        raise CliError(
            f"{names}: already there; nothing was written. Use --force to replace the "
            "starter files, or choose another folder",
            EXIT_BAD_INPUT,
        )
    with library_errors():
        written = starter.write(replace=force)
    for path in written:
        click.echo(f"wrote {_shown(path)}")
    config, case = _shown(starter.config), _shown(starter.case)
    click.echo(
        "\nNext, check the example case without sending anything, then send it to the "
        "outbox folder:\n"
        f"  send-request --config {config} --case {case} --dry-run\n"
        f"  send-request --config {config} --case {case}\n"
        f"Then edit {config}: your MASH's name and mailbox, your partners, and a gateway."
    )


@click.command(
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  mash-requests schema case > case.schema.json
  python -m jsonschema -i cases/MASH-2026-0412.json case.schema.json

The loader stays the judge: it also checks that a date of birth is not in the future.""",
)
@click.argument("name", type=click.Choice(["case"]))
def schema(name: str) -> None:
    """Print the JSON Schema (draft 2020-12) of a file mash-requests reads: NAME is
    'case' for a case file (also one line of a JSON Lines batch)."""
    import json

    from mash_requests.case_schema import case_schema

    click.echo(json.dumps(case_schema(), indent=2))
