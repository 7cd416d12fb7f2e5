"""check_form: the checks in order, the first that fails being the verdict.

Header, size and end marker are read from the bytes; then pypdf opens the file within
bounds (:mod:`.reading`), the password is tried, the pages counted, the structure walked for
active content and embedded files (:mod:`.safety`) and the case bound (:mod:`.binding`).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING

from mash_requests.referral_form.binding import TEXT_BYTE_LIMIT, TEXT_PAGE_LIMIT, Found, bind
from mash_requests.referral_form.reading import (
    MAX_PAGES,
    Guard,
    OutOfTime,
    bounded_reader,
    get,
    guarding,
    log,
    quiet_pypdf,
)
from mash_requests.referral_form.safety import walk
from mash_requests.referral_form.verdict import UNREADABLE, Reason, Refusal, Verdict

if TYPE_CHECKING:
    from pypdf import PdfReader

#: Forms above this many bytes are refused as ``too_large`` unless configured otherwise.
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
#: The form field that names the case the form belongs to.
DEFAULT_CASE_REF_FIELD = "case_reference"
#: The last resort against hostile files: seconds a check may take, once the file has shown
#: damage (pypdf repairs it) or unusual bulk (over 1 MiB of object syntax), before it is
#: refused as unreadable, "too complex to check". pypdf's repairs cannot be counted
#: beforehand, so from then on the clock is consulted at every object and text operator.
#: A well-formed file of ordinary bulk never consults it: its verdict rests on bounded work
#: (objects, pages, decoded bytes) alone, the same on any machine. The most work such a
#: file can ask (19,000 objects) took 0.4 to 0.8 s on a shared 2-core machine under load
#: (benchmarks/bench_form_check.py), well inside this.
CHECK_TIME_LIMIT = 5.0
# A header may follow a little junk (as Acrobat tolerates), but not much.
_HEADER_WINDOW = 1024


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
    text_byte_limit: int = TEXT_BYTE_LIMIT,
    time_limit: float = CHECK_TIME_LIMIT,
) -> Verdict:
    """Check the exact bytes to be attached against this case; never raises for any bytes.

    ``password`` opens a form that needs one (it is ignored for forms that do not).
    ``case_ref_field`` names the form field that, when filled in, must hold this case's
    reference; None treats every field alike. Page text is searched on the first
    ``text_page_limit`` pages, within ``text_byte_limit`` decoded bytes of their content;
    the verdict says how many pages were searched. These bounds count work, not time, so a
    well-formed file gets the same verdict on any machine under any load.

    ``time_limit`` is the last resort against hostile files: only a file that shows damage
    (pypdf has to repair it) or unusual bulk is refused as unreadable, "too complex to
    check", once its check has taken that many seconds.
    """
    data = bytes(data)
    check = _Check(
        data,
        case_ref,
        password=password,
        max_size=max_size,
        case_ref_field=case_ref_field or None,
        text_page_limit=text_page_limit,
        text_byte_limit=text_byte_limit,
        guard=Guard(time_limit),
    )
    sha256 = hashlib.sha256(data).hexdigest()

    def verdict(reason: Reason, detail: str, found: Found | None = None) -> Verdict:
        where, searched = (found.where, found.pages_searched) if found else (None, None)
        return Verdict(reason, detail, sha256, len(data), check.pages, where, searched)

    try:
        found = check.run()
    except Refusal as refusal:
        return replace(
            verdict(refusal.reason, refusal.detail), pages_searched=refusal.pages_searched
        )
    except OutOfTime:
        return verdict(
            Reason.UNREADABLE,
            "The PDF is too complex to check: it is damaged or unusually bulky, and checking "
            f"it took longer than the {time_limit:g} s allowed as a last resort against files "
            "built to exhaust a checker; print it to a new PDF and check it again.",
        )
    except Exception as exc:  # the guarantee: whatever pypdf raises, a verdict, no traceback
        log.debug("form check stopped by %s", type(exc).__name__, exc_info=True)
        return verdict(Reason.UNREADABLE, UNREADABLE)
    return verdict(
        Reason.ACCEPTED,
        f"The form is accepted: case reference {case_ref.strip()} was found in {found.where}.",
        found,
    )


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
        text_byte_limit: int,
        guard: Guard,
    ) -> None:
        self.guard = guard
        self.data = data
        self.case_ref = case_ref.strip()
        self.password = password
        self.max_size = max_size
        self.case_ref_field = case_ref_field
        self.text_page_limit = max(1, text_page_limit)
        self.text_byte_limit = max(0, text_byte_limit)
        self.pages: int | None = None

    def run(self) -> Found:
        """Run every check in order; return where the reference was found or raise Refusal."""
        self._header()
        self._size()
        self._end_marker()
        quiet_pypdf()
        with guarding(self.guard):
            reader = self._open()
            self._decrypt(reader)
            self._count_pages(reader)
            findings = walk(reader, self.guard)
            if findings.active:
                raise Refusal(
                    Reason.ACTIVE_CONTENT,
                    f"The PDF contains {findings.active}; forms with scripts or actions that "
                    "reach outside the document are not sent, so print the form to a new PDF "
                    "(which drops them) and check it again.",
                )
            if findings.embedded:
                raise Refusal(
                    Reason.EMBEDDED_FILE,
                    f"The PDF carries {findings.embedded}; remove the attachment (or print the "
                    "form to a new PDF) and check it again.",
                )
            return self._bind(reader, findings.fields)

    def _header(self) -> None:
        if not self.data:
            raise Refusal(Reason.NOT_PDF, "The file is empty; attach the referral form PDF.")
        if b"%PDF-" not in self.data[:_HEADER_WINDOW]:
            raise Refusal(
                Reason.NOT_PDF,
                "The file is not a PDF (it has no %PDF- header); attach the referral form as "
                "a PDF.",
            )

    def _size(self) -> None:
        if len(self.data) > self.max_size:
            size, limit = _sizes(len(self.data), self.max_size)
            raise Refusal(
                Reason.TOO_LARGE,
                f"The PDF is {size}, over the {limit} limit; "
                "reduce it (for example, compress its images) or raise form.max_size_mb.",
            )

    def _end_marker(self) -> None:
        # pypdf (strict=False) opens a cut-off file by rebuilding its cross-reference table,
        # but the bytes would go out incomplete. Viewers require %%EOF within the last KiB.
        if b"%%EOF" not in self.data[-_HEADER_WINDOW:]:
            raise Refusal(
                Reason.UNREADABLE,
                "The PDF is incomplete (it has no end-of-file marker, so it was probably cut "
                "off while being saved or copied); get a complete copy and check it again.",
            )

    def _open(self) -> PdfReader:
        try:
            return bounded_reader(self.data, self.guard)
        except Exception as exc:
            log.debug("pypdf could not open the form: %s", type(exc).__name__)
            raise Refusal(Reason.UNREADABLE, UNREADABLE) from exc

    def _decrypt(self, reader: PdfReader) -> None:
        from pypdf import PasswordType

        if not reader.is_encrypted:
            return
        try:
            # pypdf tried the empty user password on opening; ask again to learn the result.
            if reader.decrypt("") != PasswordType.NOT_DECRYPTED:
                return
            if self.password is None:
                raise Refusal(
                    Reason.ENCRYPTED,
                    # Where a password is given differs by command: the CLI says how.
                    "The PDF is password-protected and no password was given; give its "
                    "password, or ask the sender for an unprotected copy.",
                )
            if reader.decrypt(self.password) == PasswordType.NOT_DECRYPTED:
                raise Refusal(
                    Reason.ENCRYPTED,
                    "The password given does not open the PDF; check the password, or ask the "
                    "sender for an unprotected copy.",
                )
        except Refusal:
            raise
        except Exception as exc:  # unsupported handler (public-key), missing AES support …
            log.debug("pypdf could not decrypt the form: %s", type(exc).__name__)
            raise Refusal(
                Reason.ENCRYPTED,
                "The PDF uses a kind of encryption this check cannot open; ask the sender for "
                "an unprotected copy.",
            ) from exc

    def _count_pages(self, reader: PdfReader) -> None:
        too_many = Refusal(
            Reason.UNREADABLE,
            f"The PDF is too complex to check: it has more than {MAX_PAGES:,} pages (a "
            "referral form has a few); attach the referral form alone.",
        )
        # Reading the page tree costs pypdf an object per page: refuse a huge one unread.
        declared = get(get(reader.trailer, "/Root"), "/Pages")
        count = get(declared, "/Count")
        if isinstance(count, int) and count > MAX_PAGES:
            raise too_many
        try:
            self.pages = len(reader.pages)
        except Exception as exc:  # cyclic or broken page tree
            log.debug("pypdf could not read the page tree: %s", type(exc).__name__)
            if "page tree entry limit" in str(exc):  # pypdf's own bound, set to MAX_PAGES
                raise too_many from exc
            raise Refusal(
                Reason.UNREADABLE,
                "The PDF's page tree is broken and its pages cannot be read; re-save or "
                "re-export the form, then check it again.",
            ) from exc
        if self.pages > MAX_PAGES:  # a /Count that lied
            raise too_many
        if self.pages == 0:
            raise Refusal(
                Reason.NO_PAGES,
                "The PDF has no pages; attach the completed referral form.",
            )

    def _bind(self, reader: PdfReader, fields: list[tuple[str, str]]) -> Found:
        return bind(
            reader,
            fields,
            case_ref=self.case_ref,
            case_ref_field=self.case_ref_field,
            pages=self.pages or 0,
            text_page_limit=self.text_page_limit,
            text_byte_limit=self.text_byte_limit,
            guard=self.guard,
        )
