"""The verdict a form check returns: a closed set of reasons, a sentence, a fingerprint."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Why a form was accepted or refused; the closed set the dispatch log records."""

    ACCEPTED = "accepted"
    #: Not a PDF at all (no ``%PDF-`` header), including empty files.
    NOT_PDF = "not_pdf"
    #: A PDF that cannot be read or checked: cut off, broken beyond repair, cyclic page tree,
    #: fuzzed, or too complex to check (more objects or pages than the check's bounds, or so
    #: damaged that repairing it ran past the last-resort time limit).
    UNREADABLE = "unreadable"
    #: Needs a password that was not given, or the given one is wrong.
    ENCRYPTED = "encrypted"
    #: Opens, but has no pages.
    NO_PAGES = "no_pages"
    #: JavaScript, a Launch action, or an action that reaches outside the document
    #: (SubmitForm, ImportData, GoToR, GoToE) somewhere in the document, or XFA scripts.
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
    case_reference"``, ``"page 2"``), or None when it was not. ``pages_searched`` is how many
    pages' text (from the first) the case binding searched: 0 when a field decided, None when
    the check stopped before the binding.
    """

    reason: Reason
    detail: str
    sha256: str
    size: int
    pages: int | None
    found_in: str | None
    pages_searched: int | None = None

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
            "pages_searched": self.pages_searched,
        }


class Refusal(Exception):
    """Internal to the check: stop checking with this reason and sentence."""

    def __init__(self, reason: Reason, detail: str, *, pages_searched: int | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.pages_searched = pages_searched


#: The sentence for a file pypdf cannot read, whatever the exact failure.
UNREADABLE = (
    "The PDF is damaged or malformed and cannot be checked; re-save or re-export the form "
    "from the program that made it, then check it again."
)
