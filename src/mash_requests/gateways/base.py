"""What every mail gateway is: ``send(message) -> Receipt`` and ``close()``.

A gateway takes a fully built :class:`OutgoingMessage` and hands it to a mail system. It
knows nothing of cases, partners or the dispatch log. It raises only the gateway errors of
:mod:`mash_requests.errors`, translated at its boundary:

- :class:`~mash_requests.errors.TransientGatewayError`: certainly not accepted, try again;
- :class:`~mash_requests.errors.AmbiguousGatewayError`: may have been accepted;
- :class:`~mash_requests.errors.PermanentGatewayError`: refused, do not try again.

Each error's message is the whole sentence a person acts on (what failed, the server's own
words, the fix) and its ``failure`` says what failed; build it with
:meth:`~mash_requests.errors.GatewayError.explained`. The retry policy passes that sentence on
unchanged as the request's reason, and ``gateway check`` prints it, so a failure reads the
same wherever it is seen.
"""

from __future__ import annotations

import io
import random
import re
import sys
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import Message
from email.policy import compat32
from typing import BinaryIO, Protocol, runtime_checkable

_WIRE_POLICY = compat32.clone(linesep="\r\n", max_line_length=998)
#: A line end, as email.generator finds them.
_LINE_END = re.compile(r"\r\n|\r|\n")


class _WireGenerator(BytesGenerator):
    """The standard library's BytesGenerator, writing the same bytes with less work.

    Writing a request (a 20 KB form in base64, two text parts) was most of the SMTP
    gateway's own time per message: the standard generator writes a part line by line,
    and compiles a regular expression for every multipart's new boundary.
    """

    _NL: str  # the policy's line end, set by flatten()
    _fp: BinaryIO  # the output, as the standard generator keeps it
    _mangle_from_: bool

    def flatten(self, msg: Message, unixfrom: bool = False, linesep: str | None = None) -> None:
        # A part that says it never changes (it has a ``wire_cache`` dict: the referral
        # form's part, shared by the requests of a case) is written once per way of writing
        # and the bytes reused: writing the form's base64 was most of writing a message.
        cache: dict[tuple[object, ...], bytes] | None = getattr(msg, "wire_cache", None)
        if cache is None or unixfrom:
            super().flatten(msg, unixfrom, linesep)
            return
        key = (linesep, self._mangle_from_, self.maxheaderlen, repr(self.policy))
        data = cache.get(key)
        if data is None:
            buffer = io.BytesIO()
            writer = type(self)(buffer, self._mangle_from_, self.maxheaderlen, policy=self.policy)
            BytesGenerator.flatten(writer, msg, False, linesep)
            data = cache[key] = buffer.getvalue()
        self._fp.write(data)

    def _write_headers(self, msg: Message) -> None:
        # The standard one folds every header through email.header.Header (some 40 us
        # each); a one-line ASCII header that fits the line is written as it is, which is
        # what folding it gives (tests/gateways/test_wire.py compares the two).
        policy = self.policy or _WIRE_POLICY  # flatten() has set the one in use
        fold, linesep = policy.fold_binary, policy.linesep
        room = (policy.max_line_length or 0) - 2
        for name, value in msg.raw_items():
            if (
                isinstance(value, str)
                and value.isascii()
                and len(name) + len(value) <= room
                and "\r" not in value
                and "\n" not in value
            ):
                self._fp.write(f"{name}: {value}{linesep}".encode("ascii"))
            else:
                self._fp.write(fold(name, value))
        self.write(linesep)

    def _write_lines(self, lines: str) -> None:
        # The standard one splits on line ends and writes line, separator, line …: the
        # same as replacing each line end with the separator, in one write.
        if lines:
            self.write(_LINE_END.sub(self._NL, lines))

    @classmethod
    def _make_boundary(cls, text: bytes | str | None = None) -> str:
        # The standard boundary, drawn the same way; refused when "--boundary" appears
        # anywhere in the text (the standard one refuses it only at a line's start, so
        # this never accepts a boundary it would refuse).
        token = random.randrange(sys.maxsize)  # noqa: S311 - a MIME boundary, not a secret
        boundary = ("=" * 15) + f"{token:0{len(repr(sys.maxsize - 1))}d}" + "=="
        if text is None:
            return boundary
        data = text.encode("ascii", "surrogateescape") if isinstance(text, str) else text
        candidate, counter = boundary, 0
        while b"--" + candidate.encode("ascii") in data:
            candidate = f"{boundary}.{counter}"
            counter += 1
        return candidate


