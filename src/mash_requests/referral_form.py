"""The referral-form guarantee: every form that is sent is checked here first, and filled here.

:func:`check_form` takes the exact bytes that will be attached and returns a :class:`Verdict`:
accepted or refused, a machine-readable :class:`Reason`, one sentence for a person, and the
fingerprint (SHA-256, size, page count, where the case reference was found). Every sending
path (CLI, API, batch) calls it and refuses to send unless ``verdict.accepted``, so the
guarantee cannot be bypassed. It never raises, whatever the bytes: pypdf raises far more than
``PdfReadError`` on hostile files (``ValueError``, ``IndexError``, ``KeyError``, recursion …),
and all of it becomes ``unreadable``.

The checks, in order (the first that fails is the verdict):

1. ``not_pdf``: no ``%PDF-`` header in the first KiB (empty files too);
2. ``too_large``: over ``max_size`` bytes (default 10 MiB), before any parsing;
3. ``unreadable``: cut off (no ``%%EOF`` in the last KiB), pypdf cannot open it, its page
   tree or objects are broken (cycles too), or checking it would take over
   ``CHECK_TIME_LIMIT`` seconds (only files built to exhaust a parser do);
4. ``encrypted``: it needs a password that was not given, or the given one does not open it
   (an empty user password opens silently, as in every viewer);
5. ``no_pages``;
6. ``active_content``: a JavaScript or Launch action anywhere reachable from the catalogue
   (OpenAction, ``/Names /JavaScript``, document and page ``/AA``, annotation and widget
   actions, bookmarks, ``/Next`` chains) or XFA scripts. A plain OpenAction destination
   and Named actions such as Print are not active content;
7. ``embedded_file``: an ``EmbeddedFiles`` name tree entry, a file specification carrying
   ``/EF``, or a FileAttachment annotation;
8. case binding: the case reference must be in the configured case-reference field, another
   field value, or the page text; the configured field holding another reference is
   ``wrong_case``, no reference at all is ``case_ref_missing``.

pypdf is imported inside the functions that need it (the CLI must start instantly), and its
log records are re-logged at DEBUG on this module's logger so they never reach a terminal.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import stat
import tempfile
import threading
import time
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from mash_requests.errors import InputError

if TYPE_CHECKING:
    from pypdf import PdfReader

log = logging.getLogger(__name__)

#: Forms above this many bytes are refused as ``too_large`` unless configured otherwise.
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
#: The form field that names the case the form belongs to.
DEFAULT_CASE_REF_FIELD = "case_reference"
#: Page text is searched on at most this many pages; referral forms put the reference on the
#: first page or two, and the bound keeps a 500-page upload within the time budget.
TEXT_PAGE_LIMIT = 50
#: Form field name -> dotted case path; the example forms and the config default use it.
DEFAULT_FILL_MAPPING: Mapping[str, str] = MappingProxyType(
    {
        "case_reference": "case_ref",
        "contact_id": "contact_id",
        "child_name": "child.name",
        "child_dob": "child.date_of_birth",
        "child_address": "child.address",
        "referrer_name": "worker.name",
        "referrer_role": "worker.role",
        "referrer_email": "worker.email",
        "consent_status": "consent.status",
        "consent_reason": "consent.reason",
        "concerns": "concerns",
    }
)

# The structure walk gives up (unreadable) beyond this many objects: a real form has a few
# thousand; a file built to exhaust the checker has millions.
_MAX_OBJECTS = 400_000
# Page text is not searched on a page whose content streams decode to more than this.
_MAX_PAGE_CONTENT = 512 * 1024
#: Seconds one check may take before the form is refused as unreadable. pypdf's repair paths
#: rescan the whole file per broken reference, so a hostile file could cost minutes; every
#: object resolution and text operator checks the clock. Real forms take milliseconds.
CHECK_TIME_LIMIT = 1.5
# References to objects the xref does not list each cost pypdf a scan of the whole file; past
# this many they are read as null without the scan (a real file has none or a handful).
_MAX_UNLISTED_REFERENCES = 64
# pypdf's search for a lost catalogue, one object (and maybe one scan) at a time.
_ROOT_RECOVERY_LIMIT = 100
# A header may follow a little junk (as Acrobat tolerates), but not much.
_HEADER_WINDOW = 1024
# A value we are willing to repeat back in a refusal: it looks like a reference, so it is
# not a name, address or free text about a child.
_SHOWABLE_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}$")


class Reason(StrEnum):
    """Why a form was accepted or refused; the closed set the dispatch log records."""

    ACCEPTED = "accepted"
    #: Not a PDF at all (no ``%PDF-`` header), including empty files.
    NOT_PDF = "not_pdf"
    #: A PDF that cannot be read or checked: cut off, broken beyond repair, cyclic page tree,
    #: fuzzed, or too costly to check within the time limit.
    UNREADABLE = "unreadable"
    #: Needs a password that was not given, or the given one is wrong.
    ENCRYPTED = "encrypted"
    #: Opens, but has no pages.
    NO_PAGES = "no_pages"
    #: JavaScript or a Launch action somewhere in the document.
    ACTIVE_CONTENT = "active_content"
    #: Carries an embedded file (name tree or file-attachment annotation).
    EMBEDDED_FILE = "embedded_file"
    #: Bigger than the configured maximum.
    TOO_LARGE = "too_large"
    #: The case reference is not in any field value nor in the page text.
    CASE_REF_MISSING = "case_ref_missing"
    #: The case-reference field holds another reference: probably another child's form.
    WRONG_CASE = "wrong_case"


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one form, with the fingerprint of the bytes checked.

    ``detail`` is one sentence for a person (what is wrong and what to do); it never holds
    child details. ``found_in`` says where the case reference was found (``"field
    case_reference"``, ``"page 2"``), or None when it was not.
    """

    reason: Reason
    detail: str
    sha256: str
    size: int
    pages: int | None
    found_in: str | None

    @property
    def accepted(self) -> bool:
        """True only for :attr:`Reason.ACCEPTED`; send nothing otherwise."""
        return self.reason is Reason.ACCEPTED

    def to_json(self) -> dict[str, object]:
        """The verdict as plain JSON values (for ``--json``, the API and the log)."""
        return {
            "accepted": self.accepted,
            "reason": str(self.reason),
            "detail": self.detail,
            "sha256": self.sha256,
            "size": self.size,
            "pages": self.pages,
            "found_in": self.found_in,
        }


