"""Building the MIME message: structure, the exact form bytes, and no header injection."""

from __future__ import annotations

import email
from email import policy

import pytest

from mash_requests.errors import InputError
from mash_requests.message import build_message
from mash_requests.rendering import RenderedRequest

RENDERED = RenderedRequest("OFFICIAL: subject MASH-1", "text body", "<p>html</p>", "police", "abc")
FORM = b"%PDF-1.7 pretend form bytes \x00\xff"


def build(**overrides: object):  # type: ignore[no-untyped-def]
    arguments: dict[str, object] = {
        "rendered": RENDERED,
        "sender": "mash@testbury.gov.uk",
        "recipients": ("a@nhs.net", "b@nhs.net"),
        "reply_to": "worker@testbury.gov.uk",
        "case_ref": "MASH-1",
        "request_ref": "MASH-1-POLICE-ABCDE",
        "marking": "OFFICIAL",
        "form_bytes": FORM,
    }
    arguments.update(overrides)
    return build_message(**arguments)  # type: ignore[arg-type]


def test_structure_is_mixed_with_alternative_and_pdf() -> None:
    """The message is multipart/mixed: text/HTML alternative plus the PDF."""
    outgoing = build()
    parsed = email.message_from_bytes(outgoing.as_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/mixed"
    body, attachment = parsed.get_payload()  # type: ignore[misc]
    assert body.get_content_type() == "multipart/alternative"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "MASH-referral-form-MASH-1.pdf"
    assert attachment.get_content() == FORM
    assert parsed["Message-ID"] == outgoing.message_id
    assert parsed["X-MASH-Request-Ref"] == "MASH-1-POLICE-ABCDE"
    assert outgoing.message_id.endswith("@testbury.gov.uk>")


def test_message_ids_are_unique() -> None:
    """Two builds of the same request get different Message-IDs."""
    assert build().message_id != build().message_id


@pytest.mark.parametrize("field", ["case_ref", "request_ref", "reply_to", "marking"])
def test_line_breaks_in_header_values_are_refused(field: str) -> None:
    """A CR or LF in any header value is refused instead of injecting a header."""
    with pytest.raises(InputError, match="line break"):
        build(**{field: "MASH-1\r\nBcc: spy@example.com"})


def test_injected_subject_is_refused() -> None:
    """A subject with a line break cannot add a Bcc header."""
    rendered = RenderedRequest("OFFICIAL: x\nBcc: spy@example.com", "t", "h", "police", "abc")
    with pytest.raises(InputError, match="line break"):
        build(rendered=rendered)
