"""Reading new messages from the replies mailbox and recording each once in the dispatch log.

The flow of :func:`fetch_replies`:

1. From where the last fetch of this mailbox started (``[replies] state_file``), less a day
   of overlap, or, the first time, from the day before the first request in the log; a
   folder source reads every file every time.
2. The Message-IDs already recorded in that window are read from the log once. A message
   whose Message-ID is among them is counted as *already seen* and not downloaded (where the
   source can list Message-IDs first) or not parsed.
3. Each new message is classified (:mod:`~mash_requests.replies.classify`) and matched
   (:mod:`~mash_requests.replies.matching`), and becomes one event: ``replied``,
   ``auto_reply``, ``bounced``, ``read_receipt`` or ``unmatched``.
4. Events are appended in batches, each claimed under the log's write lock
   (``append_many(..., precondition=…)``): the precondition reads only the reply events
   recorded since the seen set was read and refuses the batch if another run recorded one of
   its messages meanwhile; the batch is then retried without them. So each message is
   counted once, by its Message-ID, across runs and concurrent runs.
5. Where the fetch started is remembered for the next one only when every message was read.

No subject or body is recorded: times, the sender's address, the Message-ID, the number and
SHA-256 of attachments, how the match was made, and the request's identifying fields.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

from mash_requests.audit.events import (
    REPLY_KINDS,
    Event,
    EventFilter,
    EventKind,
    EventStore,
)
from mash_requests.errors import ConfigError
from mash_requests.replies.classify import (
    IncomingMessage,
    MessageKind,
    message_id_of,
    parse_message,
)
from mash_requests.replies.matching import Mash, Match, RequestLookup, match_message
from mash_requests.replies.sources.base import RawMessage, ReplySource

if TYPE_CHECKING:
    from mash_requests.config import Settings
    from mash_requests.replies.settings import ReplySettings

log = logging.getLogger(__name__)

#: Each fetch reads again this much before where the last one started: mail can show up in
#: a folder a little after the time it says it was received.
OVERLAP = timedelta(days=1)
#: Messages recorded per transaction: the log's write lock is never held for long.
BATCH_SIZE = 250
#: The case reference recorded on events of messages not matched to any request.
UNMATCHED_CASE = "(unmatched)"

_PLAIN_REASONS = {
    "no_reference": "no reference to a request in its headers or subject",
    "unknown_request": "names a request reference that is not in the dispatch log",
    "several_requests": "names several requests",
    "no_sender": "has no readable sender address",
    "sender_not_partner": "comes from outside the partner's addresses and domains",
    "authentication_failed": "failed the sender domain's DMARC check",
    "partner_not_in_directory": "is about a partner no longer in the directory",
    "request_not_sent": "is about a request that was not sent",
    "own_message": "is a copy of the request or reminder itself (its own Message-ID)",
    "from_the_mash": "comes from the MASH (its mailboxes, or its domain but not one of the "
    "partner's listed addresses): a forward or note, not the partner's answer; if the "
    "partner did answer, record it with replies record",
}


@dataclass(frozen=True)
class FetchedMessage:
    """One new message and what was recorded for it (never its subject or body)."""

    #: replied, auto_reply, bounced, read_receipt or unmatched.
    kind: EventKind
    message_id: str
    from_address: str | None
    received_at: datetime
    request_ref: str | None
    case_ref: str | None
    partner: str | None
    #: in_reply_to, references, report or subject, when matched.
    matched_by: str | None
    #: Why it is unmatched (or an automatic reply was not tied to its request), as a code.
    reason: str | None
    attachments: int
    bounce_status: str | None = None
    auto_type: str | None = None

    @property
    def sender_domain(self) -> str | None:
        return self.from_address.rsplit("@", 1)[-1] if self.from_address else None

    @property
    def needs_attention(self) -> bool:
        """Bounced and unmatched messages need a person."""
        return self.kind in (EventKind.BOUNCED, EventKind.UNMATCHED)

    def describe_reason(self) -> str:
        """The reason in words, for people."""
        return _PLAIN_REASONS.get(self.reason or "", self.reason or "")


@dataclass
class FetchResult:
    """What one fetch read and recorded."""

    source: str
    dry_run: bool = False
    #: Messages received since this time were read (None: all, as for a folder).
    since: datetime | None = None
    #: New messages, in the order read; each one event in the log (none in a dry run).
    messages: list[FetchedMessage] = field(default_factory=list)
    #: Messages already recorded by an earlier or concurrent fetch.
    already_seen: int = 0

    def count(self, kind: EventKind) -> int:
        return sum(1 for m in self.messages if m.kind is kind)

    @property
    def needs_attention(self) -> list[FetchedMessage]:
        return [m for m in self.messages if m.needs_attention]


def fetch_replies(
    settings: Settings,
    *,
    dry_run: bool = False,
    store: EventStore | None = None,
    source: ReplySource | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FetchResult:
    """Read new messages from ``[replies]`` and record each once; see the module docstring.

    ``dry_run`` reads, classifies and matches, and records nothing. Raises ConfigError when
    ``[replies]`` is missing; GatewayError when the mailbox cannot be read (messages fully
    read before the failure are recorded); LogError when the log cannot be written.
    """
    replies = _reply_settings(settings)
    owned_store = store is None
    if store is None:
        from mash_requests.audit import open_store

        store = open_store(settings.log)
    owned_source = source is None
    try:
        if source is None:
            source = replies.reader.open(settings.retry)
        try:
            return _Fetch(settings, replies, store, source, now, dry_run).run()
        finally:
            if owned_source:
                source.close()
    finally:
        if owned_store:
            store.close()


def _reply_settings(settings: Settings) -> ReplySettings:
    replies = getattr(settings, "replies", None)
    if replies is None:
        where = f"config {settings.source}" if settings.source else "the embedded default config"
        raise ConfigError(
            f"{where} has no [replies] table: say where partners' replies arrive, e.g. "
            '[replies] source = "folder" and folder = "replies"'
        )
    return replies  # type: ignore[no-any-return]


class _Raced(Exception):
    """Another run recorded some of this batch's messages while we read them."""


