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
from typing import TYPE_CHECKING, Any

from mash_requests.referral_form.reading import Deadline, get, log
from mash_requests.referral_form.verdict import Reason, Refusal

if TYPE_CHECKING:
    from pypdf import PdfReader

#: Page text is searched on at most this many pages; referral forms put the reference on the
#: first page or two, and the bound keeps a 500-page upload within the time budget.
TEXT_PAGE_LIMIT = 50
# Page text is not searched on a page whose content streams decode to more than this.
_MAX_PAGE_CONTENT = 512 * 1024
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
# Binding


def bind(
    reader: PdfReader,
    fields: list[tuple[str, str]],
    *,
    case_ref: str,
    case_ref_field: str | None,
    pages: int,
    text_page_limit: int,
    deadline: Deadline,
) -> str:
    """Where ``case_ref`` is found (``"field …"``, ``"page N"``); raise Refusal if nowhere.

    ``fields`` are the (name, value) pairs the safety walk found; ``case_ref`` is stripped.
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
                )
        if mine:
            return f"field {mine[0][0]}"
    for name, value in fields:
        if contains_case_ref(value, ref):
            return f"field {name}"
    unread: list[int] = []
    searched = min(pages, text_page_limit)
    for number, text in page_texts(reader, searched, unread, deadline):
        if contains_case_ref(text, ref):
            return f"page {number}"
    notes = ""
    if unread:
        notes += f" (the text of page {unread[0]} could not be read or is too large)"
    if pages > searched:
        notes += f" (only the first {searched} pages' text was searched)"
    raise Refusal(
        Reason.CASE_REF_MISSING,
        f"The case reference {ref} is not in the form's fields or text{notes}; attach this "
        f"case's referral form, with the reference in its {wanted or 'case reference'} "
        "field.",
    )


def page_texts(
    reader: PdfReader, count: int, unread: list[int], deadline: Deadline
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
    contents = get(page, "/Contents")
    streams = list(contents) if isinstance(contents, ArrayObject) else [contents]
    for item in streams:
        item = item.get_object() if item is not None else None
        if isinstance(item, StreamObject):
            total += len(item.get_data())
    resources: list[tuple[Any, int]] = [(get(page, "/Resources"), 0)]
    seen: set[int] = set()
    while resources and total <= _MAX_PAGE_CONTENT:
        resource, depth = resources.pop()
        xobjects = get(resource, "/XObject") if isinstance(resource, DictionaryObject) else None
        if not isinstance(xobjects, DictionaryObject) or depth > 8:
            continue
        for name in list(xobjects.keys()):
            xobject = get(xobjects, name)
            if not isinstance(xobject, StreamObject) or id(xobject) in seen:
                continue
            seen.add(id(xobject))
            if get(xobject, "/Subtype") == "/Form":
                total += len(xobject.get_data())
                resources.append((get(xobject, "/Resources"), depth + 1))
    return total
