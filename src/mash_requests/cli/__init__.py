"""The ``mash-requests`` command group and the ``send-request`` shortcut.

Thin by design: each command parses its options, calls the library, and turns library
errors into ``Error: …`` and an exit code (see :mod:`mash_requests.cli._common`). The log
options (``--verbose``, ``--quiet``, ``--log-file``, ``--log-format``) belong to the group,
before the subcommand, and to ``send-request`` itself.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import click

from mash_requests.cli._common import (
    CONTEXT_SETTINGS,
    logging_how_it_ends,
    logging_options,
    make_console_safe,
    start_logging,
    version_text,
)
from mash_requests.cli.audit import audit
from mash_requests.cli.batch import send_batch
from mash_requests.cli.chase import chase
from mash_requests.cli.form import form
from mash_requests.cli.gateway import gateway
from mash_requests.cli.init import init, schema
from mash_requests.cli.overdue import overdue
from mash_requests.cli.replies import replies
from mash_requests.cli.send import reconcile, send_request


class _Group(click.Group):
    """The top-level group: makes the console safe before click prints anything."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        make_console_safe()
        return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with logging_how_it_ends():
            return super().invoke(ctx)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Also note the full command path ("audit verify") for the log's ``command`` field.

        Called before the group's callback, while the arguments are still at hand: a nested
        group's subcommand is its first argument (the groups take no options of their own).
        """
        name, command, rest = super().resolve_command(ctx, args)
        path = [name or ""]
        inner, words = command, rest
        while isinstance(inner, click.Group) and words and not words[0].startswith("-"):
            inner = inner.get_command(ctx, words[0])
            if inner is None:
                break
            path.append(words[0])
            words = words[1:]
        ctx.meta[_COMMAND_PATH] = " ".join(path)
        return name, command, rest


#: Where the top-level group keeps the full command path for its callback (``ctx.meta``).
_COMMAND_PATH = "mash_requests.command_path"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit()


version_option = click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)


@click.group(
    cls=_Group,
    context_settings=CONTEXT_SETTINGS,
    epilog="Run 'mash-requests COMMAND --help' for a command's options and examples. "
    "Log options go before the command: mash-requests --verbose --log-format json "
    "--log-file mash.log send-batch today.jsonl. Exit codes: 0 done, 1 not all done "
    "(some not sent, form refused, log broken), 2 bad input or configuration (nothing sent).",
)
@version_option
@logging_options
def main(verbose: int, quiet: bool, log_file: Path | None, log_format: str) -> None:
    """Send MASH requests for information to partner agencies, with the referral form
    attached and every step recorded in a tamper-evident dispatch log.

    \b
    Typical day:
      send-request --case cases/MASH-2026-0412.json        ask the case's partners
      mash-requests send-batch today.jsonl                 a whole day's contacts
      mash-requests form check form.pdf --case-ref REF     check a referral form
      mash-requests audit query --case-ref REF             what was sent for a case
      mash-requests replies fetch                          record partners' replies
      mash-requests overdue                                what is still unanswered
      mash-requests chase --dry-run                        reminders for the overdue
      mash-requests audit verify                           prove the log is intact
      mash-requests init my-mash                           a starter config and example case
    """
    ctx = click.get_current_context()
    command = ctx.meta.get(_COMMAND_PATH) or ctx.invoked_subcommand or "mash-requests"
    start_logging(
        verbose=verbose, quiet=quiet, log_file=log_file, log_format=log_format, command=command
    )


main.add_command(send_request)
main.add_command(send_batch)
main.add_command(reconcile)
main.add_command(form)
main.add_command(audit)
main.add_command(gateway)
main.add_command(init)
main.add_command(schema)
main.add_command(replies)
main.add_command(overdue)
main.add_command(chase)


def _standalone(command: click.Command, name: str) -> click.Command:
    """A copy of ``command`` run on its own: with --version and the log options."""
    standalone = copy.copy(command)
    original = command.callback
    assert original is not None

    @functools.wraps(original)
    def callback(
        *args: Any, verbose: int, quiet: bool, log_file: Path | None, log_format: str, **kw: Any
    ) -> Any:
        start_logging(
            verbose=verbose, quiet=quiet, log_file=log_file, log_format=log_format, command=name
        )
        with logging_how_it_ends():
            return original(*args, **kw)

    standalone.callback = callback
    standalone.params = list(command.params)
    version_option(logging_options(standalone))
    return standalone


def send_request_main() -> None:
    """Entry point of the ``send-request`` command (same as ``mash-requests send-request``)."""
    make_console_safe()
    _standalone(send_request, "send-request").main(prog_name="send-request")
