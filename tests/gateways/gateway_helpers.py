"""Helpers for the gateway tests: a built request, big forms, the recorded wire examples."""

from __future__ import annotations

import os
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from mash_requests.gateways.base import Attachment, OutgoingMessage

SENDER = "mash@council.example"
RECIPIENT = "dsl@school.example"
#: The requesting worker's secure address, where partners' replies should go.
REPLY_TO = "sam.worker@council.example"

#: A small but real-looking PDF: what matters to gateways is that its bytes arrive unchanged.
SMALL_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


#: The MASH's name, as [mash] name gives it: the display name of From.
MASH_NAME = "Eastbury MASH"


def build_message(
    form: bytes = SMALL_PDF,
    *,
    request_ref: str = "RFI-2026-0001",
    reply_to: str | None = None,
    importance: str = "normal",
    sender_name: str = "",
) -> OutgoingMessage:
    """An OutgoingMessage as the lead's message builder would make it (text + HTML + PDF).

    ``importance="high"`` (a RED request) and ``sender_name`` add what the builder adds:
    ``Importance``/``X-Priority`` headers and a From display name.
    """
    message_id = make_msgid(idstring=request_ref, domain="council.example")
    subject = f"OFFICIAL-SENSITIVE: Request for information {request_ref}"
    text = f"Please see the attached referral form for request {request_ref}.\n"
    html = f"<p>Please see the attached referral form for request <b>{request_ref}</b>.</p>"
    mime = EmailMessage()
    mime["From"] = f'"{sender_name}" <{SENDER}>' if sender_name else SENDER
    mime["To"] = RECIPIENT
    mime["Subject"] = subject
    mime["Message-ID"] = message_id
    mime["X-MASH-Request-Ref"] = request_ref
    if reply_to:
        mime["Reply-To"] = reply_to
    if importance == "high":
        mime["Importance"] = "high"
        mime["X-Priority"] = "1"
    mime.set_content(text)
    mime.add_alternative(html, subtype="html")
    mime.add_attachment(form, maintype="application", subtype="pdf", filename="referral-form.pdf")
    return OutgoingMessage(
        mime=mime,
        message_id=message_id,
        request_ref=request_ref,
        sender=SENDER,
        recipients=(RECIPIENT,),
        subject=subject,
        text_body=text,
        html_body=html,
        attachment=Attachment("referral-form.pdf", "application/pdf", form),
        extra_headers=(("X-MASH-Request-Ref", request_ref),),
        reply_to=reply_to,
        importance=importance,
        sender_name=sender_name,
    )


def big_form(size: int) -> bytes:
    """A form of ``size`` bytes whose every 320 KiB chunk differs (catches reordering)."""
    head = b"%PDF-1.7\n"
    body = bytes((i * 7 + i // 4096) % 251 for i in range(size - len(head)))
    return head + body


REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("MASH_SHARED_DIR", REPO / ".." / "shared"))
REFERENCE = SHARED / "reference"


def reference_file(relative: str) -> str:
    """A recorded wire example from the shared reference folder; skips when absent."""
    path = REFERENCE / relative
    if not path.is_file():
        pytest.skip(
            f"reference example {relative} not found under {REFERENCE} (set MASH_SHARED_DIR)"
        )
    return path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class RecordedResponse:
    """An HTTP response as recorded in a reference ``.http`` file."""

    status: int
    headers: dict[str, str]
    body: str


def recorded_response(relative: str, fallback: RecordedResponse | None = None) -> RecordedResponse:
    """Parse a recorded ``HTTP/1.1 201 Created`` block (request lines before it are skipped).

    ``fallback`` (a minimal inline response) keeps the essential happy paths meaningful
    where the shared reference folder is absent; without one, the test is skipped.
    """
    if fallback is not None and not (REFERENCE / relative).is_file():
        return fallback
    text = reference_file(relative)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("HTTP"))
    status = int(lines[start].split()[1])
    headers: dict[str, str] = {}
    index = start + 1
    # Headers end at the first blank line that is followed by a body or by nothing.
    while index < len(lines) and lines[index].strip():
        name, _, value = lines[index].partition(":")
        headers[name.strip()] = value.strip()
        index += 1
    # One recorded file (25_…) has a stray blank line inside its headers.
    while index < len(lines) and not lines[index].strip():
        index += 1
    rest = lines[index:]
    if rest and ":" in rest[0] and not rest[0].lstrip().startswith(("{", "<")):
        for line in rest:
            if not line.strip():
                break
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        rest = []
    return RecordedResponse(status, headers, "\n".join(rest).strip())
