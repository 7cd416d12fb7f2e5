"""Case binding: is this the case's form? Field values first, then the first pages' text.

The case reference must be in the configured case-reference field, another field value, or
the page text; the configured field holding another reference is ``wrong_case``, no
reference at all is ``case_ref_missing``. Matching (:func:`contains_case_ref`) tolerates
what text extraction does to a reference but never finds it inside a longer one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mash_requests.referral_form.reading import Guard, get, log
from mash_requests.referral_form.verdict import Reason, Refusal

if TYPE_CHECKING:
    from pypdf import PdfReader

#: Page text is searched on at most this many pages; referral forms put the reference in a
#: field or on the first page or two.
TEXT_PAGE_LIMIT = 50
#: Page text is searched within this many decoded bytes of page content in all (content
#: streams, form XObjects, fonts' character maps): pypdf extracts text at a few microseconds
#: a byte, so this bounds the search to a fraction of a second, whatever the machine.
TEXT_BYTE_LIMIT = 128 * 1024
# What a font costs pypdf per page beyond its character maps (reading its dictionary,
# widths and encoding), counted as this many bytes of content.
_FONT_CHARGE = 2048
# Text operators run in all, per byte of the budget: pypdf extracts a form XObject again
# each time a page draws it, which the byte count cannot see. An operator costs pypdf some
# 20-100 microseconds and a text page has a few hundred, so only a page that draws the
# same content over and over, or an unusually dense one, meets this (10,922 for 128 KB).
_BYTES_PER_OPERATOR = 12


class _OperatorsSpent(BaseException):
    """Internal: the text search ran its operators out (a BaseException, as pypdf catches
    every Exception while it extracts a form XObject and would carry on)."""


# A value we are willing to repeat back in a refusal: it looks like a reference, so it is
# not a name, address or free text about a child.
_SHOWABLE_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}$")


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
    ref = [c for c in _normalise(case_ref) if not c.isspace()]
    if not any(c.isalnum() for c in ref):
        return False
    folded = _normalise(text)
    # The reference as it is, the usual case, found without building the pattern (compiling
    # it costs about a millisecond): each such place is also where the pattern would match,
    # with the same bounds, so a place accepted here is one the pattern would accept.
    literal = "".join(ref)
    at = folded.find(literal)
    while at >= 0:
        end = at + len(literal)
        if not _continues_before(folded, at, ref[0]) and not _continues_after(folded, end, ref[-1]):
            return True
        at = folded.find(literal, at + 1)
    pattern = _reference_pattern(case_ref)
    if pattern is None:
        return False
    for match in pattern.finditer(folded):
        start, end = match.start(1), match.end(1)
        if not _continues_before(folded, start, ref[0]) and not _continues_after(
            folded, end, ref[-1]
        ):
            return True
    return False


# --------------------------------------------------------------------------------------------
# Binding


@dataclass(frozen=True)
class Found:
    """Where the reference was found, and how many pages' text was searched to find it."""

    where: str
    pages_searched: int


def bind(
    reader: PdfReader,
    fields: list[tuple[str, str]],
    *,
    case_ref: str,
    case_ref_field: str | None,
    pages: int,
    text_page_limit: int,
    text_byte_limit: int,
    guard: Guard,
) -> Found:
    """Where ``case_ref`` is found (``"field …"``, ``"page N"``); raise Refusal if nowhere.

    ``fields`` are the (name, value) pairs the safety walk found; ``case_ref`` is stripped.
    Page text is searched on the first ``text_page_limit`` pages, within ``text_byte_limit``
    decoded bytes of their content in all (see :class:`TextSearch`): bounds on work, so the
    verdict is the same on any machine.
    """
    ref = case_ref
    if not any(c.isalnum() for c in ref):
        raise Refusal(
            Reason.CASE_REF_MISSING,
            "No case reference was given to check the form against; give the case's reference.",
        )
    wanted = case_ref_field
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
                raise Refusal(
                    Reason.WRONG_CASE,
                    f"The form's {name} field holds {other}, not this case's reference "
                    f"{ref}; this looks like another case's form, so attach the right one.",
                    pages_searched=0,
                )
        if mine:
            return Found(f"field {mine[0][0]}", 0)
    for name, value in fields:
        if contains_case_ref(value, ref):
            return Found(f"field {name}", 0)
    search = TextSearch(reader, pages, text_page_limit, text_byte_limit, guard)
    for number, text in search.texts():
        if contains_case_ref(text, ref):
            return Found(f"page {number}", number)
    raise Refusal(
        Reason.CASE_REF_MISSING,
        f"The case reference {ref} was not found: searched {search.summary()}; attach this "
        f"case's referral form, with the reference in its {wanted or 'case reference'} "
        "field.",
        pages_searched=search.searched,
    )


