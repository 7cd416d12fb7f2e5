"""What a message in the replies mailbox is: a reply, an automatic reply, a bounce, a receipt.

:func:`parse_message` reads the RFC 5322 bytes once and keeps only what matching and the log
need: the Message-ID, the sender's address, the dates, the references to earlier messages,
the SHA-256 of each attachment, and the kind of message. The subject is kept in memory for
matching the request reference and is never recorded; the body is never kept at all.

How the kind is decided, first rule that applies:

1. **Bounce** (:attr:`MessageKind.BOUNCE`): a delivery report (RFC 3464
   ``multipart/report; report-type=delivery-status``) with a recipient whose ``Action`` is
   ``failed``; or an Exchange-style non-delivery report: a subject such as "Undeliverable:"
   from the mail system itself (``postmaster``, ``MAILER-DAEMON``, ``MicrosoftExchange…``, an
   empty ``Return-Path``, ``Auto-Submitted`` or ``X-MS-Exchange-Message-Is-Ndr``). A report
   whose recipients were only ``delayed`` (or ``delivered``, ``relayed``) is an automatic
   reply, not a bounce: the message has not failed.
2. **Read receipt**: ``multipart/report; report-type=disposition-notification`` (RFC 8098),
   or Exchange's ``Content-Class: urn:content-classes:mdn``.
3. **Automatic reply** (RFC 3834): ``Auto-Submitted`` with any value but ``no``;
   ``Precedence: auto_reply``, ``bulk``, ``junk`` or ``list``; ``X-Autoreply`` or
   ``X-Autorespond``; or an out-of-office subject ("Automatic reply:", "Out of Office:",
   "Automatische Antwort:", "Réponse automatique :", "Autosvar:" …). ``X-Auto-Response-Suppress``
   alone is *not* a sign: Exchange puts it on messages people write too (it asks others not
   to auto-reply to them).
4. Anything else is a **reply** written by a person.

When in doubt a message is not a reply: a person answering a request never needs an
automatic reply counted as the answer, but a missed answer shows up as overdue and is looked at.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from enum import StrEnum

from mash_requests.partners import split_address


class MessageKind(StrEnum):
    """The closed set of message kinds (see the module docstring for the rules)."""

    #: Written by a person: may answer a request.
    REPLY = "reply"
    #: Sent by a machine on someone's behalf (out-of-office, delivery delay): never an answer.
    AUTO_REPLY = "auto_reply"
    #: A delivery failure: the request did not reach the partner.
    BOUNCE = "bounce"
    #: A read receipt: the request was opened; not an answer.
    READ_RECEIPT = "read_receipt"


@dataclass(frozen=True)
class IncomingMessage:
    """What mash-requests keeps of one message from the replies mailbox.

    ``subject`` and ``reported_subject`` are for matching only and must never be logged.
    """

    #: The Message-ID, angle brackets included; a message without one gets
    #: ``<sha256-HEX@mash-requests.invalid>`` from its bytes, so it is still counted once.
    message_id: str
    #: True when ``message_id`` was made up from the bytes (the message had none).
    message_id_synthesised: bool
    #: The sender's address (``From``), lower-cased; None when missing or malformed.
    from_address: str | None
    #: The ``Date`` header (when the sender says it sent it), UTC.
    sent_at: datetime | None
    #: When the last mail server received it (the top ``Received`` header), UTC.
    received_header_at: datetime | None
    kind: MessageKind
    #: For automatic replies: auto_submitted, out_of_office, delivery_delayed, delivery_report.
    auto_type: str | None
    subject: str
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    #: SHA-256 (hex) of each attachment's decoded bytes, in order.
    attachments: tuple[str, ...]
    #: Message-IDs a delivery report or read receipt says it is about.
    reported_message_ids: tuple[str, ...]
    #: ``X-MASH-Request-Ref`` values in a report's returned headers.
    reported_request_refs: tuple[str, ...]
    #: The returned message's subject in a report (for matching only).
    reported_subject: str | None
    #: A bounce's status code (RFC 3463, e.g. ``5.1.1``), when it gives one.
    bounce_status: str | None
    #: The receiving mail system recorded ``dmarc=fail`` (Authentication-Results): the
    #: sender's domain did not authorise this message.
    authentication_failed: bool


_MSGID = re.compile(r"<[^<>\s]{1,900}>")
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
#: Subject prefixes of out-of-office replies, as clients write them (compared case-folded).
OUT_OF_OFFICE_PREFIXES = (
    "automatic reply:",
    "auto reply:",
    "autoreply:",
    "auto-reply:",
    "out of office:",
    "out of office reply:",
    "automatische antwort:",
    "abwesenheitsnotiz:",
    "réponse automatique :",
    "réponse automatique:",
    "respuesta automática:",
    "risposta automatica:",
    "autosvar:",
    "automatisch antwoord:",
    "automatyczna odpowiedź:",
)
#: Subject prefixes of non-delivery reports (Exchange, Postfix, Exim, Sendmail, Gmail).
NDR_PREFIXES = (
    "undeliverable:",
    "undeliverable mail",
    "unzustellbar:",
    "non remis :",
    "non remis:",
    "onbestelbaar:",
    "no se puede entregar:",
    "impossibile recapitare:",
    "kan inte levereras:",
    "undelivered mail returned to sender",
    "mail delivery failed",
    "delivery status notification (failure)",
    "returned mail:",
    "failure notice",
    "mail delivery subsystem",
)
_TAG = re.compile(r"^\s*(?:\[[^\]]{0,40}\]\s*)+")
_SYSTEM_SENDERS = ("postmaster", "mailer-daemon", "microsoftexchange")


class _Head:
    """A message's top-level headers by lower-cased name: ``Message.get`` scans them all on
    every call, and a message is asked for some fifteen."""

    def __init__(self, message: Message) -> None:
        self._values: dict[str, list[object]] = {}
        for name, value in message.items():
            self._values.setdefault(name.lower(), []).append(value)

    def get(self, name: str) -> object:
        values = self._values.get(name.lower())
        return values[0] if values else None

    def get_all(self, name: str) -> list[object]:
        return self._values.get(name.lower(), [])


def parse_message(data: bytes) -> IncomingMessage:
    """Read one message's bytes; never fails on malformed mail (missing parts are None)."""
    message = BytesParser(policy=compat32).parsebytes(data)
    head = _Head(message)
    message_id, synthesised = _message_id(_header_text(head.get("Message-ID")) or None, data)
    subject = _decoded(head.get("Subject"))
    from_address = _address(head.get("From"))
    report = _report_type(message)
    bounce_status: str | None = None
    auto_type: str | None = None
    reported_ids: list[str] = []
    reported_refs: list[str] = []
    reported_subject: str | None = None

    if report == "delivery-status":
        actions, bounce_status = _delivery_status(message)
        kind = MessageKind.BOUNCE if "failed" in actions or not actions else MessageKind.AUTO_REPLY
        if kind is MessageKind.AUTO_REPLY:
            auto_type = "delivery_delayed" if "delayed" in actions else "delivery_report"
            bounce_status = None
    elif report == "disposition-notification" or (
        _header_text(head.get("Content-Class")).strip().lower() == "urn:content-classes:mdn"
    ):
        kind = MessageKind.READ_RECEIPT
    elif _is_ndr(head, subject, from_address):
        kind = MessageKind.BOUNCE
        bounce_status = _first_status(message)
    else:
        auto_type = _auto_type(head, subject)
        kind = MessageKind.AUTO_REPLY if auto_type else MessageKind.REPLY

    if kind in (MessageKind.BOUNCE, MessageKind.READ_RECEIPT, MessageKind.AUTO_REPLY):
        reported_ids, reported_refs, reported_subject = _returned(message)

    return IncomingMessage(
        message_id=message_id,
        message_id_synthesised=synthesised,
        from_address=from_address,
        sent_at=_date(head.get("Date")),
        received_header_at=_received_at(head),
        kind=kind,
        auto_type=auto_type,
        subject=subject,
        in_reply_to=tuple(_MSGID.findall(_header_text(head.get("In-Reply-To")))),
        references=tuple(_MSGID.findall(_header_text(head.get("References")))),
        attachments=tuple(_attachment_hashes(message, report is not None)),
        reported_message_ids=tuple(dict.fromkeys(reported_ids)),
        reported_request_refs=tuple(dict.fromkeys(reported_refs)),
        reported_subject=reported_subject,
        bounce_status=bounce_status,
        authentication_failed=_dmarc_failed(head),
    )


