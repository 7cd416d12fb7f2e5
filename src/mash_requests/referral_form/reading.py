"""Opening a PDF with pypdf within bounds: a quiet logger, a deadline, bounded rescans.

pypdf is imported inside the functions that need it (the CLI must start instantly), and its
log records are re-logged at DEBUG on the package's logger so they never reach a terminal.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pypdf import PdfReader

#: Every module of the package logs here (one name for a person to filter on).
log = logging.getLogger("mash_requests.referral_form")

# The structure walk gives up (unreadable) beyond this many objects: a real form has a few
# thousand; a file built to exhaust the checker has millions.
MAX_OBJECTS = 400_000
# References to objects the xref does not list each cost pypdf a scan of the whole file; past
# this many they are read as null without the scan (a real file has none or a handful).
_MAX_UNLISTED_REFERENCES = 64
# pypdf's search for a lost catalogue, one object (and maybe one scan) at a time.
_ROOT_RECOVERY_LIMIT = 100


# --------------------------------------------------------------------------------------------
# Quietening pypdf

_quiet = False
_quiet_lock = threading.Lock()


class _ToDebug(logging.Handler):
    """Re-log pypdf's records at DEBUG here: robustness warnings are not the user's business."""

    def emit(self, record: logging.LogRecord) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("pypdf %s: %s", record.levelname.lower(), record.getMessage())


def quiet_pypdf() -> None:
    """Route the ``pypdf`` logger to our DEBUG, once, without touching other loggers."""
    global _quiet
    with _quiet_lock:
        if _quiet:
            return
        pypdf_log = logging.getLogger("pypdf")
        pypdf_log.addHandler(_ToDebug())
        pypdf_log.propagate = False
        _quiet = True


# --------------------------------------------------------------------------------------------
# The deadline and the bounded reader


class OutOfTime(BaseException):
    """Internal: the check ran past its time limit.

    A BaseException, like KeyboardInterrupt, so that pypdf's own ``except Exception``
    repair paths cannot swallow it and carry on past the deadline.
    """


class Deadline:
    """A monotonic-clock budget; ``check()`` raises OutOfTime once it is spent."""

    def __init__(self, seconds: float) -> None:
        self.expires = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.expires:
            raise OutOfTime


def bounded_reader(data: bytes, deadline: Deadline) -> PdfReader:
    """A PdfReader whose object resolution keeps to the deadline and bounds file rescans."""
    from pypdf import PdfReader
    from pypdf.generic import IndirectObject, NullObject, PdfObject

    class BoundedReader(PdfReader):
        unlisted = 0

        def get_object(self, indirect_reference: int | IndirectObject) -> PdfObject | None:
            deadline.check()
            if isinstance(indirect_reference, int):
                indirect_reference = IndirectObject(indirect_reference, 0, self)
            number, generation = indirect_reference.idnum, indirect_reference.generation
            listed = (generation == 0 and number in self.xref_objStm) or number in self.xref.get(
                generation, {}
            )
            if not listed and (generation, number) not in self.resolved_objects:
                self.unlisted += 1
                if self.unlisted > _MAX_UNLISTED_REFERENCES:
                    return NullObject()
            return super().get_object(indirect_reference)

    return BoundedReader(
        io.BytesIO(data),
        strict=False,
        root_object_recovery_limit=_ROOT_RECOVERY_LIMIT,
        xref_stream_maximum_entries=MAX_OBJECTS,
    )


def get(obj: Any, key: str) -> Any:
    """``obj[key]`` resolved, or None; never raises for a missing or dangling entry."""
    try:
        value = dict.get(obj, key)
        return None if value is None else value.get_object()
    except Exception:
        return None
