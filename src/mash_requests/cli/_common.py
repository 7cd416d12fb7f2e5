"""What every command shares: ``Error: …`` and exit codes, the log options, a safe console.

Exit codes scripts can rely on:

- 0: everything asked for was done (all sent; form accepted; log intact);
- 1: the work ran but not all of it succeeded (some not sent; form refused; log broken);
- 2: bad input, usage or configuration; nothing was sent.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from mash_requests.errors import ConfigError, InputError, MashRequestsError

#: Shared by every command: -h as well as --help, and help text wide enough for examples.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_BAD_INPUT = 2


class CliError(click.ClickException):
    """A ClickException with our exit code; prints ``Error: <message>`` to stderr."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # click reads exit_code from the instance; it is declared on the class as a default.
        self.exit_code = exit_code  # type: ignore[misc]


@contextmanager
def library_errors() -> Iterator[None]:
    """Turn a library error into ``Error: …`` and the right exit code; no traceback."""
    try:
        yield
    except (ConfigError, InputError) as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from exc
    except MashRequestsError as exc:
        raise CliError(str(exc), EXIT_INCOMPLETE) from exc


def make_console_safe() -> None:
    """Never crash on a character the console cannot show: replace it with ``?`` instead.

    A Windows console (cp850, cp1252) or ``PYTHONIOENCODING=ascii`` cannot encode every
    name or symbol the commands print; Python's default for stdout is to raise. Called once
    when a command starts, before anything is printed.
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors in ("strict", "surrogateescape"):
            stream.reconfigure(errors="replace")


def version_text() -> str:
    """``mash-requests, version X`` as both commands print it for ``--version``."""
    import mash_requests

    return f"mash-requests, version {mash_requests.__version__}"


_LOG_OPTIONS = (
    click.option(
        "-v",
        "--verbose",
        count=True,
        help="Log each step (each request being sent, sent, failed or refused); -vv adds "
        "debug detail. Default: warnings only.",
    ),
    click.option("-q", "--quiet", is_flag=True, help="Log only errors."),
    click.option(
        "--log-file",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="PATH",
        help="Append the log to PATH instead of writing it to stderr.",
    ),
    click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Log lines as text, or as one JSON object a line (for a SIEM or a scheduled "
        "task's history). Logs never hold message bodies, child details or secrets.",
    ),
)


def logging_options(function: F) -> F:
    """``-v/--verbose``, ``-q/--quiet``, ``--log-file`` and ``--log-format`` on a command.

    Works on a callback (as a decorator) and on a built command (whose parameter list it
    extends). The callback receives ``verbose``, ``quiet``, ``log_file`` and ``log_format``
    and passes them to :func:`start_logging`.
    """
    # A decorator stack is applied bottom-up; a built command's list grows in call order.
    order = _LOG_OPTIONS if isinstance(function, click.Command) else reversed(_LOG_OPTIONS)
    for option in order:
        function = option(function)
    return function


def start_logging(
    *, verbose: int, quiet: bool, log_file: Path | None, log_format: str, command: str
) -> None:
    """Set up the operational log for this command run; undone when the command ends."""
    from mash_requests._logging import configure

    if verbose and quiet:
        raise click.UsageError("give --verbose or --quiet, not both")
    try:
        restore = configure(
            verbose=verbose,
            quiet=quiet,
            log_file=log_file,
            log_format="json" if log_format == "json" else "text",
        )
    except OSError as exc:
        raise CliError(
            f"log file {log_file}: cannot be opened ({exc.strerror}); check that its folder "
            "exists and that you may write to it",
            EXIT_BAD_INPUT,
        ) from None
    click.get_current_context().call_on_close(restore)
    import mash_requests

    logging.getLogger(__name__).info(
        "command started", extra={"command": command, "version": mash_requests.__version__}
    )
