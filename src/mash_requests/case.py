"""The case: one contact about a child, loaded from JSON and validated in full.

A case file looks like this (the README's "Case file reference" documents every field)::

    {
      "case_ref": "MASH-2026-0412",
      "contact_id": "CON-88213",
      "rag": "amber",
      "child": {"name": "Leo Hartley", "date_of_birth": "2016-04-09",
                "address": "14 Alder Row, Eastbury EB3 2QT"},
      "consent": {"status": "given", "given_by": "Mother", "reason": ""},
      "concerns": "Summary of the concerns …",
      "worker": {"name": "Sam Okafor", "role": "MASH Social Worker",
                 "email": "sam.okafor@eastbury.gov.uk"},
      "partners": ["police", "health"],
      "referral_form": "../forms/MASH-2026-0412.pdf"
    }

Validation errors name the file and the field, never a value the file holds (refusals are
logged, and the log must not hold a child's details; a shifted CSV row puts an address
where the consent status belongs). They say what was expected and describe what was found
without its content: ``case file cases/C-1.json: field consent.status: expected one of
given, not_given, not_sought, got a text of 33 characters``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mash_requests.errors import CaseFileError

if TYPE_CHECKING:
    from mash_requests.deadlines import Timescales

#: A reference safe for subjects, filenames and headers: letters, digits and - _ / .
REFERENCE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_TEXT = 20_000
#: What a partner key looks like (as the config requires of the directory's keys).
_PARTNER_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: A field name that may be repeated in a message: a spelling mistake, not a child's name.
_FIELD_NAME = re.compile(r"^[A-Za-z_$][A-Za-z0-9_]{0,39}$")
#: Characters that reorder how the text around them is shown (embeddings, overrides,
#: isolates: U+202A-U+202E, U+2066-U+2069). A name holding U+202E reads one way in the
#: message and another in the log, so no text field may hold them.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: What a text that may span lines keeps of the control characters: line breaks and tabs
#: (concerns pasted from a document hold them; they are harmless in a message).
_MULTI_LINE_CONTROLS = frozenset("\n\r\t")


class Rag(StrEnum):
    """The RAG rating a MASH manager gives a contact; it sets the response deadline."""

    RED = "red"
    AMBER = "amber"
    GREEN = "green"


class ConsentStatus(StrEnum):
    """Whether the family consented to information being shared."""

    GIVEN = "given"
    #: Refused: sharing goes ahead only on a lawful basis without consent; reason required.
    NOT_GIVEN = "not_given"
    #: Not asked (e.g. asking would put the child at risk); reason required.
    NOT_SOUGHT = "not_sought"


@dataclass(frozen=True)
class Child:
    name: str
    date_of_birth: date
    address: str


@dataclass(frozen=True)
class Consent:
    status: ConsentStatus
    reason: str
    given_by: str


@dataclass(frozen=True)
class Worker:
    """The MASH worker asking; replies go to their secure address."""

    name: str
    role: str
    email: str


@dataclass(frozen=True)
class Case:
    """A validated case. ``referral_form`` is resolved against the case file's folder."""

    case_ref: str
    contact_id: str
    rag: Rag
    child: Child
    consent: Consent
    concerns: str
    worker: Worker
    partners: tuple[str, ...]
    referral_form: Path | None
    #: Where the case came from, for messages (a file path, a batch row; "(in memory)").
    source: str = "(in memory)"

    def form_values(
        self, mapping: Mapping[str, str], *, timescales: Timescales | None = None
    ) -> dict[str, str]:
        """Values for filling a referral form: form field name -> text from a dotted case path.

        ``mapping`` is e.g. ``{"child_name": "child.name", "case_reference": "case_ref"}``.
        Values read as they do in the request sent with the form: dates ``9 April 2016``,
        ``rag`` as ``AMBER (24 working hours)`` given ``timescales`` (else ``AMBER``).
        Raises CaseFileError naming the path when the case has no such field.
        """
        from mash_requests._wording import format_date

        values: dict[str, str] = {}
        for form_field, path in mapping.items():
            value: Any = self
            for part in path.split("."):
                if not hasattr(value, part):
                    raise CaseFileError(
                        f"form field {form_field!r} is mapped to {path!r}, which a case does not "
                        "have; fix [form.fill_mapping] in the config"
                    )
                value = getattr(value, part)
            if isinstance(value, Rag):
                values[form_field] = _rag_text(value, timescales)
            elif isinstance(value, date):
                values[form_field] = format_date(value)
            elif isinstance(value, tuple):
                values[form_field] = ", ".join(str(item) for item in value)
            else:
                values[form_field] = str(value)
        return values


