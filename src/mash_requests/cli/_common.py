"""What every command shares: turning library errors into ``Error: …`` and exit codes.

Exit codes scripts can rely on:

- 0: everything asked for was done (all sent; form accepted; log intact);
- 1: the work ran but not all of it succeeded (some not sent; form refused; log broken);
- 2: bad input, usage or configuration; nothing was sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from mash_requests.errors import ConfigError, InputError, MashRequestsError

#: Shared by every command: -h as well as --help, and help text wide enough for examples.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

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
