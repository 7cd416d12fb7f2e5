"""Building the MIME message: structure, the exact form bytes, and no header injection."""

from __future__ import annotations

import dataclasses
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


# -- what partners' mail systems see ----------------------------------------------------


def wire(outgoing: object) -> bytes:
    return outgoing.as_bytes()  # type: ignore[attr-defined,no-any-return]


def test_from_carries_the_mash_name_as_display_name() -> None:
    """From reads "Eastbury MASH" <mash@…> when the rendered request names the MASH."""
    outgoing = build(rendered=dataclasses.replace(RENDERED, sender_name="Eastbury MASH"))
    parsed = email.message_from_bytes(wire(outgoing), policy=policy.default)
    assert parsed["From"].addresses[0].display_name == "Eastbury MASH"
    assert parsed["From"].addresses[0].addr_spec == "mash@testbury.gov.uk"


def test_gateways_building_their_own_message_get_the_mash_name() -> None:
    """The built message hands the MASH's name to EWS and Graph, which build their own From."""
    outgoing = build(rendered=dataclasses.replace(RENDERED, sender_name="Eastbury MASH"))
    assert outgoing.sender_name == "Eastbury MASH"


def test_non_ascii_display_name_is_encoded_and_reads_back() -> None:
    """A display name outside ASCII travels RFC 2047 encoded and decodes to the same text."""
    name = "Ynys Môn MASH – Łódź"
    outgoing = build(rendered=dataclasses.replace(RENDERED, sender_name=name))
    raw = wire(outgoing)
    from_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"From:"))
    assert from_line.isascii() and b"=?utf-8?" in from_line
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["From"].addresses[0].display_name == name


def test_red_request_is_marked_high_importance() -> None:
    """A RED request carries Importance: high and X-Priority: 1, and says so to gateways."""
    outgoing = build(rendered=dataclasses.replace(RENDERED, importance="high"))
    parsed = email.message_from_bytes(wire(outgoing), policy=policy.default)
    assert parsed["Importance"] == "high"
    assert parsed["X-Priority"] == "1"
    assert outgoing.importance == "high"


def test_other_requests_carry_no_priority_headers() -> None:
    """An AMBER or GREEN request has neither Importance nor X-Priority."""
    parsed = email.message_from_bytes(wire(build()), policy=policy.default)
    assert parsed["Importance"] is None
    assert parsed["X-Priority"] is None


def test_text_parts_are_quoted_printable_and_readable_on_the_wire() -> None:
    """Both text parts are quoted-printable: their words appear as they are in the raw bytes."""
    text = "Request reference: MASH-1-POLICE-ABCDE\nChild: Zoë Brontë\n"
    html = "<p>Request reference: MASH-1-POLICE-ABCDE</p>"
    raw = wire(build(rendered=RenderedRequest("OFFICIAL: s MASH-1", text, html, "police", "a")))
    assert b"Content-Transfer-Encoding: base64\r\n\r\nUmVx" not in raw
    assert raw.count(b"Content-Transfer-Encoding: quoted-printable") == 2
    assert b"Request reference: MASH-1-POLICE-ABCDE\r\n" in raw
    assert b"<p>Request reference: MASH-1-POLICE-ABCDE</p>" in raw
    parsed = email.message_from_bytes(raw, policy=policy.default)
    plain = parsed.get_body(preferencelist=("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == text


def test_message_id_stays_on_one_line_with_a_long_sender_name() -> None:
    """The Message-ID header is never folded, whatever the other headers hold."""
    outgoing = build(
        rendered=dataclasses.replace(RENDERED, sender_name="A" * 120),
        request_ref="MASH-2026-0412-EDUCATION-" + "X" * 40,
    )
    lines = wire(outgoing).split(b"\r\n")
    index = next(i for i, line in enumerate(lines) if line.startswith(b"Message-ID:"))
    assert lines[index] == b"Message-ID: " + outgoing.message_id.encode()
    assert not lines[index + 1].startswith((b" ", b"\t"))


def test_line_break_in_the_mash_name_is_refused() -> None:
    """A MASH name with a line break cannot inject a header through From."""
    with pytest.raises(InputError, match="line break"):
        build(rendered=dataclasses.replace(RENDERED, sender_name="MASH\r\nBcc: spy@x.example"))


def _standard_bytes(outgoing) -> bytes:  # type: ignore[no-untyped-def]
    """The message as the standard library's own generator writes it, boundaries as ours."""
    import io
    from email.generator import BytesGenerator
    from email.policy import compat32

    out = io.BytesIO()
    wire = compat32.clone(linesep="\r\n", max_line_length=998)
    BytesGenerator(out, mangle_from_=False, policy=wire).flatten(outgoing.mime)
    return out.getvalue()


def test_requests_sharing_a_form_are_written_as_the_standard_generator_writes_them() -> None:
    """The form's part is shared by a case's requests and written once; every request's
    bytes are still exactly what the standard library writes, and hold their own form."""
    form = bytes(range(256)) * 200  # 68 KB of base64 lines
    first = build(form_bytes=form, request_ref="MASH-1-POLICE-AAAAA")
    second = build(form_bytes=form, request_ref="MASH-1-HEALTH-BBBBB", recipients=("c@nhs.net",))
    other = build(form_bytes=form[:-1] + b"x", request_ref="MASH-1-SCHOOL-CCCCC")
    for outgoing in (first, second, other, first):
        wire = outgoing.as_bytes()
        assert wire == _standard_bytes(outgoing)
        parsed = email.message_from_bytes(wire, policy=policy.default)
        assert parsed["X-MASH-Request-Ref"] == outgoing.request_ref
        assert parsed.get_payload()[1].get_content() == outgoing.attachment.data  # type: ignore[index]
    assert first.attachment.data == form and other.attachment.data != form