_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID_HEADER = re.compile(rb"^message-id[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.I | re.M)


def message_id_of(data: bytes) -> str:
    """The Message-ID :func:`parse_message` would give, from the header block alone (fast:
    deciding that a message was already seen must not cost a parse)."""
    end = _HEADER_END.search(data)
    head = data[: end.start()] if end else data
    found = _MESSAGE_ID_HEADER.search(head)
    value = found.group(1).decode("latin-1") if found else None
    return _message_id(value, data)[0]


def normalise_message_id(value: str | None) -> str | None:
    """``<id>`` from a header or API value; None when it holds no message id."""
    if not value:
        return None
    found = _MSGID.search(value)
    text = found.group(0)[1:-1] if found else value.strip()
    # Only printable text goes to the log: a NUL or control character would not be evidence.
    if text and len(text) <= 900 and all(c.isprintable() and c not in " <>" for c in text):
        return f"<{text}>"
    return None


def strip_subject_tags(subject: str) -> str:
    """The subject without leading ``[EXTERNAL]``/``[SECURE]``-style tags."""
    return _TAG.sub("", subject)


# -- helpers ---------------------------------------------------------------------------------


def _message_id(value: str | None, data: bytes) -> tuple[str, bool]:
    found = normalise_message_id(_header_text(value))
    if found is not None:
        return found, False
    return f"<sha256-{hashlib.sha256(data).hexdigest()}@mash-requests.invalid>", True


def _header_text(value: object) -> str:
    # compat32 gives str, or a Header object for undecodable bytes.
    return "" if value is None else str(value)


def _decoded(value: object) -> str:
    text = _header_text(value)
    try:
        decoded = str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError):
        decoded = text
    return " ".join(decoded.split())


