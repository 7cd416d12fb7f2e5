"""What every command shares: ``Error: …`` and exit codes, the log options, a safe console.

Exit codes scripts can rely on:

- 0: everything asked for was done (all sent; form accepted; log intact);
- 1: the work ran but not all of it succeeded (some not sent; form refused; log broken);
- 2: bad input, usage or configuration; nothing was sent.
"""

from __future__ import annotations

import io
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mash_requests.errors import ConfigError, InputError, MashRequestsError

if TYPE_CHECKING:
    from mash_requests.audit import LogSettings

#: Shared by every command: -h as well as --help, and help text wide enough for examples.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_BAD_INPUT = 2


#: The largest ``--within HOURS`` of overdue and chase: about eleven years. Far beyond any
#: due time (days or weeks after sending), so it still lists every open request; far inside
#: the dates Python can count to (1e309 or so overflowed with a traceback).
MAX_WITHIN_HOURS = 100_000


class FiniteFloatRange(click.FloatRange):
    """A :class:`click.FloatRange` that refuses ``nan`` too, as a usage error naming the range.

    ``nan`` compares false with every bound, so a plain FloatRange lets it through (and the
    date arithmetic later fails with a traceback); ``inf`` is refused by a ``max`` bound.
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if isinstance(number, float) and math.isnan(number):
            self.fail(f"{value} is not in the range {self._describe_range()}.", param, ctx)
        return number


#: ``--within HOURS`` of overdue and chase: 0 to MAX_WITHIN_HOURS, never nan or infinity.
WITHIN_HOURS = FiniteFloatRange(min=0, max=MAX_WITHIN_HOURS)


def case_ref_value(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--case-ref REF`` (form check, audit query): the shape case files must have.

    Anything else cannot name a case: a usage error (exit 2) rather than an answer that
    reads like one ("refused: wrong_case", or no rows). A click callback, not a ParamType:
    ParamType is generic only from click 8.2.
    """
    from mash_requests.case import REFERENCE_PATTERN

    # fullmatch: the pattern's $ would also let a trailing newline through.
    if value is None or REFERENCE_PATTERN.fullmatch(value):
        return value
    raise click.BadParameter(
        "expected a case reference: letters, digits and - _ / . (at most 64 characters, "
        "starting with a letter or digit), e.g. MASH-2026-0412"
    )


class CliError(click.ClickException):
    """A ClickException with our exit code; prints ``Error: <message>`` to stderr.

    ``reason`` and ``error_type`` are the code and the ``type`` ``--json`` gives when no
    library error lies behind this one (a library error's own are used when there is one);
    ``error_type`` defaults to ``CliError``.
    """

    def __init__(
        self,
        message: str,
        exit_code: int,
        *,
        reason: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        # click reads exit_code from the instance; it is declared on the class as a default.
        self.exit_code = exit_code  # type: ignore[misc]
        self.reason = reason
        self.error_type = error_type


@contextmanager
def library_errors() -> Iterator[None]:
    """Turn a library error into ``Error: …`` and the right exit code; no traceback."""
    try:
        yield
    except (ConfigError, InputError) as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from exc
    except MashRequestsError as exc:
        raise CliError(str(exc), EXIT_INCOMPLETE) from exc


def require_log(log: LogSettings) -> None:
    """Refuse with ConfigError (``no dispatch log at …``, exit 2) when the log is not there.

    For the commands that only make sense on a log that exists: overdue, chase, reconcile
    and replies. Opening the log as a sender would create an empty one at a mistyped
    ``[log] path``, report "nothing overdue", and leave a file that later reads as an intact
    log of 0 events. Creates nothing; call inside :func:`library_errors`.
    """
    from mash_requests.audit import open_store

    open_store(log, must_exist=True).close()


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


@contextmanager
def logging_how_it_ends() -> Iterator[None]:
    """Log ``command ended`` with the exit code (INFO) however the command ends.

    So a scheduled task's log (``-v --log-file``) says how each run ended, not only that it
    started: a refused config or a duplicate case leaves its ``exit_code`` (its ``Error:``
    line still goes to stderr only). Wraps the whole command, so that the log is still set
    up when it ends; before logging is set up (a usage error) the record goes nowhere.
    """
    code = EXIT_OK
    try:
        yield
    except click.exceptions.Exit as exc:
        code = exc.exit_code
        raise
    except click.ClickException as exc:
        code = exc.exit_code
        raise
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_INCOMPLETE if exc.code else EXIT_OK
        raise
    except (click.Abort, KeyboardInterrupt):
        code = EXIT_INCOMPLETE
        raise
    except BaseException:
        code = EXIT_INCOMPLETE
        raise
    finally:
        logging.getLogger(__name__).info("command ended", extra={"exit_code": code})


# -- --json: one document per run -------------------------------------------------------------

#: The ``--json`` option every command that offers it shares.
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document on stdout instead of text, errors included (exit codes "
    "unchanged). The README's 'JSON output' section shows its shape.",
)


class JsonRun:
    """The JSON document of one command run: the command's fields, then how it ended.

    Every document has ``command``, ``ok`` (exit code 0), ``exit_code`` and ``error`` (None,
    or the error's fields: see :func:`error_fields`); the command adds its own fields with
    :meth:`update`. Printed once, by :func:`json_output`, however the run ends.
    """

    def __init__(self, command: str, enabled: bool) -> None:
        self.command = command
        self.enabled = enabled
        self.fields: dict[str, Any] = {}

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)

    def document(self, exit_code: int, error: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "command": self.command,
            "ok": exit_code == EXIT_OK,
            "exit_code": exit_code,
            **self.fields,
            "error": error,
        }

    def emit(self, exit_code: int, error: dict[str, Any] | None = None) -> None:
        # ASCII escapes: the document reads the same on any console or code page.
        click.echo(json.dumps(self.document(exit_code, error), default=_json_default))


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


