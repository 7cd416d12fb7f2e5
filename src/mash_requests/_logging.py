"""Operational logging for the commands: text or JSON lines, to stderr or a file, no personal data.

The library logs through :mod:`logging` under ``mash_requests.*`` (``logging.getLogger(__name__)``)
and never configures logging itself: a script using the Python API decides where its records
go. The commands call :func:`configure` once, from ``--verbose``/``--quiet``, ``--log-file``
and ``--log-format``.

What a record may carry is deliberately narrow. A message is a fixed sentence written in the
code; anything about a request travels as an *extra* field, and only the fields in
:data:`ALLOWED_FIELDS` (references, partner keys, outcomes, counts) are ever written: the
handler's filter strips any other extra before a formatter sees it, so a careless
``extra={"child": …}`` cannot reach a SIEM. Bodies, child details, recipients and secrets are
never log fields. Only the ``mash_requests`` loggers are handled here: third-party libraries
(exchangelib, urllib3, MSAL) log whole requests at DEBUG, so their levels are left alone.

One JSON line looks like::

    {"time": "2026-11-26T14:03:11.482+00:00", "level": "INFO", "logger": "mash_requests.dispatch",
     "message": "request sent", "case_ref": "MASH-2026-0412", "request_ref": "…", "partner":
     "police", "outcome": "sent"}
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

ROOT_LOGGER = "mash_requests"

#: The extra fields a record may carry; anything else is stripped before it is written.
ALLOWED_FIELDS = frozenset(
    {
        "case_ref",  # the MASH case reference
        "request_ref",  # one request's reference
        "partner",  # a partner key from the directory, e.g. "police"
        "outcome",  # sent, failed, unconfirmed, rejected, attempt_failed …
        "gateway",  # outbox, smtp, ews, graph
        "command",  # the command being run, its full path: "send-request", "audit verify"
        "version",  # mash-requests' version
        "count",  # how many (requests, cases, files)
        "template",  # a template set's name, e.g. "police"
        "exit_code",  # the command's exit code
    }
)

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}

LogFormat = Literal["text", "json"]


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's extra fields (those given with ``extra=``), in the order they were set."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class AllowListFilter(logging.Filter):
    """Strips every extra field that is not in :data:`ALLOWED_FIELDS` from a record.

    The record is still written, with ``withheld`` naming what was removed, so a developer
    sees the mistake and no value leaves the process.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        withheld = sorted(k for k in extra_fields(record) if k not in ALLOWED_FIELDS)
        for name in withheld:
            delattr(record, name)
        if withheld:
            record.withheld = withheld
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in extra_fields(record).items() if k in ALLOWED_FIELDS or k == "withheld"}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, allowed extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        # default=str: an extra that is a Path or an enum is written as its text.
        return json.dumps(entry, ensure_ascii=False, default=str)


def _text_value(value: Any) -> str:
    """A value as one unambiguous token: quoted (JSON) when it has spaces or control characters."""
    text = str(value)
    if text and all(ch.isprintable() and not ch.isspace() and ch != '"' for ch in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message> key=value …`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in _fields(record).items())
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        return f"{line} {fields}" if fields else line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (as logging's last resort).

    A test runner or a host application may swap ``sys.stderr`` after the handler is made.
    """

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # StreamHandler.__init__ sets it; the property always answers sys.stderr


def level_for(verbose: int, quiet: bool) -> int:
    """WARNING by default; ``-v`` INFO, ``-vv`` DEBUG; ``--quiet`` only errors."""
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


def configure(
    *,
    verbose: int = 0,
    quiet: bool = False,
    log_file: Path | None = None,
    log_format: LogFormat = "text",
) -> Callable[[], None]:
    """Send the ``mash_requests`` loggers' records to stderr, or to ``log_file`` (appended).

    Returns a function that undoes it (removes the handler, restores the level), for a
    command run inside a longer-lived process. Raises OSError when the log file cannot be
    opened (the caller turns it into a usage error).
    """
    logger = logging.getLogger(ROOT_LOGGER)
    handler: logging.Handler
    if log_file is not None:
        handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    else:
        handler = _StderrHandler()
    handler.addFilter(AllowListFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level_for(verbose, quiet))

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        handler.close()

    return restore
