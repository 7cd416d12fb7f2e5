"""Which request a message is about, and whether it counts for it.

A message is matched to a request, first rule that finds one:

1. ``In-Reply-To``, then ``References`` (newest first), carrying the Message-ID of a request
   or of a reminder sent for it (``mash-requests chase``) (``matched_by`` "in_reply_to" /
   "references");
2. for delivery reports and receipts, the returned message's ``Message-ID`` or
   ``X-MASH-Request-Ref`` (``matched_by`` "report");
3. the request reference in the subject (``matched_by`` "subject"), found by the same bounded
   matching as case references in referral forms
   (:func:`mash_requests.referral_form.contains_case_ref`; see :func:`mentions`):
   ``…-POLICE-1BAC7`` is never
   found inside a longer token such as ``…-POLICE-1BAC7A`` or ``X…``; prefixes (``RE:``,
   ``AW:``, ``SV:``, ``R:``, ``Antw:`` …, in any number and case), tags (``[SECURE]``,
   ``[EXTERNAL]``) and a protective marking around it do not matter.

A match counts for the request only when the message comes from one of that partner's
addresses, or from an address in the domain (or a subdomain) of one of them, still on the
allow-list; and the receiving mail system did not record a DMARC failure for it. A spoofed or
forwarded message never closes a request by itself: it goes to the unmatched list for a
person. Delivery reports are exempt (they come from mail systems, not partners): a bounce
never stops the clock, it only flags the request for action.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from mash_requests.audit.events import EventFilter, EventKind, EventStore
from mash_requests.errors import RecipientError
from mash_requests.partners import PartnerDirectory
from mash_requests.replies.classify import IncomingMessage, MessageKind

# Text from mail clients varies the same ways as text from PDFs: dash variants, invisible
# characters, compatibility forms. Folded before looking for reference-shaped tokens.
_DASHES = dict.fromkeys(
    map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"), "-"
)
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"), None)
#: A maximal run of letters and digits joined by the connectors references use.
_TOKEN = re.compile(r"[0-9A-Za-z]+(?:[-_./][0-9A-Za-z]+)*")
#: Request references end in ``-<PARTNER>-<5 hex>`` (see dispatch.new_request_ref).
_REQUEST_REF_TAIL = re.compile(r"-[A-Za-z0-9_-]{1,32}-[0-9A-Fa-f]{5}$")
#: Our Message-IDs: ``<request ref with unsafe characters as dots>.<16 hex>@<domain>``.
_OUR_MESSAGE_ID = re.compile(r"^<(?P<local>.+)\.[0-9a-f]{16}@[^<>@\s]+>$")


#: Automatic replies that are delivery reports, sent by mail systems rather than partners.
DELIVERY_REPORTS = ("delivery_delayed", "delivery_report")


@dataclass(frozen=True)
class RequestRecord:
    """What the log says of one request, as matching and recording need it."""

    request_ref: str
    request_key: str | None
    case_ref: str
    partner: str | None
    recipients: tuple[str, ...]
    sender: str | None
    message_id: str | None
    form_sha256: str | None
    prepared_at: datetime
    #: The ``due`` and ``rag`` of its ``prepared`` event (None in logs that lack them).
    due: str | None
    rag: str | None
    #: Handed to the gateway: sent, unconfirmed, or reconciled as sent.
    handed_over: bool
    #: The last send outcome: pending, sent, unconfirmed, failed, not_found or not_sent.
    outcome: str
    #: The Message-IDs of reminders handed over for it: a reply to one answers the request.
    reminder_message_ids: tuple[str, ...] = ()

    def identity(self) -> dict[str, object]:
        """The identifying fields copied onto every follow-up event of this request."""
        return {
            "case_ref": self.case_ref,
            "request_ref": self.request_ref,
            "partner": self.partner,
            "recipients": self.recipients,
            "sender": self.sender,
            "message_id": self.message_id,
            "form_sha256": self.form_sha256,
        }


class RequestLookup:
    """Finds requests in the log by reference or Message-ID, remembering what it found.

    Each lookup is one indexed read (by request reference); a Message-ID of ours whose
    reference cannot be read back from it (a case reference with ``/``) falls back, once per
    lookup object, to an index of every ``prepared`` event.
    """

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._by_ref: dict[str, RequestRecord | None] = {}
        self._by_message_id: dict[str, str] | None = None

    def by_ref(self, request_ref: str) -> RequestRecord | None:
        """The request with exactly this reference, or None."""
        if request_ref in self._by_ref:
            return self._by_ref[request_ref]
        record = _record(self._store, request_ref)
        if len(self._by_ref) > 100_000:
            self._by_ref.clear()
        self._by_ref[request_ref] = record
        return record

    def by_message_id(self, message_id: str) -> RequestRecord | None:
        """The request sent with this Message-ID, or None."""
        found = _OUR_MESSAGE_ID.match(message_id)
        if found is None:
            return None
        local = found.group("local")
        for ref in dict.fromkeys((local, local.upper())):
            record = self.by_ref(ref)
            if record is not None and (
                record.message_id == message_id or message_id in record.reminder_message_ids
            ):
                return record
        if self._by_message_id is None:
            self._by_message_id = {
                stored.event.message_id: stored.event.request_ref
                for stored in self._store.events(EventFilter(kinds=[EventKind.PREPARED]))
                if stored.event.message_id and stored.event.request_ref
            }
        ref = self._by_message_id.get(message_id)
        return self.by_ref(ref) if ref else None


def _record(store: EventStore, request_ref: str) -> RequestRecord | None:
    prepared = None
    outcome = "pending"
    handed_over = False
    reminders: list[str] = []
    for stored in store.events(EventFilter(request_ref=request_ref)):
        event = stored.event
        if event.kind is EventKind.CHASED:
            chaser_id = event.details.get("chaser_message_id")
            if isinstance(chaser_id, str) and event.details.get("outcome") == "handing_over":
                reminders.append(chaser_id)
        elif event.kind is EventKind.PREPARED and prepared is None:
            prepared = stored
        elif event.kind in (EventKind.SENT, EventKind.UNCONFIRMED):
            outcome = str(event.kind)
            handed_over = True
        elif event.kind is EventKind.FAILED:
            outcome = "failed"
        elif event.kind is EventKind.RECONCILED:
            finding = event.details.get("outcome")
            found = finding == "sent"
            outcome = "sent" if found else "not_sent" if finding == "not_sent" else "not_found"
            handed_over = handed_over or found
    if prepared is None:
        return None
    event = prepared.event
    due = event.details.get("due")
    rag = event.details.get("rag")
    return RequestRecord(
        request_ref=request_ref,
        request_key=event.request_key,
        case_ref=event.case_ref,
        partner=event.partner,
        recipients=event.recipients,
        sender=event.sender,
        message_id=event.message_id,
        form_sha256=event.form_sha256,
        prepared_at=prepared.recorded_at,
        due=due if isinstance(due, str) else None,
        rag=rag if isinstance(rag, str) else None,
        handed_over=handed_over and outcome not in ("not_found", "not_sent"),
        outcome=outcome,
        reminder_message_ids=tuple(reminders),
    )


# -- references in text ----------------------------------------------------------------------


def _fold(text: str) -> str:
    """What both sides are compared as: NFKC, one kind of dash, no invisible characters."""
    return unicodedata.normalize("NFKC", text).translate(_DASHES).translate(_INVISIBLE)


def reference_candidates(text: str) -> list[str]:
    """Tokens of ``text`` shaped like a request reference, as written and upper-cased.

    Only candidates: a caller confirms one by looking it up and by :func:`mentions`.
    """
    found: dict[str, None] = {}
    for token in _TOKEN.findall(_fold(text)):
        if len(token) <= 100 and _REQUEST_REF_TAIL.search(token):
            found[token] = None
            found[token.upper()] = None
    return list(found)


def mentions(text: str, request_ref: str) -> bool:
    """Whether one-line ``text`` (a subject) holds ``request_ref`` as a whole reference.

    The rules of :func:`mash_requests.referral_form.contains_case_ref`, case-blind: the
    reference must not continue into a longer one (a letter or digit next to it, a connector
    ``- _ / .`` joining it to one, or "…7 7" on one line), so ``…-POLICE-1BAC7`` is not found
    in ``…-POLICE-1BAC7A`` or ``X…``. Written out here for one-line text because that
    function compiles a pattern per reference (milliseconds each, thousands per fetch); a
    property test holds the two to the same answers.
    """
    folded = _fold(text).casefold()
    ref = "".join(c for c in _fold(request_ref).casefold() if not c.isspace())
    if not ref or not any(c.isalnum() for c in ref):
        return False
    start = folded.find(ref)
    while start >= 0:
        end = start + len(ref)
        if not _continues_before(folded, start, ref[0]) and not _continues_after(
            folded, end, ref[-1]
        ):
            return True
        start = folded.find(ref, start + 1)
    return False


_CONNECTORS = "-_/."


def _continues_after(text: str, end: int, last: str) -> bool:
    if end >= len(text):
        return False
    c = text[end]
    if c.isalnum():
        return True
    if c in _CONNECTORS:
        return end + 1 < len(text) and text[end + 1].isalnum()
    if last.isdigit() and c.isspace():
        rest = text[end:].lstrip()
        return bool(rest) and rest[0].isdigit()
    return False


def _continues_before(text: str, start: int, first: str) -> bool:
    if start <= 0:
        return False
    c = text[start - 1]
    if c.isalnum():
        return True
    if c in _CONNECTORS:
        return start >= 2 and text[start - 2].isalnum()
    if first.isdigit() and c.isspace():
        rest = text[:start].rstrip()
        return bool(rest) and rest[-1].isdigit()
    return False


# -- the match -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """The request a message is about (if any) and whether it counts for that request."""

    request: RequestRecord | None
    #: in_reply_to, references, report or subject; None when no request was found.
    matched_by: str | None
    #: True when the message counts for ``request`` (sender and authentication checked).
    counts: bool
    #: Why it does not count (a code): no_reference, unknown_request, several_requests,
    #: no_sender, sender_not_partner, authentication_failed, partner_not_in_directory,
    #: request_not_sent, own_message (a copy of the request or a reminder itself),
    #: from_the_mash (sent from the MASH's own mailbox or domain). None when it counts.
    reason: str | None = None
    #: The reference it seemed to be about when no request was found.
    claimed_ref: str | None = None


@dataclass(frozen=True)
class Mash:
    """The MASH's own mail: what it sends from, never a partner's answer."""

    #: The sending mailbox and the replies mailbox (lower case).
    addresses: frozenset[str] = frozenset()
    #: The MASH's mail domain (the sender's), lower case; None: unknown.
    domain: str | None = None

    @classmethod
    def of(cls, sender: str, replies_address: str | None) -> Mash:
        addresses = {sender.lower(), *((replies_address.lower(),) if replies_address else ())}
        return cls(frozenset(addresses), sender.rsplit("@", 1)[-1].lower())


def match_message(
    message: IncomingMessage,
    lookup: RequestLookup,
    directory: PartnerDirectory,
    mash: Mash = Mash(),
) -> Match:
    """Find the request ``message`` is about and decide whether it counts (module docstring)."""
    record, matched_by, claimed, ambiguous = _find(message, lookup)
    if record is None:
        if ambiguous:
            return Match(None, None, False, "several_requests")
        reason = "unknown_request" if claimed else "no_reference"
        return Match(None, None, False, reason, claimed_ref=claimed)
    problem = _why_not_counted(message, record, directory, mash)
    return Match(record, matched_by, problem is None, problem)


def _find(
    message: IncomingMessage, lookup: RequestLookup
) -> tuple[RequestRecord | None, str | None, str | None, bool]:
    """(record, matched_by, a reference-shaped token that was not found, ambiguous)."""
    report = message.kind is not MessageKind.REPLY
    by_id: list[tuple[str, str]] = []
    if report:
        by_id += [(mid, "report") for mid in message.reported_message_ids]
    by_id += [(mid, "in_reply_to") for mid in message.in_reply_to]
    by_id += [(mid, "references") for mid in reversed(message.references)]
    for message_id, how in by_id:
        record = lookup.by_message_id(message_id)
        if record is not None:
            return record, how, None, False
    if report:
        for ref in message.reported_request_refs:
            record = lookup.by_ref(ref.strip())
            if record is not None:
                return record, "report", None, False
    texts = [message.subject]
    if report and message.reported_subject:
        texts.append(message.reported_subject)
    claimed: str | None = None
    found: dict[str, RequestRecord] = {}
    for text in texts:
        for candidate in reference_candidates(text):
            record = lookup.by_ref(candidate)
            if record is None:
                claimed = claimed or candidate
            elif mentions(text, record.request_ref):
                found[record.request_ref] = record
        if found:
            break
    if len(found) == 1:
        return next(iter(found.values())), "subject", None, False
    return None, None, claimed, len(found) > 1


def _why_not_counted(
    message: IncomingMessage, record: RequestRecord, directory: PartnerDirectory, mash: Mash
) -> str | None:
    if not record.handed_over:
        return "request_not_sent"
    if message.message_id in (record.message_id, *record.reminder_message_ids):
        return "own_message"  # the request or a reminder itself (a Bcc or journal copy)
    if message.kind is MessageKind.BOUNCE or message.auto_type in DELIVERY_REPORTS:
        return None  # from a mail system; flags the request, never stops its clock
    if message.from_address is None:
        return "no_sender"
    if message.authentication_failed:
        return "authentication_failed"
    try:
        partner = directory.get(record.partner or "")
    except RecipientError:
        return "partner_not_in_directory"
    sender = message.from_address.lower()
    if sender in mash.addresses:
        return "from_the_mash"
    if not sender_allowed(sender, partner.addresses, directory):
        return "sender_not_partner"
    domain = sender.rsplit("@", 1)[-1]
    own_domain = mash.domain is not None and (
        domain == mash.domain or domain.endswith("." + mash.domain)
    )
    if own_domain and sender not in (a.lower() for a in partner.addresses):
        # A partner sharing the MASH's domain (the council's education service) answers
        # from its listed addresses; anyone else there is MASH staff (a forward, a note).
        return "from_the_mash"
    return None


def sender_allowed(
    address: str, partner_addresses: tuple[str, ...], directory: PartnerDirectory
) -> bool:
    """Whether ``address`` is one of the partner's, or in one of their domains (and allowed)."""
    sender = address.lower()
    domain = sender.rsplit("@", 1)[-1]
    if not directory.allow_list.allows(domain):
        return False
    for known in partner_addresses:
        known = known.lower()
        known_domain = known.rsplit("@", 1)[-1]
        if sender == known or domain == known_domain or domain.endswith("." + known_domain):
            return True
    return False