_ANGLE_ADDRESS = re.compile(r"<([^<>\s@]+@[^<>\s@]+)>\s*$")


def _address(value: object) -> str | None:
    text = _header_text(value)
    simple = _ANGLE_ADDRESS.search(text)
    if simple and text.count("<") == 1 and text.count("@") == 1:
        # "Name <addr>", as nearly every From is: no need for the full address parser.
        try:
            local, domain = split_address(simple.group(1))
        except ValueError:
            return None
        return f"{local}@{domain}".lower()
    pairs = getaddresses([text])
    for _, address in pairs:
        try:
            local, domain = split_address(address)
        except ValueError:
            continue
        return f"{local}@{domain}".lower()
    return None


def _date(value: object) -> datetime | None:
    text = _header_text(value).strip()
    if not text:
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _received_at(message: _Head) -> datetime | None:
    received = message.get_all("Received")
    if not received:
        return None
    top = " ".join(_header_text(received[0]).split())
    return _date(top.rsplit(";", 1)[-1]) if ";" in top else None


def _report_type(message: Message) -> str | None:
    if message.get_content_type() != "multipart/report":
        return None
    report = message.get_param("report-type")
    return str(report).strip().lower() if isinstance(report, str) else "unknown"


def _delivery_status(message: Message) -> tuple[set[str], str | None]:
    """The per-recipient actions of a DSN and the first failure's status code."""
    actions: set[str] = set()
    status: str | None = None
    for part in _parts(message):
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks:
            if not isinstance(block, Message):
                continue
            action = _header_text(block.get("Action")).strip().lower()
            if action:
                actions.add(action.split()[0])
            code = _STATUS.search(_header_text(block.get("Status")))
            if code and status is None and action.startswith("failed"):
                status = code.group(1)
    return actions, status


def _is_ndr(message: _Head, subject: str, from_address: str | None) -> bool:
    folded = strip_subject_tags(subject).casefold()
    if not folded.startswith(NDR_PREFIXES):
        return False
    # The subject alone could be typed by anyone: the mail system must have sent it.
    local = (from_address or "").split("@", 1)[0]
    null_return_path = message.get("Return-Path") is not None and _header_text(
        message.get("Return-Path")
    ).strip() in ("<>", "")
    return (
        local.startswith(_SYSTEM_SENDERS)
        or null_return_path
        or _auto_submitted(message)
        or message.get("X-MS-Exchange-Message-Is-Ndr") is not None
    )