class TextSearch:
    """The page text searched for the reference, bounded by work, not by time.

    Pages are read in order, at most ``page_limit`` of them, while their content fits in
    ``byte_limit`` decoded bytes in all (content streams, the form XObjects they draw and
    the fonts' character maps: what pypdf's text extraction reads). A page costing more
    than the whole budget is skipped and named; the first page that does not fit in what
    is left ends the search, as does running out of text operators (a page drawing the
    same form XObject over and over). ``searched`` counts the pages looked at.
    """

    def __init__(
        self, reader: PdfReader, pages: int, page_limit: int, byte_limit: int, guard: Guard
    ) -> None:
        self.reader = reader
        self.pages = pages
        self.page_limit = max(1, page_limit)
        self.byte_limit = byte_limit
        self.left = byte_limit
        self.guard = guard
        self.searched = 0
        #: Pages looked at whose text could not be read or was too large to search.
        self.unread: list[int] = []

    def texts(self) -> Iterator[tuple[int, str]]:
        """Yield (page number, extracted text) for each page searched, in order."""
        operators_left = max(1000, self.byte_limit // _BYTES_PER_OPERATOR)

        def tick(*_: Any) -> None:
            nonlocal operators_left
            operators_left -= 1
            if operators_left < 0:
                raise _OperatorsSpent
            self.guard.check()

        for index in range(min(self.pages, self.page_limit)):
            self.guard.check()
            number = index + 1
            try:
                page = self.reader.pages[index]
                cost = _page_cost(page, self.byte_limit)
            except Exception as exc:  # fuzzed pages raise ValueError and friends
                log.debug("page %d cannot be measured: %s", number, type(exc).__name__)
                self.searched = number
                self.unread.append(number)
                continue
            if cost > self.byte_limit:
                log.debug("page %d has too much content to search", number)
                self.searched = number
                self.unread.append(number)
                continue
            if cost > self.left:
                return
            self.left -= cost
            self.searched = number
            try:
                text = page.extract_text(visitor_operand_before=tick)
            except _OperatorsSpent:
                log.debug("page %d draws more text operators than a search runs", number)
                self.unread.append(number)
                return
            except Exception as exc:  # fuzzed content streams raise ValueError and friends
                log.debug("no text from page %d: %s", number, type(exc).__name__)
                self.unread.append(number)
                continue
            yield number, text

    def summary(self) -> str:
        """What was searched, for a person: "every form field and the text of …"."""
        if self.searched == self.pages:
            pages = "its page" if self.pages == 1 else f"all {self.pages} pages"
            text = f"every form field and the text of {pages}"
        else:
            text = (
                f"every form field and the text of the first {self.searched} of "
                f"{self.pages} pages (a check reads at most {self.page_limit} pages and "
                f"{self.byte_limit // 1024:,} KB of page content)"
            )
        if self.unread:
            which = f"page {self.unread[0]}'s text"
            if len(self.unread) > 1:
                which = f"the text of pages {', '.join(map(str, self.unread[:3]))}"
                which += " and more" if len(self.unread) > 3 else ""
            text += f" ({which} could not be read or is too large to search)"
        return text


def _page_cost(page: Any, cap: int) -> int:
    """What extracting a page's text reads, in decoded bytes; stops counting past ``cap``.

    The page's content streams, the form XObjects they may draw (each once; pypdf's own
    limit bounds how often one is drawn), and for every font in their resources the
    character maps pypdf parses (``/ToUnicode``, an ``/Encoding`` stream) plus a flat
    charge for the font dictionary itself.
    """
    from pypdf.generic import ArrayObject, DictionaryObject, StreamObject

    total = 0
    contents = get(page, "/Contents")
    streams = list(contents) if isinstance(contents, ArrayObject) else [contents]
    for item in streams:
        item = item.get_object() if item is not None else None
        if isinstance(item, StreamObject):
            total += len(item.get_data())
    resources: list[tuple[Any, int]] = [(get(page, "/Resources"), 0)]
    seen: set[int] = set()
    while resources and total <= cap:
        resource, depth = resources.pop()
        if not isinstance(resource, DictionaryObject) or depth > 8:
            continue
        total += _fonts_cost(get(resource, "/Font"), seen)
        xobjects = get(resource, "/XObject")
        if not isinstance(xobjects, DictionaryObject):
            continue
        for name in list(xobjects.keys()):
            xobject = get(xobjects, name)
            if not isinstance(xobject, StreamObject) or id(xobject) in seen:
                continue
            seen.add(id(xobject))
            if get(xobject, "/Subtype") == "/Form":
                total += len(xobject.get_data())
                resources.append((get(xobject, "/Resources"), depth + 1))
            if total > cap:
                break
    return total


def _fonts_cost(fonts: Any, seen: set[int]) -> int:
    """Decoded bytes of the character maps of a resource dictionary's fonts, plus a flat charge."""
    from pypdf.generic import ArrayObject, DictionaryObject, StreamObject

    if not isinstance(fonts, DictionaryObject):
        return 0
    total = 0
    for name in list(fonts.keys()):
        font = get(fonts, name)
        if not isinstance(font, DictionaryObject) or id(font) in seen:
            continue
        seen.add(id(font))
        total += _FONT_CHARGE
        parts = [font]
        descendants = get(font, "/DescendantFonts")
        if isinstance(descendants, ArrayObject):
            parts += [d.get_object() for d in descendants[:4] if d is not None]
        for part in parts:
            if not isinstance(part, DictionaryObject):
                continue
            for key in ("/ToUnicode", "/Encoding"):
                stream = get(part, key)
                if isinstance(stream, StreamObject):
                    total += len(stream.get_data())
    return total
