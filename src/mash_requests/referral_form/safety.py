"""The safety walk: active content, embedded files and field values, anywhere in a PDF.

:func:`walk` visits every object reachable from the catalogue once and notes the first
JavaScript or Launch action, or action that reaches outside the document (SubmitForm,
ImportData, GoToR, GoToE), wherever a viewer may run it (OpenAction, ``/Names`` trees,
document and page ``/AA``, annotation and widget actions, form fields, bookmarks, ``/Next``
chains), XFA scripts, the first
embedded file (an ``EmbeddedFiles`` entry, a file specification with ``/EF``, a
FileAttachment annotation), and every form field's value for the case binding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mash_requests.referral_form.reading import MAX_OBJECTS, Guard, get
from mash_requests.referral_form.verdict import Reason, Refusal

if TYPE_CHECKING:
    from pypdf import PdfReader


@dataclass(frozen=True)
class Location:
    """One step of the path by which the structure walk reached an object (a linked list)."""

    parent: Location | None
    key: str
    page: int | None


@dataclass
class Findings:
    """What the structure walk saw: the first active content and embedded file, and fields."""

    active: str | None = None
    embedded: str | None = None
    #: (fully qualified field name, value as text), in the order met.
    fields: list[tuple[str, str]] = field(default_factory=list)


def walk(reader: PdfReader, guard: Guard) -> Findings:
    """Visit every object reachable from the catalogue once, noting actions, files and fields.

    Iterative, with a visited set of indirect objects, so cycles and deep chains cannot hang
    or overflow it; refuses (unreadable, too complex to check) beyond ``MAX_OBJECTS``
    objects, a bound on work rather than time, so the verdict is the same on any machine.
    """
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, StreamObject

    page_of: dict[int, int] = {}
    for number, page_obj in enumerate(reader.pages, start=1):
        if page_obj.indirect_reference is not None:
            page_of.setdefault(page_obj.indirect_reference.idnum, number)

    findings = Findings()
    seen: set[tuple[int, int]] = set()
    root_raw = reader.trailer.raw_get("/Root")
    stack: list[tuple[Any, Location | None]] = [(root_raw, None)]
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
                where = Location(None, "page", page_of[raw.idnum])
        else:
            obj = raw
        if not isinstance(obj, (DictionaryObject, ArrayObject)):
            continue
        visited += 1
        if visited % 256 == 0:
            guard.check()
        if visited > MAX_OBJECTS:
            raise Refusal(
                Reason.UNREADABLE,
                f"The PDF is too complex to check: it has more than {MAX_OBJECTS:,} objects "
                "(a referral form has hundreds); re-save or re-export the form, then check it "
                "again.",
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
                    stack.append((value, Location(where, str(key), page)))
        else:
            for value in reversed(list(list.__iter__(obj))):
                if isinstance(value, (IndirectObject, DictionaryObject, ArrayObject)):
                    stack.append((value, Location(where, "[]", page)))
    return findings


# Actions that reach outside the document: a click could post the child's details to a URL,
# load data from a file, or open another document. URI links, named actions (Print) and
# GoTo within the document stay allowed.
_REACHING_OUT = {
    "/SubmitForm": "a SubmitForm action (it sends the form's contents outside the document)",
    "/ImportData": "an ImportData action (it loads form data from outside the document)",
    "/GoToR": "a GoToR action (it opens another file)",
    "/GoToE": "a GoToE action (it opens an embedded or another document)",
}


def _inspect(obj: Any, where: Location | None, findings: Findings) -> None:
    """Note active content, embedded files and field values in one dictionary."""
    action = get(obj, "/S")
    if findings.active is None:
        if action == "/JavaScript" or "/JS" in obj:
            findings.active = f"JavaScript in {_describe(where)}"
        elif action == "/Launch":
            findings.active = f"a Launch action in {_describe(where)}"
        elif action in _REACHING_OUT:
            findings.active = f"{_REACHING_OUT[action]} in {_describe(where)}"
        elif "/XFA" in obj and _xfa_has_script(get(obj, "/XFA")):
            findings.active = "XFA form scripts"
    subtype = get(obj, "/Subtype")
    if findings.embedded is None:
        if subtype == "/FileAttachment":
            page = f" on page {where.page}" if where is not None and where.page else ""
            findings.embedded = f"a file-attachment annotation{page}"
        elif "/EF" in obj or get(obj, "/Type") == "/EmbeddedFile":
            findings.embedded = f"an embedded file in {_describe(where)}"
    if "/V" in obj and ("/T" in obj or "/FT" in obj or subtype == "/Widget"):
        value = _field_text(get(obj, "/V"))
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
        title = get(node, "/T")
        if isinstance(title, str):
            parts.append(str(title))
        node = get(node, "/Parent")
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


def _describe(where: Location | None) -> str:
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