def _rag_text(rag: Rag, timescales: Timescales | None) -> str:
    """``AMBER (24 working hours)``, as the request's body says it; ``AMBER`` alone without
    the timescales to say how long."""
    if timescales is None:
        return rag.upper()
    from mash_requests.deadlines import describe_hours

    hours = describe_hours(timescales.hours[rag], working=rag in timescales.working_hours)
    return f"{rag.upper()} ({hours})"


def described(value: object) -> str:
    """What a value is, without its content: for messages that must not repeat a case's details.

    ``a text of 33 characters``, ``an empty text``, ``a number``, ``true or false``, ``a
    list``, ``an object``, ``null``: enough to tell a shifted column or a wrong type apart.
    """
    if isinstance(value, datetime):
        return "a date and time"
    if isinstance(value, str):
        if not value.strip():
            return "an empty text" if not value else "a text of only spaces"
        return f"a text of {len(value)} character{'s' if len(value) != 1 else ''}"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return type(value).__name__


def _field_name(key: str) -> str:
    """``key`` for a message when it looks like a field name, else a description of it."""
    return key if _FIELD_NAME.match(key) else f"({described(key)})"


def _reference_problem(value: str) -> str:
    """Why a text is not a reference, in words that do not repeat it."""
    if len(value) > 64:
        return "it is longer than 64 characters"
    if any(c.isspace() for c in value):
        return "it contains a space or a line break"
    if value and not value[0].isalnum():
        return "it does not start with a letter or a digit"
    return "it contains a character other than letters, digits and - _ / ."


def _character_problem(value: str, *, single_line: bool) -> str | None:
    """Why a text holds a character no case field may, in words that do not repeat it.

    Control characters (NUL, tab, escape …: Unicode category Cc) have no place in a one-line
    field, and only line breaks and tabs in one that may span lines; the bidi controls
    (:data:`_BIDI_CONTROLS`) in none.
    """
    for char in value:
        if char in _BIDI_CONTROLS:
            return (
                f"contains U+{ord(char):04X}, a character that reorders the text around it; "
                "remove it"
            )
        if unicodedata.category(char) == "Cc" and (single_line or char not in _MULTI_LINE_CONTROLS):
            what = "a tab" if char == "\t" else f"a control character (U+{ord(char):04X})"
            return f"contains {what}; remove it"
    return None


class _Reader:
    """Reads fields of a JSON object, reporting errors as ``file: field path: problem``."""

    def __init__(self, source: str, data: Mapping[str, Any], prefix: str = "") -> None:
        self.source = source
        self.data = data
        self.prefix = prefix

    def error(self, key: str, problem: str) -> CaseFileError:
        return CaseFileError(
            f"case file {self.source}: field {self.prefix}{key}: {problem}",
            field=f"{self.prefix}{key}",
        )

    def raw(self, key: str) -> Any:
        if key not in self.data or self.data[key] is None:
            raise self.error(key, "is missing; add it (see the README's case file reference)")
        return self.data[key]

    def text(self, key: str, *, required: bool = True, single_line: bool = True) -> str:
        if not required and self.data.get(key) in (None, ""):
            return ""
        value = self.raw(key)
        if not isinstance(value, str):
            raise self.error(key, f"expected text, got {described(value)}")
        value = value.strip()
        if required and not value:
            raise self.error(key, "is empty")
        if single_line and any(c in value for c in "\r\n\u0085\u2028\u2029"):
            raise self.error(key, "must be on one line (it contains a line break)")
        problem = _character_problem(value, single_line=single_line)
        if problem:
            raise self.error(key, problem)
        if len(value) > MAX_TEXT:
            raise self.error(key, f"is longer than {MAX_TEXT} characters")
        return value

    def reference(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str) or not REFERENCE_PATTERN.match(value):
            why = f" ({_reference_problem(value)})" if isinstance(value, str) and value else ""
            raise self.error(
                key,
                "expected a reference of letters, digits and - _ / . (at most 64 characters), "
                f"got {described(value)}{why}",
            )
        return value

    def email(self, key: str) -> str:
        value = self.text(key)
        if not _EMAIL.match(value):
            if any(c.isspace() for c in value):
                why = " with a space"
            elif value.count("@") != 1:
                why = " with no @" if "@" not in value else " with more than one @"
            else:
                why = ""
            raise self.error(key, f"expected an email address, got {described(value)}{why}")
        return value

    def choice(self, key: str, enum: type[StrEnum]) -> str:
        value = self.raw(key)
        allowed = [str(member) for member in enum]
        if not isinstance(value, str) or value.strip().lower() not in allowed:
            raise self.error(key, f"expected one of {', '.join(allowed)}, got {described(value)}")
        return value.strip().lower()

    def date(self, key: str) -> date:
        value = self.raw(key)
        try:
            if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                raise ValueError
            return date.fromisoformat(value)
        except ValueError:
            # The child's details never reach a message (or the log, where refusals go).
            if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                found = "a date that is not in the calendar"
            else:
                found = described(value)
            raise self.error(key, f"expected a real date as YYYY-MM-DD, got {found}") from None

    def obj(self, key: str) -> _Reader:
        value = self.raw(key)
        if not isinstance(value, dict):
            raise self.error(key, f"expected an object, got {described(value)}")
        return _Reader(self.source, value, f"{self.prefix}{key}.")


