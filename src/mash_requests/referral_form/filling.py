"""Filling a blank fillable referral form from a case's values (pypdf)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from mash_requests.errors import InputError
from mash_requests.referral_form.reading import quiet_pypdf

if TYPE_CHECKING:
    from pypdf import PdfReader

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

    quiet_pypdf()
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
