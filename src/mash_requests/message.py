"""Building the MIME message for one request, with the standard ``email`` package.

Shape: ``multipart/mixed`` holding a ``multipart/alternative`` (plain text, HTML) and the
referral form as ``application/pdf`` named ``MASH-referral-form-<case ref>.pdf``. The
Message-ID is ours, so a send can be proved later by finding it in Sent Items; the request
reference travels in ``X-MASH-Request-Ref``; the marking in ``X-MASH-Protective-Marking``.

No value reaches a header with a CR or LF in it: header injection from case data is refused.

``From`` carries the MASH's name as display name (``"Eastbury MASH" <mash@…>``, RFC 2047
encoded when it is not ASCII). A RED request is marked high importance (``Importance: high``
and ``X-Priority: 1``, which Outlook, Exchange and Thunderbird show). The text parts travel
as quoted-printable, so journaling and DLP rules read them on the wire as they are (base64,
the ``email`` package's default for UTF-8, hides them); the encoding is ``binascii``'s C
implementation, so it costs no more than base64 did.

The message is built with the ``email.mime`` classes and the ``compat32`` policy rather than
``EmailMessage``: the modern header registry parses every header again on every write and
cost more than the whole rest of the pipeline (measured in benchmarks/bench_product.py).
Non-ASCII header text is RFC 2047 encoded explicitly.
"""

from __future__ import annotations

import binascii
import logging
import re
import secrets
from datetime import datetime
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime, formataddr

from mash_requests.errors import InputError
from mash_requests.gateways.base import Attachment, OutgoingMessage
from mash_requests.rendering import RenderedRequest

REQUEST_REF_HEADER = "X-MASH-Request-Ref"
CASE_REF_HEADER = "X-MASH-Case-Ref"
MARKING_HEADER = "X-MASH-Protective-Marking"
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
logger = logging.getLogger(__name__)


def form_filename(case_ref: str) -> str:
    """The attachment's name: carries the case reference, safe on every mail system."""
    return f"MASH-referral-form-{_UNSAFE_FILENAME.sub('_', case_ref)}.pdf"


def new_message_id(sender: str, request_ref: str) -> str:
    """A globally unique Message-ID in the sender's domain, angle brackets included."""
    domain = sender.rsplit("@", 1)[-1]
    local = _UNSAFE_FILENAME.sub(".", request_ref)
    return f"<{local}.{secrets.token_hex(8)}@{domain}>"


def _header_safe(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise InputError(
            f"header {name}: the value contains a line break, which could inject headers; "
            "remove line breaks from the case data or template"
        )
    return value


def _text_part(text: str, subtype: str) -> MIMENonMultipart:
    """A UTF-8 text part, quoted-printable encoded: readable on the wire, 7-bit safe."""
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    part["Content-Transfer-Encoding"] = "quoted-printable"
    # istext: line ends stay line ends (the generator writes them as CRLF on the wire).
    encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True)
    part.set_payload(encoded.decode("ascii"))
    return part


def sender_address(name: str, address: str) -> str:
    """``"Eastbury MASH" <mash@eastbury.gov.uk>``; RFC 2047 encoded if the name is not ASCII."""
    return formataddr((name, address), charset="utf-8") if name else address


def reply_to_header(worker: str, replies_address: str | None) -> str:
    """The Reply-To of a request: the worker's address, then the replies mailbox if any.

    A partner's "Reply" then reaches both: the worker keeps working the case from their own
    inbox, and the mailbox ``replies fetch`` reads gets a copy to match (``[replies]
    address``). The same address twice is given once.
    """
    addresses = dict.fromkeys(a for a in (worker, replies_address) if a)
    return ", ".join(addresses)


class _FormPart(MIMEApplication):
    """The referral form's part. Never changed once made, so the requests of a case share
    one, and the wire writer writes its base64 once (``wire_cache``, see gateways.base)."""

    def __init__(self, data: bytes, filename: str) -> None:
        super().__init__(data, "pdf")
        self.add_header("Content-Disposition", "attachment", filename=filename)
        self.wire_cache: dict[tuple[object, ...], bytes] = {}


#: The last form part made, with the bytes and name it was made from: a case's requests are
#: built one after another around the same form. One only, as a form may be megabytes.
_last_form_part: tuple[bytes, str, _FormPart] | None = None


def _form_part(form_bytes: bytes, filename: str) -> _FormPart:
    global _last_form_part
    last = _last_form_part
    if last is not None and last[1] == filename and last[0] == form_bytes:
        return last[2]
    part = _FormPart(form_bytes, filename)
    _last_form_part = (form_bytes, filename, part)
    return part


def build_message(
    *,
    rendered: RenderedRequest,
    sender: str,
    recipients: tuple[str, ...],
    reply_to: str | None,
    case_ref: str,
    request_ref: str,
    marking: str,
    form_bytes: bytes,
    message_id: str | None = None,
    date: datetime | None = None,
    in_reply_to: str | None = None,
) -> OutgoingMessage:
    """Build the request's message around the exact form bytes that were checked.

    ``in_reply_to`` (a reminder): the original request's Message-ID, sent as
    ``In-Reply-To`` and ``References`` so that mail clients thread the two.
    """
    message_id = message_id or new_message_id(sender, request_ref)
    filename = form_filename(case_ref)
    msg = MIMEMultipart("mixed")
    _header_safe("From", rendered.sender_name)
    headers = [
        ("From", sender_address(rendered.sender_name, sender)),
        ("To", ", ".join(recipients)),
        ("Subject", rendered.subject),
        ("Date", format_datetime(date or datetime.now().astimezone())),
        ("Message-ID", message_id),
        (REQUEST_REF_HEADER, request_ref),
        (CASE_REF_HEADER, case_ref),
        (MARKING_HEADER, marking),
    ]
    if reply_to:
        headers.append(("Reply-To", reply_to))
    if in_reply_to:
        headers.extend((("In-Reply-To", in_reply_to), ("References", in_reply_to)))
    if rendered.importance == "high":
        headers.extend((("Importance", "high"), ("X-Priority", "1")))
    for name, value in headers:
        value = _header_safe(name, value)
        msg[name] = value if value.isascii() else Header(value, "utf-8").encode()
    body = MIMEMultipart("alternative")
    body.attach(_text_part(rendered.text, "plain"))
    body.attach(_text_part(rendered.html, "html"))
    msg.attach(body)
    msg.attach(_form_part(form_bytes, filename))
    return OutgoingMessage(
        mime=msg,
        message_id=message_id,
        request_ref=request_ref,
        sender=sender,
        recipients=recipients,
        subject=rendered.subject,
        text_body=rendered.text,
        html_body=rendered.html,
        attachment=Attachment(filename=filename, content_type="application/pdf", data=form_bytes),
        extra_headers=(
            (REQUEST_REF_HEADER, request_ref),
            (CASE_REF_HEADER, case_ref),
            (MARKING_HEADER, marking),
        ),
        reply_to=reply_to,
        importance=rendered.importance,
        sender_name=rendered.sender_name,
    )