@contextmanager
def json_output(command: str, enabled: bool) -> Iterator[JsonRun]:
    """Run a command's body; with ``enabled``, print its JSON document however it ends.

    The body fills the document and ends as it would without ``--json`` (returning, raising
    :class:`CliError`, a usage error, or ``sys.exit``); the exit code is unchanged and an
    ``Error: …`` line still goes to stderr for the person reading the task's history.
    """
    run = JsonRun(command, enabled)
    if not enabled:
        yield run
        return
    try:
        yield run
    except click.ClickException as exc:
        run.emit(exc.exit_code, error_fields(exc))
        raise
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_INCOMPLETE if exc.code else EXIT_OK
        run.emit(code)
        raise
    except click.exceptions.Exit as exc:
        run.emit(exc.exit_code)
        raise
    else:
        run.emit(EXIT_OK)


def error_fields(exc: BaseException) -> dict[str, Any]:
    """An error as fields a script acts on: ``type``, ``reason``, ``message``, ``advice``, …

    ``message`` is the library's sentence (never a CLI flag); ``advice`` the lines the CLI
    adds (what to type next). The library error's structured fields follow: ``field`` and
    ``partners`` of every input error; ``states``, ``earlier`` and ``others`` of a duplicate;
    the form's ``verdict``; a gateway's ``failure``, ``error_class``, ``server_message`` and
    ``retry_after``; what a failing log had ``handed_over`` and ``not_sent``.
    """
    from mash_requests.errors import (
        DuplicateRequestError,
        FormRefusedError,
        GatewayError,
        LogError,
        SendLogError,
    )

    cause: BaseException | None = exc.__cause__
    library = cause if isinstance(cause, MashRequestsError) else None
    text = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
    message, advice = text, []
    if library is not None and text.startswith(str(library)):
        message = str(library)
        rest = text[len(message) :].lstrip(" .;:")
        advice = [line.strip() for line in rest.splitlines() if line.strip()]
    source = library or exc
    named = getattr(exc, "error_type", None) if library is None else None
    fields: dict[str, Any] = {
        "type": named or type(source).__name__,
        "reason": getattr(exc, "reason", None) if library is None else None,
        "message": message,
        "advice": advice,
    }
    if isinstance(exc, click.UsageError):
        fields["reason"] = "usage"
    if isinstance(source, InputError):
        fields.update(reason=source.reason, field=source.field, partners=list(source.partners))
    elif isinstance(source, ConfigError):
        fields["reason"] = "config"
    elif isinstance(source, GatewayError):
        fields.update(
            reason=str(source.failure),
            failure=str(source.failure),
            error_class=source.error_class,
            server_message=source.server_message,
            retry_after=source.retry_after,
        )
    elif isinstance(source, LogError):
        fields["reason"] = "log"
    if isinstance(source, DuplicateRequestError):
        fields.update(
            case_ref=source.case_ref,
            states=dict(source.states),
            earlier=dict(source.earlier),
            others=list(source.others),
        )
    if isinstance(source, FormRefusedError):
        verdict = source.verdict
        fields["verdict"] = {
            "reason": verdict.reason,
            "detail": verdict.detail,
            "sha256": verdict.sha256,
            "size": verdict.size,
            "pages": verdict.pages,
        }
    if isinstance(source, SendLogError):
        fields.update(
            case_ref=source.case_ref,
            handed_over=[item._asdict() for item in source.handed_over],
            not_sent=[{"partner": partner, "request_ref": ref} for partner, ref in source.not_sent],
        )
    return fields
