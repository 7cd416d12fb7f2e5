"""Opening a PDF with pypdf within bounds: a quiet logger, the guard, bounded rescans.

pypdf is imported inside the functions that need it (the CLI must start instantly), and its
log records are re-logged at DEBUG on the package's logger so they never reach a terminal.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pypdf import PdfReader

#: Every module of the package logs here (one name for a person to filter on).
log = logging.getLogger("mash_requests.referral_form")

#: The structure walk refuses a PDF (too complex to check) beyond this many objects. A
#: referral form has hundreds, a long report a few thousand; pypdf parses an object in about
#: 0.1 ms, so this bounds the walk to a couple of seconds.
MAX_OBJECTS = 20_000
#: Pages in the page tree beyond which a PDF is refused (too complex to check) before its
#: page tree is read: no referral form comes near it.
MAX_PAGES = 2_000
# A reference whose object is not where the xref says (or not in the xref at all) makes
# pypdf scan the whole file for it. Those scans may read this many bytes in all; past it,
# such references are read as null without the scan. A real file needs none or a handful.
_RESCAN_BYTES = 16 * 1024 * 1024
# pypdf parses object syntax at a few microseconds a byte. A referral form, even a long
# report, has well under this much (stream data aside); past it the guard is armed.
_ARM_PARSED_BYTES = 1024 * 1024
# pypdf's search for a lost catalogue, one object (and maybe one scan) at a time.
_ROOT_RECOVERY_LIMIT = 100
# Limits on pypdf's own decoding, where the installed pypdf has them (its Configuration):
# far above anything a referral form needs, far below what a decompression bomb asks for.
_PYPDF_LIMITS = {
    "zlib_maximum_output_length": 32 * 1024 * 1024,
    "zlib_maximum_recovery_input_length": 256 * 1024,
    "lzw_maximum_output_length": 32 * 1024 * 1024,
    "run_length_maximum_output_length": 32 * 1024 * 1024,
    "array_based_stream_maximum_output_length": 32 * 1024 * 1024,
    # Intermediate /Pages nodes count too; the exact page count is checked afterwards.
    "page_tree_maximum_entries": 2 * MAX_PAGES,
    # pypdf extracts a form XObject's text again each time a page draws it.
    "xform_maximum_invocations_per_extraction": 256,
}


# --------------------------------------------------------------------------------------------
# Quietening pypdf

_quiet = False
_quiet_lock = threading.Lock()


class _ToDebug(logging.Handler):
    """Re-log pypdf's records at DEBUG here: robustness warnings are not the user's business.

    A warning is pypdf saying it repaired or skipped something: it arms the guard of the
    check running in this thread.
    """

    def emit(self, record: logging.LogRecord) -> None:
        guard = getattr(_current, "guard", None)
        if guard is not None and record.levelno >= logging.WARNING:
            guard.arm(f"pypdf: {record.getMessage()}")
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
        if pypdf_log.level == logging.NOTSET:
            # Its warnings must reach our handler whatever the root logger's level.
            pypdf_log.setLevel(logging.WARNING)
        _quiet = True


# --------------------------------------------------------------------------------------------
# The guard and the bounded reader


# The guard's clock (a name of its own so a test can make the machine seem slow or fast).
_clock = time.monotonic


class OutOfTime(BaseException):
    """Internal: an armed guard's time ran out.

    A BaseException, like KeyboardInterrupt, so that pypdf's own ``except Exception``
    repair paths cannot swallow it and carry on past the deadline.
    """


class Guard:
    """The last resort against hostile files: a wall-clock budget armed by damage or bulk.

    A well-formed file's verdict is decided by bounded work alone (objects, pages, decoded
    bytes), never by the clock, so it is the same on any machine under any load. Only once
    the file shows damage (pypdf repairs something, a reference points at the wrong place
    or nowhere) or unusual bulk does ``check()`` consult the clock, because that work is
    what cannot be counted beforehand. ``armed_by`` says what armed it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires = _clock() + seconds
        self.armed_by: str | None = None

    def arm(self, why: str) -> None:
        """Let the clock decide from now on: the file is damaged (``why``, for the log)."""
        if self.armed_by is None:
            self.armed_by = why
            log.debug("form check guard armed: %s", why)

    def check(self) -> None:
        """Raise OutOfTime if armed and the budget is spent; free for a well-formed file."""
        if self.armed_by is not None and _clock() > self.expires:
            raise OutOfTime


# The guard of the check running in this thread: pypdf reports repairs only by logging.
_current = threading.local()