# --------------------------------------------------------------------------------------------
# Reference matching


_DASHES = dict.fromkeys(
    map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"), "-"
)
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"), None)
# What text extraction inserts inside a word: whitespace, and a hyphen ending a line.
_NOISE = r"(?:\s|-[^\S\n]*\n)*"
_CONNECTORS = "-_/."
_HORIZONTAL_SPACE = " \t\r\f\v\u00a0"


def _normalise(text: str) -> str:
    """Fold what extraction varies: compatibility forms (ligatures), dash variants, case."""
    text = unicodedata.normalize("NFKC", text).translate(_DASHES).translate(_INVISIBLE)
    return text.casefold()


def _reference_pattern(case_ref: str) -> re.Pattern[str] | None:
    chars = [c for c in _normalise(case_ref) if not c.isspace()]
    if not any(c.isalnum() for c in chars):
        return None
    body = _NOISE.join(re.escape(c) for c in chars)
    # A lookahead finds every start, overlapping ones included, so a rejected candidate
    # (inside a longer reference) cannot hide an acceptable one that overlaps it.
    return re.compile(f"(?=({body}))")


def _continues_after(text: str, end: int, last: str) -> bool:
    """Whether the text at ``end`` carries on the reference into a longer one."""
    n = len(text)
    if end >= n:
        return False
    c = text[end]
    if c.isalnum():
        return True
    if c in _CONNECTORS:
        j = end + 1
        if c == "-":  # "0012-\n3": a hyphen ending a line joins the next line's word
            k = j
            while k < n and text[k] in _HORIZONTAL_SPACE:
                k += 1
            if k < n and text[k] == "\n":
                while k < n and text[k].isspace():
                    k += 1
                j = k
        return j < n and text[j].isalnum()
    if last.isdigit() and c in _HORIZONTAL_SPACE:
        # "MASH-2024-0012 3" on one line is most likely "…00123" split by extraction.
        j = end
        while j < n and text[j] in _HORIZONTAL_SPACE:
            j += 1
        return j < n and text[j].isdigit()
    return False