class _Fetch:
    """One fetch: its seen set, its batch, its result."""

    def __init__(
        self,
        settings: Settings,
        replies: ReplySettings,
        store: EventStore,
        source: ReplySource,
        now: Callable[[], datetime],
        dry_run: bool,
    ) -> None:
        self.settings = settings
        self.replies = replies
        self.store = store
        self.source = source
        self.now = now
        self.dry_run = dry_run
        self.lookup = RequestLookup(store)
        self.mash = Mash.of(settings.sender, replies.address)
        self.result = FetchResult(source=source.name, dry_run=dry_run)
        self.seen: set[str] = set()
        #: The highest seq of the reply events read into ``seen``.
        self.seen_upto = 0
        self.seen_since: datetime | None = None
        self.batch: list[tuple[Event, FetchedMessage]] = []
        self.batch_ids: set[str] = set()

    def run(self) -> FetchResult:
        started = self.now()
        identity = self.replies.reader.identity
        read, since = self._since(identity)
        if not read:
            return self.result  # nothing was ever sent: no reply can be waiting
        self.result.since = since
        self.seen_since = since - OVERLAP if since is not None else None
        self._read_seen()
        try:
            for raw in self.source.messages(since, self._skip):
                self._take(raw)
                if len(self.batch) >= BATCH_SIZE:
                    self._flush()
        finally:
            # Every message taken was read in full: record it even if the source failed.
            self._flush()
        if not self.dry_run:
            self._remember(identity, started)
        return self.result

    # -- where to start ------------------------------------------------------------------

    def _since(self, identity: str) -> tuple[bool, datetime | None]:
        """(whether to read at all, from when: None for everything)."""
        if self.source.name == "folder":
            return True, None
        last = _load_state(self.replies).get(identity, {}).get("last_fetch_started")
        if isinstance(last, str):
            try:
                return True, datetime.fromisoformat(last).astimezone(UTC) - OVERLAP
            except ValueError:
                log.info(
                    "replies state for %s unreadable; reading from the first request", identity
                )
        events = self.store.events(EventFilter(kinds=[EventKind.PREPARED]))
        try:
            first = next(islice(events, 1), None)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        if first is None:
            return False, None
        return True, first.recorded_at - OVERLAP

    def _remember(self, identity: str, started: datetime) -> None:
        from mash_requests.audit._files import atomic_write_text

        state = _load_state(self.replies)
        state[identity] = {"last_fetch_started": started.astimezone(UTC).isoformat()}
        try:
            atomic_write_text(self.replies.state_file, json.dumps(state, indent=2, sort_keys=True))
        except OSError as exc:
            # Only a speed-up is lost: the next fetch reads from further back.
            log.warning("cannot write %s: %s", self.replies.state_file, exc.strerror)

    # -- what was seen ---------------------------------------------------------------------

    def _read_seen(self) -> None:
        where = EventFilter(kinds=sorted(REPLY_KINDS), since=self.seen_since)
        self._absorb(self.store.events(where))

    def _absorb(self, events: Iterator[Any]) -> set[str]:
        found: set[str] = set()
        for stored in events:
            message_id = stored.event.details.get("reply_message_id")
            if isinstance(message_id, str):
                found.add(message_id)
            self.seen_upto = max(self.seen_upto, stored.seq)
        self.seen |= found
        return found

    def _skip(self, message_id: str) -> bool:
        """For sources that list Message-IDs first: True (and counted) when already seen."""
        if self._known(message_id):
            self.result.already_seen += 1
            return True
        return False

    def _known(self, message_id: str) -> bool:
        return message_id in self.seen or message_id in self.batch_ids

    # -- one message -------------------------------------------------------------------------

    def _take(self, raw: RawMessage) -> None:
        message_id = message_id_of(raw.data)
        if self._known(message_id):
            self.result.already_seen += 1
            return
        message = parse_message(raw.data)
        received = (
            raw.received_at
            or message.received_header_at
            or message.sent_at
            or raw.fallback_time
            or self.now()
        ).astimezone(UTC)
        match = match_message(message, self.lookup, self.settings.directory, self.mash)
        event, fetched = self._event(message, match, received)
        self.batch.append((event, fetched))
        self.batch_ids.add(fetched.message_id)

    def _event(
        self, message: IncomingMessage, match: Match, received: datetime
    ) -> tuple[Event, FetchedMessage]:
        record = match.request
        # Tied to the request: a reply from the partner, or a report about a sent request.
        tied = record is not None and match.counts
        kind = {
            MessageKind.REPLY: EventKind.REPLIED,
            MessageKind.AUTO_REPLY: EventKind.AUTO_REPLY,
            MessageKind.BOUNCE: EventKind.BOUNCED,
            MessageKind.READ_RECEIPT: EventKind.READ_RECEIPT,
        }[message.kind]
        if kind in (EventKind.REPLIED, EventKind.BOUNCED) and not tied:
            kind = EventKind.UNMATCHED  # a person must look at it
        details: dict[str, str | int | float | bool | None] = {
            "received_at": received.isoformat(),
            "from_address": message.from_address,
            "reply_message_id": message.message_id,
            "attachments": len(message.attachments),
            "attachments_sha256": ",".join(message.attachments),
            "source": self.source.name,
        }
        if message.sent_at is not None:
            details["sent_at"] = message.sent_at.isoformat()
        if message.message_id_synthesised:
            details["message_id_from"] = "sha256 of the message (it had no Message-ID)"
        identity: dict[str, Any] = {"case_ref": UNMATCHED_CASE}
        if tied and record is not None:
            identity = record.identity()
            details["request_key"] = record.request_key
            details["matched_by"] = match.matched_by
            if kind is EventKind.REPLIED:
                details["channel"] = "email"
        else:
            claimed = record.request_ref if record is not None else match.claimed_ref
            if claimed:
                details["claimed_request_ref"] = claimed
            details["message_kind"] = str(message.kind)
        if message.auto_type:
            details["auto_type"] = message.auto_type
        if message.bounce_status:
            details["status"] = message.bounce_status
        reason = None if tied else match.reason
        event = Event(
            kind=kind,
            operator=self.settings.operator,
            reason=reason,
            detail=f"the message {_PLAIN_REASONS[reason]}" if reason in _PLAIN_REASONS else None,
            details=details,
            **identity,
        )
        fetched = FetchedMessage(
            kind=kind,
            message_id=message.message_id,
            from_address=message.from_address,
            received_at=received,
            request_ref=record.request_ref if tied and record else None,
            case_ref=record.case_ref if tied and record else None,
            partner=record.partner if tied and record else None,
            matched_by=match.matched_by if tied else None,
            reason=reason,
            attachments=len(message.attachments),
            bounce_status=message.bounce_status,
            auto_type=message.auto_type,
        )
        return event, fetched

    # -- recording ---------------------------------------------------------------------------

    def _flush(self) -> None:
        batch, self.batch = self.batch, []
        self.batch_ids = set()
        if self.dry_run:
            self.result.messages.extend(fetched for _, fetched in batch)
            return
        while batch:
            mine = {fetched.message_id for _, fetched in batch}

            def claim(mine: set[str] = mine) -> None:
                # Under the write lock: what did other runs record since we last looked?
                newer = self.store.events(
                    EventFilter(
                        kinds=sorted(REPLY_KINDS),
                        since=self.seen_since,
                        after_seq=self.seen_upto,
                    )
                )
                if self._absorb(newer) & mine:
                    raise _Raced

            try:
                self.store.append_many([event for event, _ in batch], precondition=claim)
            except _Raced:
                kept = [(e, f) for e, f in batch if f.message_id not in self.seen]
                self.result.already_seen += len(batch) - len(kept)
                batch = kept
                continue
            self.seen |= mine
            self.result.messages.extend(fetched for _, fetched in batch)
            return


def _load_state(replies: ReplySettings) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(replies.state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.info("replies state %s unreadable (%s); starting from the log", replies.state_file, exc)
        return {}
    return data if isinstance(data, dict) else {}