@dataclass(frozen=True)
class Attachment:
    """The referral form as it is attached: the exact bytes that were checked."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class OutgoingMessage:
    """A request for information, built and ready for a gateway.

    ``mime`` is the complete RFC 5322 message (what SMTP and the outbox send as bytes).
    The other fields repeat its parts for gateways that build their own message from
    parts (Graph, EWS). ``message_id`` is the Message-ID header value, angle brackets
    included; it is what proves or reconciles a send.
    """

    mime: Message
    message_id: str
    request_ref: str
    sender: str
    recipients: tuple[str, ...]
    subject: str
    text_body: str
    html_body: str
    attachment: Attachment
    #: Extra headers gateways that build their own message should carry (e.g. X-MASH-Request-Ref).
    extra_headers: tuple[tuple[str, str], ...] = ()
    #: Where partners' replies go, if not the sender: the Reply-To header's value (the
    #: requesting worker's secure address, then the replies mailbox's when configured).
    reply_to: str | None = None
    #: "high" for a RED request, else "normal"; gateways that build their own message set
    #: their importance from it (the MIME carries Importance and X-Priority headers).
    importance: str = "normal"
    #: The MASH's name, shown as the display name of ``From`` (the MIME's From carries it;
    #: gateways that build their own message set it on theirs). Empty: the address alone.
    sender_name: str = ""

    @property
    def reply_to_addresses(self) -> list[str]:
        """The Reply-To addresses one by one (Graph and EWS take them as a list)."""
        return [a.strip() for a in (self.reply_to or "").split(",") if a.strip()]

    def as_bytes(self) -> bytes:
        """The message as RFC 5322 bytes with CRLF line endings."""
        # compat32: the message is built with email.mime; see mash_requests.message. Headers
        # are not folded below RFC 5322's hard limit: a folded Message-ID is legal but some
        # systems read it back with a leading space, and it is what proves a send.
        out = io.BytesIO()
        _WireGenerator(out, mangle_from_=False, policy=_WIRE_POLICY).flatten(self.mime)
        return out.getvalue()


@dataclass(frozen=True)
class Receipt:
    """What a gateway says about a message it accepted.

    ``gateway_id`` is the gateway's own handle for the message, where it gives one: the
    outbox file path, the SMTP server's reply to DATA, the Graph message id, the EWS item id.
    """

    gateway: str
    message_id: str
    gateway_id: str | None = None
    detail: str = ""


@runtime_checkable
class Gateway(Protocol):
    """A mail system that can take a message."""

    #: Short name recorded in the dispatch log: "outbox", "smtp", "ews", "graph".
    name: str

    def send(self, message: OutgoingMessage) -> Receipt:
        """Hand the message over once; never retries by itself."""
        ...

    def close(self) -> None:
        """Release connections; the gateway may not be used afterwards."""
        ...


@runtime_checkable
class SentItemsLookup(Protocol):
    """A gateway that can prove whether a message was sent (EWS, Graph, outbox)."""

    def find_sent(self, message_id: str) -> Receipt | None:
        """Look the Message-ID up among sent messages; None when it is not there."""
        ...


@runtime_checkable
class Checkable(Protocol):
    """A gateway that can verify connectivity and authentication without sending."""

    def check(self) -> str:
        """Return a one-line description of what was verified; raise GatewayError if not."""
        ...