def parse_case(data: Any, *, source: str, base_dir: Path | None = None) -> Case:
    """Validate a case given as parsed JSON; ``source`` names it in errors."""
    if not isinstance(data, dict):
        raise CaseFileError(f"case file {source}: expected a JSON object at the top level")
    reader = _Reader(source, data)
    child_reader = reader.obj("child")
    dob = child_reader.date("date_of_birth")
    if dob > date.today():
        raise child_reader.error("date_of_birth", "is in the future")
    consent_reader = reader.obj("consent")
    status = ConsentStatus(consent_reader.choice("status", ConsentStatus))
    reason = consent_reader.text("reason", required=status is not ConsentStatus.GIVEN)
    worker_reader = reader.obj("worker")

    partners_raw = reader.raw("partners")
    # A tuple is a list too when the case comes from Python (JSON gives lists).
    if not isinstance(partners_raw, list | tuple):
        raise reader.error(
            "partners",
            f'expected a list of partner keys such as ["police"], got {described(partners_raw)}',
        )
    for number, key in enumerate(partners_raw, start=1):
        if not isinstance(key, str):
            raise reader.error(
                "partners",
                'expected a list of partner keys such as ["police"]; '
                f"entry {number} is {described(key)}",
            )
    partners = tuple(dict.fromkeys(p.strip() for p in partners_raw))
    for number, key in enumerate(partners, start=1):
        # An unknown key is named back to the user; a shifted column's text must not be.
        if not _PARTNER_KEY.match(key):
            raise reader.error(
                "partners",
                "expected partner keys, short lower-case words such as police; "
                f"entry {number} is {described(key)}",
            )

    form: Path | None = None
    if data.get("referral_form") not in (None, ""):
        form_text = reader.text("referral_form")
        form = Path(form_text).expanduser()
        if not form.is_absolute() and base_dir is not None:
            form = base_dir / form

    known = {
        "case_ref", "contact_id", "rag", "child", "consent", "concerns",
        "worker", "partners", "referral_form", "$schema", "notes_for_staff",
    }  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise reader.error(
            _field_name(unknown[0]), "unknown field; check the spelling against the README"
        )
    for sub_reader, fields in (
        (child_reader, {"name", "date_of_birth", "address"}),
        (consent_reader, {"status", "reason", "given_by"}),
        (worker_reader, {"name", "role", "email"}),
    ):
        extra = sorted(set(sub_reader.data) - fields)
        if extra:
            raise sub_reader.error(
                _field_name(extra[0]), "unknown field; check the spelling against the README"
            )

    return Case(
        case_ref=reader.reference("case_ref"),
        contact_id=reader.reference("contact_id"),
        rag=Rag(reader.choice("rag", Rag)),
        child=Child(
            name=child_reader.text("name"),
            date_of_birth=dob,
            address=child_reader.text("address", single_line=False),
        ),
        consent=Consent(
            status=status,
            reason=reason,
            given_by=consent_reader.text("given_by", required=False),
        ),
        concerns=reader.text("concerns", single_line=False),
        worker=Worker(
            name=worker_reader.text("name"),
            role=worker_reader.text("role"),
            email=worker_reader.email("email"),
        ),
        partners=partners,
        referral_form=form,
        source=source,
    )


