"""The case file's JSON Schema (draft 2020-12), for editors and case-management exports.

Built from the same constants the loader in :mod:`mash_requests.case` validates with (the
reference pattern, the text limit, the RAG and consent values), so the two cannot drift
apart on those; ``tests/test_case_schema.py`` checks that the example cases pass and that
files the loader refuses are refused here too. The loader remains the judge: a schema
cannot say "not in the future" or "a real calendar date" for every validator, and the
loader also accepts RAG and consent values in any case with spaces around them, where the
schema asks for the canonical lower-case words.

``mash-requests schema case`` prints it; ``mash-requests init`` writes it beside the example
case, whose ``"$schema"`` field points at it so an editor such as VS Code checks the file
as it is typed.
"""

from __future__ import annotations

from typing import Any

from mash_requests.case import MAX_TEXT, REFERENCE_PATTERN, ConsentStatus, Rag

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Characters the loader refuses in any text: the bidi controls, which make text read
# otherwise than it is stored; and control characters other than tab and line breaks.
_NEVER = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069"
# One line of text that is not blank (the loader strips spaces, then refuses "", breaks,
# tabs and the Unicode line separators).
_ONE_LINE_CHAR = rf"[^{_NEVER}\t\r\n\u0085\u2028\u2029]"
_ONE_LINE = rf"^{_ONE_LINE_CHAR}*[^\s{_NEVER}]{_ONE_LINE_CHAR}*$"
_NOT_BLANK = rf"^(?=[\s\S]*\S)[^{_NEVER}]*$"
# The loader's email check (case._EMAIL).
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _text(description: str, *, one_line: bool = True) -> dict[str, Any]:
    return {
        "type": "string",
        "description": description,
        "pattern": _ONE_LINE if one_line else _NOT_BLANK,
        "maxLength": MAX_TEXT,
    }


def _optional_text(description: str) -> dict[str, Any]:
    return {
        "type": ["string", "null"],
        "description": description,
        "pattern": rf"^{_ONE_LINE_CHAR}*$",
        "maxLength": MAX_TEXT,
    }


def _reference(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description, "pattern": REFERENCE_PATTERN.pattern}


def _object(properties: dict[str, Any], required: list[str], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def case_schema() -> dict[str, Any]:
    """The JSON Schema of a case file, as a JSON-ready dict."""
    needs_reason = [str(s) for s in ConsentStatus if s is not ConsentStatus.GIVEN]
    consent = _object(
        {
            "status": {
                "enum": [str(s) for s in ConsentStatus],
                "description": "Whether the family consented to sharing.",
            },
            "reason": _optional_text(
                "Why consent was not given or not sought; required unless status is given."
            ),
            "given_by": _optional_text("Who gave consent (optional)."),
        },
        ["status"],
        "The family's consent to information being shared.",
    )
    consent["if"] = {"properties": {"status": {"enum": needs_reason}}}
    consent["then"] = {"required": ["reason"], "properties": {"reason": _text("Why.")}}
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "urn:mash-requests:case-file",
        "title": "mash-requests case file",
        "description": "One contact about a child, for which requests for information are "
        "sent to partner agencies. See the README's case file reference.",
        "type": "object",
        "properties": {
            "$schema": {"type": "string", "description": "Where this schema is (ignored)."},
            "notes_for_staff": {"description": "Free notes (ignored; never sent)."},
            "case_ref": _reference(
                "The MASH case reference, e.g. MASH-2026-0412; it must appear in the referral form."
            ),
            "contact_id": _reference("The contact or enquiry id in the case-management system."),
            "rag": {
                "enum": [str(r) for r in Rag],
                "description": "The RAG rating; sets the response deadline.",
            },
            "child": _object(
                {
                    "name": _text("The child's name."),
                    "date_of_birth": {
                        "type": "string",
                        "format": "date",
                        "pattern": r"^\d{4}-\d{2}-\d{2}$",
                        "description": "YYYY-MM-DD: a real date, not in the future.",
                    },
                    "address": _text("The child's address (may span lines).", one_line=False),
                },
                ["name", "date_of_birth", "address"],
                "The child the contact is about.",
            ),
            "consent": consent,
            "concerns": _text("Summary of the concerns.", one_line=False),
            "worker": _object(
                {
                    "name": _text("The requesting MASH worker's name."),
                    "role": _text("Their role."),
                    "email": {
                        "type": "string",
                        "pattern": _EMAIL,
                        "maxLength": MAX_TEXT,
                        "description": "Their secure address; partners' replies go here.",
                    },
                },
                ["name", "role", "email"],
                "The MASH worker asking.",
            ),
            "partners": {
                "type": "array",
                "items": {"type": "string"},
                "description": 'Partner keys from the directory, e.g. ["police", "health"].',
            },
            "referral_form": {
                "type": ["string", "null"],
                "pattern": r"^[^\r\n]*$",
                "description": "The case's referral form PDF, relative to the case file.",
            },
        },
        "required": [
            "case_ref",
            "contact_id",
            "rag",
            "child",
            "consent",
            "concerns",
            "worker",
            "partners",
        ],
        "additionalProperties": False,
    }