def _continues_before(text: str, start: int, first: str) -> bool:
    """Whether the text before ``start`` makes the match the tail of a longer reference."""
    if start <= 0:
        return False
    c = text[start - 1]
    if c.isalnum():
        return True
    if c in _CONNECTORS:
        return start >= 2 and text[start - 2].isalnum()
    if c.isspace():
        k = start - 1
        newline = False
        while k >= 0 and text[k].isspace():
            newline = newline or text[k] == "\n"
            k -= 1
        if k < 0:
            return False
        if newline:  # "X-\nMASH-…": a hyphenated line break joins it to the word before
            return text[k] == "-" and k >= 1 and text[k - 1].isalnum()
        return first.isdigit() and text[k].isdigit()
    return False


def contains_case_ref(text: str, case_ref: str) -> bool:
    """Whether ``text`` contains ``case_ref`` as a whole reference.

    Tolerates what text extraction introduces: case, whitespace and line breaks inside the
    reference, a hyphen ending a line, dash variants and ligatures. Bounded: the reference
    must not continue into a longer one, so ``MASH-2024-0012`` is not found in
    ``MASH-2024-00123``, ``MASH-2024-0012A`` or ``XMASH-2024-0012``.
    """
    pattern = _reference_pattern(case_ref)
    if pattern is None:
        return False
    ref = [c for c in _normalise(case_ref) if not c.isspace()]
    folded = _normalise(text)
    for match in pattern.finditer(folded):
        start, end = match.start(1), match.end(1)
        if not _continues_before(folded, start, ref[0]) and not _continues_after(
            folded, end, ref[-1]
        ):
            return True
    return False


# --------------------------------------------------------------------------------------------
# Quietening pypdf

_quiet = False
_quiet_lock = threading.Lock()


class _ToDebug(logging.Handler):
    """Re-log pypdf's records at DEBUG here: robustness warnings are not the user's business."""

    def emit(self, record: logging.LogRecord) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("pypdf %s: %s", record.levelname.lower(), record.getMessage())


def _quiet_pypdf() -> None:
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
# The check


class _OutOfTime(BaseException):
    """Internal: the check ran past its time limit.

    A BaseException, like KeyboardInterrupt, so that pypdf's own ``except Exception``
    repair paths cannot swallow it and carry on past the deadline.
    """


class _Deadline:
    """A monotonic-clock budget; ``check()`` raises _OutOfTime once it is spent."""

    def __init__(self, seconds: float) -> None:
        self.expires = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.expires:
            raise _OutOfTime


def _bounded_reader(data: bytes, deadline: _Deadline) -> PdfReader:
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
        xref_stream_maximum_entries=_MAX_OBJECTS,
    )