def case_data(case: Case, *, source: str) -> dict[str, Any]:
    """A Case as the mapping a case file would hold, for :func:`parse_case` to judge.

    A Case may have been built by hand with any values, so nothing is assumed of them:
    typed values become what a case file holds (a ``date`` its ISO text, a ``Path`` its
    text, a tuple of partners a list), and any other value is passed on unchanged for the
    rules to refuse, naming the field (a ``str`` date of the right form is simply read).
    A part that is not the dataclass it should be (``child`` not a :class:`Child`) is
    refused here, with the same words a file's wrong part gets.
    """
    reader = _Reader(source, {})
    data: dict[str, Any] = {}
    for name, value in _dataclass_items(case):
        if name == "source":
            continue
        part = _PARTS.get(name)
        if part is not None:
            if not isinstance(value, part):
                raise reader.error(name, f"expected a {part.__name__}, got {described(value)}")
            value = {key: _as_case_file_value(item) for key, item in _dataclass_items(value)}
        data[name] = _as_case_file_value(value)
    return data


#: The parts of a Case that are dataclasses of their own.
_PARTS: dict[str, type] = {"child": Child, "consent": Consent, "worker": Worker}


def _dataclass_items(value: object) -> list[tuple[str, Any]]:
    assert dataclasses.is_dataclass(value)
    return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]


def _as_case_file_value(value: Any) -> Any:
    """A typed value as a case file holds it; any other value unchanged."""
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def case_ref_for_log(data: object) -> str:
    """The ``case_ref`` of an invalid case's raw JSON, if it is a plausible one, for the log.

    A refusal is logged under the case it belongs to where that can be told; anything else
    (missing, not text, not shaped like a reference: a child's name in the wrong column) is
    logged as ``(unknown)``.
    """
    ref = data.get("case_ref") if isinstance(data, dict) else None
    if isinstance(ref, str) and REFERENCE_PATTERN.match(ref):
        return ref
    return "(unknown)"


def decode_case_json(text: str, *, source: str, one_line: bool = False) -> Any:
    """Parse a case's JSON text; CaseFileError, naming ``source``, when it is not a case's.

    The one place a case's JSON is parsed (case files, batch rows), so that every way in
    refuses the same things the same way, including nesting too deep for the parser (a
    ``RecursionError`` from :mod:`json`). ``one_line``: a JSON Lines row, whose errors give
    the column only.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise CaseFileError(f"case file {source}: nested too deeply to be a case") from None
    except json.JSONDecodeError as exc:
        where = f"column {exc.colno}" if one_line else f"line {exc.lineno}, column {exc.colno}"
        raise CaseFileError(f"case file {source}: not valid JSON at {where}: {exc.msg}") from None


def read_case_json(path: Path) -> Any:
    """A case file's parsed JSON, not yet validated; CaseFileError naming the file otherwise.

    Only a regular file is read: a folder, a named pipe (which would wait for a writer
    forever) or a device is refused unopened.
    """
    from mash_requests._files import NotRegularFileError, read_regular_file

    try:
        raw = read_regular_file(path)
    except FileNotFoundError:
        raise CaseFileError(f"case file {path}: not found; check the path") from None
    except NotRegularFileError as exc:
        raise CaseFileError(f"case file {path}: {exc.strerror}; give a case file (JSON)") from None
    except OSError as exc:
        raise CaseFileError(f"case file {path}: cannot be read ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CaseFileError(f"case file {path}: is not UTF-8 text; save it as UTF-8") from None
    return decode_case_json(text, source=str(path))


def case_ref_of_file(path: Path) -> str:
    """The ``case_ref`` of a case file that may be invalid, for the log (see
    :func:`case_ref_for_log`); ``(unknown)`` when the file cannot be read or parsed."""
    try:
        return case_ref_for_log(read_case_json(path))
    except CaseFileError:
        return "(unknown)"


def load_case(path: Path) -> Case:
    """Load and validate a case file; raises CaseFileError naming the file and field."""
    return parse_case(read_case_json(path), source=str(path), base_dir=path.parent)
