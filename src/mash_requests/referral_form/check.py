"""check_form: the checks in order, the first that fails being the verdict.

Header, size and end marker are read from the bytes; then pypdf opens the file within
bounds (:mod:`.reading`), the password is tried, the pages counted, the structure walked for
active content and embedded files (:mod:`.safety`) and the case bound (:mod:`.binding`).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from mash_requests.referral_form.binding import TEXT_PAGE_LIMIT, bind
from mash_requests.referral_form.reading import (
    Deadline,
    OutOfTime,
    bounded_reader,
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
#: Seconds one check may take before the form is refused as unreadable. pypdf's repair paths
#: rescan the whole file per broken reference, so a hostile file could cost minutes; every
#: object resolution and text operator checks the clock. Real forms take milliseconds.
CHECK_TIME_LIMIT = 1.5
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
    except Refusal as refusal:
        return Verdict(refusal.reason, refusal.detail, sha256, len(data), check.pages, None)
    except OutOfTime:
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
        return Verdict(Reason.UNREADABLE, UNREADABLE, sha256, len(data), check.pages, None)
    return Verdict(
        Reason.ACCEPTED,
        f"The form is accepted: case reference {case_ref.strip()} was found in {found_in}.",
        sha256,
        len(data),
        check.pages,
        found_in,
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
        time_limit: float,
    ) -> None:
        self.deadline = Deadline(time_limit)
        self.data = data
        self.case_ref = case_ref.strip()
        self.password = password
        self.max_size = max_size
        self.case_ref_field = case_ref_field
        self.text_page_limit = max(1, text_page_limit)
        self.pages: int | None = None

    def run(self) -> str:
        """Run every check in order; return where the reference was found or raise Refusal."""
        self._header()
        self._size()
        self._end_marker()
        quiet_pypdf()
        reader = self._open()
        self._decrypt(reader)
        self._count_pages(reader)
        findings = walk(reader, self.deadline)
        if findings.active:
            raise Refusal(
                Reason.ACTIVE_CONTENT,
                f"The PDF contains {findings.active}; forms with scripts or launch actions are "
                "not sent, so print the form to a new PDF (which drops them) and check it again.",
            )
        if findings.embedded:
            raise Refusal(
                Reason.EMBEDDED_FILE,
                f"The PDF carries {findings.embedded}; remove the attachment (or print the form "
                "to a new PDF) and check it again.",
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
            return bounded_reader(self.data, self.deadline)
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
                    "The PDF is password-protected; give its password (--password or "
                    "form.password) or ask the sender for an unprotected copy.",
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
        try:
            self.pages = len(reader.pages)
        except Exception as exc:  # cyclic or broken page tree
            log.debug("pypdf could not read the page tree: %s", type(exc).__name__)
            raise Refusal(
                Reason.UNREADABLE,
                "The PDF's page tree is broken and its pages cannot be read; re-save or "
                "re-export the form, then check it again.",
            ) from exc
        if self.pages == 0:
            raise Refusal(
                Reason.NO_PAGES,
                "The PDF has no pages; attach the completed referral form.",
            )

    def _bind(self, reader: PdfReader, fields: list[tuple[str, str]]) -> str:
        return bind(
            reader,
            fields,
            case_ref=self.case_ref,
            case_ref_field=self.case_ref_field,
            pages=self.pages or 0,
            text_page_limit=self.text_page_limit,
            deadline=self.deadline,
        )
