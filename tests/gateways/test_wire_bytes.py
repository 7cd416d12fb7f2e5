"""The message as it goes on the wire: the standard library's bytes, written faster."""

from __future__ import annotations

import email
import os
from email import policy
from email.message import Message

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mash_requests.gateways import base
from mash_requests.gateways.base import _WIRE_POLICY, OutgoingMessage
from mash_requests.message import build_message
from mash_requests.rendering import RenderedRequest

FORM = os.urandom(40_000)  # base64 lines of every shape, and no "--" in them by design


def request(**overrides: str) -> OutgoingMessage:
    rendered = RenderedRequest(
        overrides.get("subject", "OFFICIAL: Anfrage für MASH-1 MASH-1-POLICE-ABCDE"),
        "Zeile eins\nline two: £5 — ok\n.a line that starts with a dot\n\n" * 40,
        "<p>Grüße</p>\n<p>second</p>\n" * 40,
        "police",
        "abc",
        importance="high",
        sender_name="Eastbury MASH",
    )
    return build_message(
        rendered=rendered,
        sender="mash@testbury.gov.uk",
        recipients=("a@nhs.net", "b@nhs.net"),
        reply_to="worker@testbury.gov.uk",
        case_ref="MASH-1",
        request_ref="MASH-1-POLICE-ABCDE",
        marking="OFFICIAL",
        form_bytes=FORM,
    )


def test_the_bytes_are_the_standard_generators() -> None:
    """Once the boundaries are drawn, as_bytes gives exactly what email's own generator
    writes: headers, CRLF line ends, quoted-printable and base64 parts alike."""
    message = request()
    standard = message.mime.as_bytes(policy=_WIRE_POLICY)  # draws and sets the boundaries
    assert message.as_bytes() == standard
    assert b"\r\n" in standard and b"\n" not in standard.replace(b"\r\n", b"")


def test_a_fresh_message_reads_back_whole() -> None:
    """A message written first by as_bytes parses back with the form's exact bytes, both
    text parts, and a boundary that appears in no part."""
    message = request()
    raw = message.as_bytes()
    parsed = email.message_from_bytes(raw, policy=policy.default)
    parts = list(parsed.walk())
    attachment = next(p for p in parts if p.get_content_type() == "application/pdf")
    assert attachment.get_content() == FORM
    plain = next(p for p in parts if p.get_content_type() == "text/plain")
    assert "line two: £5 — ok" in plain.get_content()
    for boundary in (parsed.get_boundary(), parts[1].get_boundary()):
        assert boundary and raw.count(b"--" + boundary.encode() + b"\r\n") >= 2


def test_a_boundary_found_in_the_text_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The boundary drawn first appears in the text, so the next one (".0") is used."""
    monkeypatch.setattr(base.random, "randrange", lambda n: 42)
    first = base._WireGenerator._make_boundary()
    text = b"a line\r\nnot at the start --" + first.encode() + b"\r\n"
    assert base._WireGenerator._make_boundary(text) == first + ".0"
    assert base._WireGenerator._make_boundary(b"nothing like it") == first


@given(
    st.sampled_from(["Subject", "To", "X-MASH-Case-Ref", "Reply-To"]),
    st.text(st.sampled_from("ab ,:;=?\t\"'<>é-"), min_size=1, max_size=40),
    st.one_of(st.integers(0, 80), st.integers(-4, 4)),
)
def test_headers_are_written_as_folding_writes_them(name: str, piece: str, length: int) -> None:
    """The quick way of writing a one-line ASCII header gives exactly what the policy's
    folding gives, for values near and past the line's limit, and others are folded."""
    import io

    if length <= 4:  # that far from the longest line the policy writes unfolded
        length += 998 - len(name) - 2
    value = (piece * (length // len(piece) + 1))[:length]
    message = Message()
    message[name] = value
    out = io.BytesIO()
    base._WireGenerator(out, mangle_from_=False, policy=_WIRE_POLICY)._write_headers(message)
    assert out.getvalue() == _WIRE_POLICY.fold_binary(name, value) + b"\r\n"