def _auto_submitted(message: _Head) -> bool:
    value = _header_text(message.get("Auto-Submitted")).strip().lower()
    return bool(value) and value.split(";")[0].strip() != "no"


def _auto_type(message: _Head, subject: str) -> str | None:
    if _auto_submitted(message):
        return "auto_submitted"
    precedence = _header_text(message.get("Precedence")).strip().lower()
    if precedence in ("auto_reply", "bulk", "junk", "list"):
        return "auto_submitted"
    if message.get("X-Autoreply") is not None or message.get("X-Autorespond") is not None:
        return "auto_submitted"
    if strip_subject_tags(subject).casefold().startswith(OUT_OF_OFFICE_PREFIXES):
        return "out_of_office"
    return None


def _first_status(message: Message) -> str | None:
    for part in _parts(message):
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                found = _STATUS.search(payload[:20_000].decode("utf-8", "replace"))
                if found and found.group(1)[0] in "45":
                    return found.group(1)
    return None


def _returned(message: Message) -> tuple[list[str], list[str], str | None]:
    """Message-IDs, request references and subject of the message a report is about."""
    ids: list[str] = []
    refs: list[str] = []
    subject: str | None = None
    for part in _parts(message):
        kind = part.get_content_type()
        headers: list[Message] = []
        if kind == "message/rfc822":
            inner = part.get_payload()
            headers = (
                [m for m in inner if isinstance(m, Message)] if isinstance(inner, list) else []
            )
        elif kind == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                headers = [
                    HeaderParser(policy=compat32).parsestr(payload.decode("utf-8", "replace"))
                ]
        elif kind == "message/disposition-notification":
            inner = part.get_payload()
            if isinstance(inner, list):
                for block in inner:
                    if not isinstance(block, Message):
                        continue
                    found = normalise_message_id(_header_text(block.get("Original-Message-ID")))
                    if found:
                        ids.append(found)
        for header in headers:
            found = normalise_message_id(_header_text(header.get("Message-ID")))
            if found:
                ids.append(found)
            ref = _header_text(header.get("X-MASH-Request-Ref")).strip()
            if ref:
                refs.append(ref)
            if subject is None and header.get("Subject") is not None:
                subject = _decoded(header.get("Subject"))
    return ids, refs, subject


def _parts(message: Message) -> Iterator[Message]:
    """Every MIME part, without descending into attached messages or report blocks."""
    yield message
    payload = message.get_payload()
    if message.is_multipart() and message.get_content_maintype() == "multipart":
        assert isinstance(payload, list)
        for part in payload:
            if isinstance(part, Message):
                yield from _parts(part)


def _attachment_hashes(message: Message, is_report: bool) -> Iterator[str]:
    for part in _parts(message):
        kind = part.get_content_type()
        if part.get_content_maintype() == "multipart":
            continue
        if is_report and kind in (
            "message/delivery-status",
            "message/disposition-notification",
            "text/rfc822-headers",
            "message/rfc822",
        ):
            continue  # the report itself and the returned original, not attachments
        raw_disposition = _header_text(part.get("Content-Disposition"))
        disposition = raw_disposition.split(";")[0].strip().lower()
        if disposition == "inline":
            continue
        if disposition != "attachment":
            # A part with a file name and no disposition is an attachment too; most parts
            # have neither, and parsing parameters is costly, so look for "name=" first.
            named = "name" in raw_disposition or "name" in _header_text(part.get("Content-Type"))
            if not named or part.get_filename() is None:
                continue
        if kind == "message/rfc822":
            inner = part.get_payload()
            data = (
                inner[0].as_bytes(policy=compat32)
                if isinstance(inner, list) and inner and isinstance(inner[0], Message)
                else b""
            )
        else:
            decoded = part.get_payload(decode=True)
            data = decoded if isinstance(decoded, bytes) else b""
        yield hashlib.sha256(data).hexdigest()


def _dmarc_failed(message: _Head) -> bool:
    for value in message.get_all("Authentication-Results"):
        if re.search(r"\bdmarc\s*=\s*fail\b", _header_text(value), re.IGNORECASE):
            return True
    return False