@contextlib.contextmanager
def guarding(guard: Guard) -> Iterator[None]:
    """Run a check under ``guard``: pypdf's warnings (its repairs) arm it, and its limits apply."""
    previous = getattr(_current, "guard", None)
    _current.guard = guard
    try:
        with _pypdf_limits():
            yield
    finally:
        _current.guard = previous


@contextlib.contextmanager
def _pypdf_limits() -> Iterator[None]:
    import pypdf

    apply = getattr(pypdf, "apply_configuration", None)  # only newer pypdf has it
    if apply is None:
        yield
        return
    current = pypdf.get_configuration()
    # Lower pypdf's limits only, never raise one a caller has set tighter.
    lowered = {
        name: min(value, getattr(current, name))
        for name, value in _PYPDF_LIMITS.items()
        if isinstance(getattr(current, name, None), int) and getattr(current, name) > 0
    }
    with apply(**lowered):
        yield


_OBJECT_HEADER = re.compile(rb"\s*(\d+)\s+(\d+)\s+obj\b")


def bounded_reader(data: bytes, guard: Guard) -> PdfReader:
    """A PdfReader that bounds pypdf's whole-file scans and arms ``guard`` on damage or bulk.

    Every object pypdf resolves goes through here: a misplaced or unlisted one (which makes
    pypdf scan the whole file) arms the guard and is charged to the scan budget, past which
    it reads as null; the object syntax pypdf parses is counted, and past
    ``_ARM_PARSED_BYTES`` the guard is armed, as no well-formed referral form gets there.
    """
    from pypdf import PdfReader
    from pypdf.generic import IndirectObject, NullObject, PdfObject, StreamObject

    scan_budget = _RESCAN_BYTES
    parsed = 0
    streams_counted: set[int] = set()

    def charge(size: int) -> None:
        nonlocal parsed
        parsed += max(0, size)
        if parsed > _ARM_PARSED_BYTES:
            guard.arm(f"more than {_ARM_PARSED_BYTES:,} bytes of objects to parse")

    class BoundedReader(PdfReader):
        def get_object(self, indirect_reference: int | IndirectObject) -> PdfObject | None:
            nonlocal scan_budget
            guard.check()
            if isinstance(indirect_reference, int):
                indirect_reference = IndirectObject(indirect_reference, 0, self)
            number, generation = indirect_reference.idnum, indirect_reference.generation
            if (generation, number) in self.resolved_objects:
                return super().get_object(indirect_reference)
            if self._needs_scan(number, generation):
                guard.arm(f"object {number} {generation} is not where the xref says")
                scan_budget -= len(data)
                if scan_budget < 0:
                    return NullObject()
                return super().get_object(indirect_reference)
            in_stream = self.xref_objStm.get(number) if generation == 0 else None
            offset = self.xref.get(generation, {}).get(number)
            found = super().get_object(indirect_reference)
            if in_stream is not None:
                # pypdf parses a whole object stream when it first needs one of its objects.
                container = in_stream[0]
                if container not in streams_counted:
                    streams_counted.add(container)
                    stream = self.resolved_objects.get((0, container))
                    if isinstance(stream, StreamObject):
                        charge(len(stream.get_data()))
            elif offset is not None:
                size = self.stream.tell() - offset
                if isinstance(found, StreamObject):
                    # Its data is sliced, not parsed. pypdf drops /Length once read, so the
                    # raw data's own length it is (an attribute every pypdf version has).
                    size -= len(getattr(found, "_data", b"") or b"")
                charge(size)
            return found

        def _needs_scan(self, number: int, generation: int) -> bool:
            """Whether pypdf would scan the whole file for this object (it is misplaced)."""
            if generation == 0 and number in self.xref_objStm:
                return False
            offset = self.xref.get(generation, {}).get(number)
            if offset is None:
                return True
            if self.xref_free_entry.get(generation, {}).get(number, False):
                return False
            header = _OBJECT_HEADER.match(data, offset, offset + 64)
            return header is None or (int(header[1]), int(header[2])) != (number, generation)

    return BoundedReader(
        io.BytesIO(data),
        strict=False,
        root_object_recovery_limit=_ROOT_RECOVERY_LIMIT,
        xref_stream_maximum_entries=MAX_OBJECTS * 16,
    )


def get(obj: Any, key: str) -> Any:
    """``obj[key]`` resolved, or None; never raises for a missing or dangling entry."""
    try:
        value = dict.get(obj, key)
        return None if value is None else value.get_object()
    except Exception:
        return None