class _Refusal(Exception):
    """Internal: stop checking with this reason and sentence."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _sizes(size: int, limit: int) -> tuple[str, str]:
    """Size and limit in MB for a person, in bytes where MB would round them to the same."""

    def mb(n: int) -> str:
        return f"{n / (1024 * 1024):.2f}".rstrip("0").rstrip(".") + " MB"

    if mb(size) == mb(limit):
        return f"{size:,} bytes", f"{limit:,} bytes"
    return mb(size), mb(limit)


def check_form(
    data: bytes,
    case_ref: str,
    *,
    password: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    case_ref_field: str | None = DEFAULT_CASE_REF_FIELD,
    text_page_limit: int = TEXT_PAGE_LIMIT,
    time_limit: float = CHECK_TIME_LIMIT,
) -> Verdict:
    """Check the exact bytes to be attached against this case; never raises for any bytes.

    ``password`` opens a form that needs one (it is ignored for forms that do not).
    ``case_ref_field`` names the form field that, when filled in, must hold this case's
    reference; None treats every field alike. Page text is searched on the first
    ``text_page_limit`` pages only. A form that takes longer than ``time_limit`` seconds to
    check (only files built to exhaust a parser do: real forms take milliseconds) is
    refused as unreadable.
    """
    data = bytes(data)
    check = _Check(
        data,
        case_ref,
        password=password,
        max_size=max_size,
        case_ref_field=case_ref_field or None,
        text_page_limit=text_page_limit,
        time_limit=time_limit,
    )
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        found_in = check.run()
    except _Refusal as refusal:
        return Verdict(refusal.reason, refusal.detail, sha256, len(data), check.pages, None)
    except _OutOfTime:
        return Verdict(
            Reason.UNREADABLE,
            f"The PDF could not be checked within {time_limit:g} s (its structure is damaged "
            "or unusually complex); print it to a new PDF and check it again.",
            sha256,
            len(data),
            check.pages,
            None,
        )
    except Exception as exc:  # the guarantee: whatever pypdf raises, a verdict, no traceback
        log.debug("form check stopped by %s", type(exc).__name__, exc_info=True)
        return Verdict(Reason.UNREADABLE, _UNREADABLE, sha256, len(data), check.pages, None)
    return Verdict(
        Reason.ACCEPTED,
        f"The form is accepted: case reference {case_ref.strip()} was found in {found_in}.",
        sha256,
        len(data),
        check.pages,
        found_in,
    )


_UNREADABLE = (
    "The PDF is damaged or malformed and cannot be checked; re-save or re-export the form "
    "from the program that made it, then check it again."
)


@dataclass(frozen=True)
class _Location:
    """One step of the path by which the structure walk reached an object (a linked list)."""

    parent: _Location | None
    key: str
    page: int | None


@dataclass
class _Findings:
    """What the structure walk saw: the first active content and embedded file, and fields."""

    active: str | None = None
    embedded: str | None = None
    #: (fully qualified field name, value as text), in the order met.
    fields: list[tuple[str, str]] = field(default_factory=list)


class _Check:
    """One run of the checks; ``pages`` is known once the page tree has been read."""

    def __init__(
        self,
        data: bytes,
        case_ref: str,
        *,
        password: str | None,
        max_size: int,
        case_ref_field: str | None,
        text_page_limit: int,
        time_limit: float,
    ) -> None:
        self.deadline = _Deadline(time_limit)
        self.data = data
        self.case_ref = case_ref.strip()
        self.password = password
        self.max_size = max_size
        self.case_ref_field = case_ref_field
        self.text_page_limit = max(1, text_page_limit)
        self.pages: int | None = None

    def run(self) -> str:
        """Run every check in order; return where the reference was found or raise _Refusal."""
        self._header()
        self._size()
        self._end_marker()
        _quiet_pypdf()
        reader = self._open()
        self._decrypt(reader)
        self._count_pages(reader)
        findings = _walk(reader, self.deadline)
        if findings.active:
            raise _Refusal(
                Reason.ACTIVE_CONTENT,
                f"The PDF contains {findings.active}; forms with scripts or launch actions are "
                "not sent, so print the form to a new PDF (which drops them) and check it again.",
            )
        if findings.embedded:
            raise _Refusal(
                Reason.EMBEDDED_FILE,
                f"The PDF carries {findings.embedded}; remove the attachment (or print the form "
                "to a new PDF) and check it again.",
            )
        return self._bind(reader, findings.fields)

    def _header(self) -> None:
        if not self.data:
            raise _Refusal(Reason.NOT_PDF, "The file is empty; attach the referral form PDF.")
        if b"%PDF-" not in self.data[:_HEADER_WINDOW]:
            raise _Refusal(
                Reason.NOT_PDF,
                "The file is not a PDF (it has no %PDF- header); attach the referral form as "
                "a PDF.",
            )

    def _size(self) -> None:
        if len(self.data) > self.max_size:
            size, limit = _sizes(len(self.data), self.max_size)
            raise _Refusal(
                Reason.TOO_LARGE,
                f"The PDF is {size}, over the {limit} limit; "
                "reduce it (for example, compress its images) or raise form.max_size_mb.",
            )

    def _end_marker(self) -> None:
        # pypdf (strict=False) opens a cut-off file by rebuilding its cross-reference table,
        # but the bytes would go out incomplete. Viewers require %%EOF within the last KiB.
        if b"%%EOF" not in self.data[-_HEADER_WINDOW:]:
            raise _Refusal(
                Reason.UNREADABLE,
                "The PDF is incomplete (it has no end-of-file marker, so it was probably cut "
                "off while being saved or copied); get a complete copy and check it again.",
            )

    def _open(self) -> PdfReader:
        try:
            return _bounded_reader(self.data, self.deadline)
        except Exception as exc:
            log.debug("pypdf could not open the form: %s", type(exc).__name__)
            raise _Refusal(Reason.UNREADABLE, _UNREADABLE) from exc

    def _decrypt(self, reader: PdfReader) -> None:
        from pypdf import PasswordType

        if not reader.is_encrypted:
            return
        try:
            # pypdf tried the empty user password on opening; ask again to learn the result.
            if reader.decrypt("") != PasswordType.NOT_DECRYPTED:
                return
            if self.password is None:
                raise _Refusal(
                    Reason.ENCRYPTED,
                    "The PDF is password-protected; give its password (--password or "
                    "form.password) or ask the sender for an unprotected copy.",
                )
            if reader.decrypt(self.password) == PasswordType.NOT_DECRYPTED:
                raise _Refusal(
                    Reason.ENCRYPTED,
                    "The password given does not open the PDF; check the password, or ask the "
                    "sender for an unprotected copy.",
                )
        except _Refusal:
            raise
        except Exception as exc:  # unsupported handler (public-key), missing AES support …
            log.debug("pypdf could not decrypt the form: %s", type(exc).__name__)
            raise _Refusal(
                Reason.ENCRYPTED,
                "The PDF uses a kind of encryption this check cannot open; ask the sender for "
                "an unprotected copy.",
            ) from exc

    def _count_pages(self, reader: PdfReader) -> None:
        try:
            self.pages = len(reader.pages)
        except Exception as exc:  # cyclic or broken page tree
            log.debug("pypdf could not read the page tree: %s", type(exc).__name__)
            raise _Refusal(
                Reason.UNREADABLE,
                "The PDF's page tree is broken and its pages cannot be read; re-save or "
                "re-export the form, then check it again.",
            ) from exc
        if self.pages == 0:
            raise _Refusal(
                Reason.NO_PAGES,
                "The PDF has no pages; attach the completed referral form.",
            )

    def _bind(self, reader: PdfReader, fields: list[tuple[str, str]]) -> str:
        ref = self.case_ref
        if not any(c.isalnum() for c in ref):
            raise _Refusal(
                Reason.CASE_REF_MISSING,
                "No case reference was given to check the form against; give the case's reference.",
            )
        wanted = self.case_ref_field
        if wanted is not None:
            mine = [
                (name, value)
                for name, value in fields
                if (name == wanted or name.endswith("." + wanted)) and value.strip()
            ]
            for name, value in mine:
                if not contains_case_ref(value, ref):
                    shown = value.strip()
                    other = repr(shown) if _SHOWABLE_REFERENCE.match(shown) else "another value"
                    raise _Refusal(
                        Reason.WRONG_CASE,
                        f"The form's {name} field holds {other}, not this case's reference "
                        f"{ref}; this looks like another case's form, so attach the right one.",
                    )
            if mine:
                return f"field {mine[0][0]}"
        for name, value in fields:
            if contains_case_ref(value, ref):
                return f"field {name}"
        unread: list[int] = []
        searched = min(self.pages or 0, self.text_page_limit)
        for number, text in _page_texts(reader, searched, unread, self.deadline):
            if contains_case_ref(text, ref):
                return f"page {number}"
        notes = ""
        if unread:
            notes += f" (the text of page {unread[0]} could not be read or is too large)"
        if (self.pages or 0) > searched:
            notes += f" (only the first {searched} pages' text was searched)"
        raise _Refusal(
            Reason.CASE_REF_MISSING,
            f"The case reference {ref} is not in the form's fields or text{notes}; attach this "
            f"case's referral form, with the reference in its {wanted or 'case reference'} "
            "field.",
        )


def _page_texts(
    reader: PdfReader, count: int, unread: list[int], deadline: _Deadline
) -> Iterator[tuple[int, str]]:
    """Yield (page number, extracted text) for the first ``count`` pages; note failures."""

    def tick(*_: Any) -> None:
        deadline.check()

    for index in range(count):
        deadline.check()
        try:
            page = reader.pages[index]
            # pypdf parses a whole content stream before extracting, beyond our clock's
            # reach; a page with more than this is not a form page, so it is not searched.
            if _content_size(page) > _MAX_PAGE_CONTENT:
                log.debug("page %d has too much content to search", index + 1)
                unread.append(index + 1)
                continue
            text = page.extract_text(visitor_operand_before=tick)
        except Exception as exc:  # fuzzed content streams raise ValueError and friends
            log.debug("no text from page %d: %s", index + 1, type(exc).__name__)
            unread.append(index + 1)
            continue
        yield index + 1, text


def _content_size(page: Any) -> int:
    """Decoded bytes of a page's content streams and the form XObjects they may draw."""
    from pypdf.generic import ArrayObject, DictionaryObject, StreamObject

    total = 0
    contents = _get(page, "/Contents")
    streams = list(contents) if isinstance(contents, ArrayObject) else [contents]
    for item in streams:
        item = item.get_object() if item is not None else None
        if isinstance(item, StreamObject):
            total += len(item.get_data())
    resources: list[tuple[Any, int]] = [(_get(page, "/Resources"), 0)]
    seen: set[int] = set()
    while resources and total <= _MAX_PAGE_CONTENT:
        resource, depth = resources.pop()
        xobjects = _get(resource, "/XObject") if isinstance(resource, DictionaryObject) else None
        if not isinstance(xobjects, DictionaryObject) or depth > 8:
            continue
        for name in list(xobjects.keys()):
            xobject = _get(xobjects, name)
            if not isinstance(xobject, StreamObject) or id(xobject) in seen:
                continue
            seen.add(id(xobject))
            if _get(xobject, "/Subtype") == "/Form":
                total += len(xobject.get_data())
                resources.append((_get(xobject, "/Resources"), depth + 1))
    return total


# --------------------------------------------------------------------------------------------
# The structure walk


def _walk(reader: PdfReader, deadline: _Deadline) -> _Findings:
    """Visit every object reachable from the catalogue once, noting actions, files and fields.

    Iterative, with a visited set of indirect objects, so cycles and deep chains cannot hang
    or overflow it; refuses (unreadable) beyond ``_MAX_OBJECTS`` objects.
    """
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, StreamObject

    page_of: dict[int, int] = {}
    for number, page_obj in enumerate(reader.pages, start=1):
        if page_obj.indirect_reference is not None:
            page_of.setdefault(page_obj.indirect_reference.idnum, number)

    findings = _Findings()
    seen: set[tuple[int, int]] = set()
    root_raw = reader.trailer.raw_get("/Root")
    stack: list[tuple[Any, _Location | None]] = [(root_raw, None)]
    visited = 0
    while stack:
        raw, where = stack.pop()
        if isinstance(raw, IndirectObject):
            ident = (raw.idnum, raw.generation)
            if ident in seen:
                continue
            seen.add(ident)
            obj = raw.get_object()
            if raw.idnum in page_of:
                # Whatever led here (page tree, a bookmark, a link), describe from the page.
                where = _Location(None, "page", page_of[raw.idnum])
        else:
            obj = raw
        if not isinstance(obj, (DictionaryObject, ArrayObject)):
            continue
        visited += 1
        if visited % 256 == 0:
            deadline.check()
        if visited > _MAX_OBJECTS:
            raise _Refusal(
                Reason.UNREADABLE,
                "The PDF has too many objects to check; re-save or re-export the form, then "
                "check it again.",
            )
        page = where.page if where is not None else None
        if isinstance(obj, DictionaryObject):
            _inspect(obj, where, findings)
            items = list(dict.items(obj))
            if isinstance(obj, StreamObject):
                # Stream data is never run as an action; only its dictionary is walked.
                items = [(k, v) for k, v in items if k not in ("/Filter", "/DecodeParms")]
            for key, value in reversed(items):
                if isinstance(value, (IndirectObject, DictionaryObject, ArrayObject)):
                    stack.append((value, _Location(where, str(key), page)))
        else:
            for value in reversed(list(list.__iter__(obj))):
                if isinstance(value, (IndirectObject, DictionaryObject, ArrayObject)):
                    stack.append((value, _Location(where, "[]", page)))
    return findings


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` resolved, or None; never raises for a missing or dangling entry."""
    try:
        value = dict.get(obj, key)
        return None if value is None else value.get_object()
    except Exception:
        return None


def _inspect(obj: Any, where: _Location | None, findings: _Findings) -> None:
    """Note active content, embedded files and field values in one dictionary."""
    action = _get(obj, "/S")
    if findings.active is None:
        if action == "/JavaScript" or "/JS" in obj:
            findings.active = f"JavaScript in {_describe(where)}"
        elif action == "/Launch":
            findings.active = f"a Launch action in {_describe(where)}"
        elif "/XFA" in obj and _xfa_has_script(_get(obj, "/XFA")):
            findings.active = "XFA form scripts"
    subtype = _get(obj, "/Subtype")
    if findings.embedded is None:
        if subtype == "/FileAttachment":
            page = f" on page {where.page}" if where is not None and where.page else ""
            findings.embedded = f"a file-attachment annotation{page}"
        elif "/EF" in obj or _get(obj, "/Type") == "/EmbeddedFile":
            findings.embedded = f"an embedded file in {_describe(where)}"
    if "/V" in obj and ("/T" in obj or "/FT" in obj or subtype == "/Widget"):
        value = _field_text(_get(obj, "/V"))
        if value is not None:
            findings.fields.append((_field_name(obj), value))


def _field_text(value: Any) -> str | None:
    """A field value as text: strings and lists of strings; names, streams and dicts are not."""
    from pypdf.generic import ArrayObject, NameObject

    if isinstance(value, NameObject):
        return None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, ArrayObject):
        parts = [str(v) for v in value if isinstance(v, str) and not isinstance(v, NameObject)]
        return " ".join(parts) if parts else None
    return None


def _field_name(obj: Any) -> str:
    """The fully qualified field name (``parent.child``), following /Parent a bounded way."""
    parts: list[str] = []
    node = obj
    seen: set[int] = set()
    for _ in range(32):
        if id(node) in seen:
            break
        seen.add(id(node))
        title = _get(node, "/T")
        if isinstance(title, str):
            parts.append(str(title))
        node = _get(node, "/Parent")
        if node is None or not hasattr(node, "keys"):
            break
    return ".".join(reversed(parts)) or "(unnamed)"


def _xfa_has_script(xfa: Any) -> bool:
    """Whether an XFA form (a stream, or an array of names and streams) holds a script."""
    from pypdf.generic import ArrayObject, StreamObject

    streams = [xfa] if isinstance(xfa, StreamObject) else []
    if isinstance(xfa, ArrayObject):
        streams = [v.get_object() for v in xfa if isinstance(v.get_object(), StreamObject)]
    return any(b"<script" in stream.get_data().lower() for stream in streams)


def _describe(where: _Location | None) -> str:
    """Where in the document an object sits, in words a person can act on."""
    keys: list[str] = []
    node = where
    page: int | None = where.page if where is not None else None
    while node is not None:
        keys.append(node.key)
        node = node.parent
    keys.reverse()
    head = keys[0] if keys else ""
    if head == "page" and page is not None:
        if "/Annots" in keys:
            return f"an annotation or form widget on page {page}"
        if "/AA" in keys:
            return f"page {page}'s additional actions (/AA)"
        return f"page {page}"
    if head == "/OpenAction":
        return "the document's open action"
    if head == "/Names" and len(keys) > 1 and keys[1] == "/JavaScript":
        return "the document-level scripts (/Names /JavaScript)"
    if head == "/Names" and len(keys) > 1 and keys[1] == "/EmbeddedFiles":
        return "the document's attachments (/Names /EmbeddedFiles)"
    if head == "/AA":
        return "the document's additional actions (/AA)"
    if head == "/Outlines":
        return "a bookmark"
    if head == "/AcroForm":
        return "a form field"
    return "the document structure"


# --------------------------------------------------------------------------------------------
# Reading, filling and writing


def read_form(path: Path) -> bytes:
    """The bytes of a referral form file; InputError names the path and what to do."""
    if path.is_dir():
        raise InputError(f"referral form {path}: is a folder, not a PDF; give the form's file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"referral form {path}: not found; check the path") from None
    except PermissionError:
        raise InputError(
            f"referral form {path}: permission denied; check the file's permissions"
        ) from None
    except OSError as exc:
        raise InputError(f"referral form {path}: cannot be read ({exc.strerror})") from exc


def write_form(path: Path, data: bytes) -> None:
    """Write a filled form so that ``path`` holds either the old file or all of ``data``.

    The bytes go to a temporary file in the same folder (so the rename cannot cross file
    systems), are flushed to disk, and the file is renamed over ``path``; the rename is
    flushed too. A new file is readable by its owner only: it holds a child's details. A
    file it replaces keeps its permissions. Raises InputError naming the path when the
    folder is missing or not writable; no temporary file is left behind.
    """
    folder = path.parent
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise _unwritable(path, exc) from exc
        raise
    _fsync_folder(folder)


def _unwritable(path: Path, exc: OSError) -> InputError:
    return InputError(
        f"referral form {path}: cannot be written ({exc.strerror or type(exc).__name__}); "
        "check the folder exists and is writable"
    )


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible on Windows, where it is not needed.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):  # the form is written; only durability is at stake
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def form_field_names(
    template: bytes, *, password: str | None = None, template_name: str | None = None
) -> list[str]:
    """The fully qualified names of a fillable form's fields, in the form's order."""
    where = _template_label(template_name)
    reader = _open_template(template, password, where)
    return list(_template_fields(reader, where))


def fill_form(
    template: bytes,
    values: Mapping[str, str],
    *,
    password: str | None = None,
    allow_filled: bool = False,
    template_name: str | None = None,
) -> bytes:
    """Fill a blank fillable form: field name -> text; returns the filled PDF's bytes.

    Appearance streams are generated and /NeedAppearances is set, so every viewer shows the
    values. A template that needs ``password`` is opened with it and the filled form is
    encrypted again with the same password (AES-256). Raises InputError when the template
    is not a readable fillable PDF or names a field it does not have (naming the field).

    A template where any field already holds a value (another child's filled form given
    as the template) is refused, naming the field but not its value: fields the mapping
    does not cover would carry the other child's details into the new form. Only
    ``allow_filled=True`` fills it anyway. ``template_name`` (e.g. its path) is named in
    errors.
    """
    from pypdf import PdfWriter

    where = _template_label(template_name)
    reader = _open_template(template, password, where)
    fields = _template_fields(reader, where)
    names = list(fields)
    if not names:
        raise InputError(
            f"{where}: has no form fields; give the blank fillable form, "
            "not a printed or flattened copy"
        )
    known = set(names) | {name.rsplit(".", 1)[-1] for name in names}
    for name in values:
        if name not in known:
            raise InputError(
                f"{where}: has no field named {name!r} (it has "
                f"{', '.join(names)}); fix [form.fill_mapping] in the config"
            )
    if not allow_filled:
        filled = [name for name, field in fields.items() if _holds_value(field)]
        if filled:
            more = f" (and {len(filled) - 1} more)" if len(filled) > 1 else ""
            raise InputError(
                f"{where}: field {filled[0]!r}{more} already has a value: this is a filled "
                "form, not the blank one, and its details would stay in the new form; give "
                "the blank fillable form"
            )
    try:
        writer = PdfWriter(clone_from=reader)
        writer.update_page_form_field_values(None, dict(values), auto_regenerate=True)
        if reader.is_encrypted and password:
            writer.encrypt(password, algorithm="AES-256")
        out = io.BytesIO()
        writer.write(out)
    except Exception as exc:
        raise InputError(
            f"{where}: could not be filled ({type(exc).__name__}); re-save the "
            "blank form from the program that made it and try again"
        ) from exc
    return out.getvalue()


def _template_label(template_name: str | None) -> str:
    """How errors name the template: with its name (e.g. its path) where one was given."""
    label = "referral form template"
    return f"{label} {template_name}" if template_name else label


def _holds_value(field: Mapping[str, Any]) -> bool:
    """Whether a form field has a value of its own: text, a ticked box, a chosen option.

    Empty or blank text, an unticked box (``/Off``) and a value equal to the field's
    default (``/DV``, which the form's author set) are not values of a child's case.
    """
    from pypdf.generic import NameObject

    value = field.get("/V")
    if value is None or value == field.get("/DV"):
        return False
    if isinstance(value, NameObject):
        return value != "/Off"
    if isinstance(value, str | bytes):
        return bool(value.strip())
    if isinstance(value, list):
        return any(str(item).strip() and item != "/Off" for item in value)
    return False  # a stream or dictionary is not a value a person typed


def _open_template(template: bytes, password: str | None, where: str) -> PdfReader:
    from pypdf import PasswordType, PdfReader

    _quiet_pypdf()
    try:
        reader = PdfReader(io.BytesIO(template), strict=False)
        opened = not reader.is_encrypted or reader.decrypt("") != PasswordType.NOT_DECRYPTED
        if not opened and password is not None:
            opened = reader.decrypt(password) != PasswordType.NOT_DECRYPTED
    except Exception as exc:
        raise InputError(f"{where}: is not a readable PDF; give the blank fillable form") from exc
    if not opened:
        raise InputError(f"{where}: is password-protected; set form.password to its password")
    return reader


def _template_fields(reader: PdfReader, where: str) -> dict[str, Any]:
    try:
        return dict(reader.get_fields() or {})
    except Exception as exc:
        raise InputError(
            f"{where}: its form fields cannot be read; re-save the blank form"
        ) from exc
