"""Recording an answer that came another way: by phone, in a meeting, by email elsewhere, or in
the partner's own system (co-located partner staff often answer in person).

>>> record_reply(settings, "MASH-2026-0412-POLICE-1BAC7",
...              received=parse_received("2026-04-13 10:15", settings.timescales.timezone),
...              channel="phone")

The answer is a ``replied`` event (``channel`` and ``received_at`` in its details, ``source``
"manual") with the operator, and it stops the request's clock like an email reply. Refused
(InputError, nothing recorded) for a reference the log does not know, a request that was not
sent, a time in the future, or a time before the request was prepared. Recording the same
answer again (same request, channel and time) records nothing and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from mash_requests.audit.events import Event, EventFilter, EventKind, EventStore
from mash_requests.errors import InputError
from mash_requests.replies.matching import RequestLookup

if TYPE_CHECKING:
    from mash_requests.config import Settings

#: How an answer reached the MASH.
CHANNELS = ("phone", "email", "meeting", "system")
#: Clocks differ a little: a time this far ahead of ours is still "now".
CLOCK_SLACK = timedelta(minutes=2)


@dataclass(frozen=True)
class RecordedReply:
    """What :func:`record_reply` recorded (or found already recorded)."""

    request_ref: str
    case_ref: str
    partner: str | None
    channel: str
    received_at: datetime
    operator: str
    #: False when the same answer was already in the log and nothing was added.
    recorded: bool


def parse_received(text: str, zone: ZoneInfo) -> datetime:
    """``YYYY-MM-DD HH:MM`` (in ``zone``) or ISO 8601 (its offset, else ``zone``).

    Raises InputError naming the expected forms.
    """
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or len(value) < 16:  # a date alone is not a time of answer
        raise InputError(
            f"received time {text!r}: expected YYYY-MM-DD HH:MM (in {zone.key}) or ISO 8601 "
            "such as 2026-04-13T10:15:00+01:00"
        )
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def record_reply(
    settings: Settings,
    request_ref: str,
    *,
    received: datetime,
    channel: str,
    store: EventStore | None = None,
    now: datetime | None = None,
) -> RecordedReply:
    """Record that the partner answered ``request_ref`` at ``received`` by ``channel``."""
    if channel not in CHANNELS:
        raise InputError(f"channel {channel!r}: expected one of {', '.join(CHANNELS)}")
    if received.tzinfo is None:
        raise InputError("received time must say its time zone (an aware datetime)")
    current = (now or datetime.now(UTC)).astimezone(UTC)
    received = received.astimezone(UTC)
    if received > current + CLOCK_SLACK:
        raise InputError(
            f"received time {received:%Y-%m-%d %H:%M} UTC is in the future; give the time "
            "the answer came"
        )
    ref = request_ref.strip()
    owned = store is None
    if store is None:
        from mash_requests.audit import open_store

        store = open_store(settings.log)
    try:
        request = RequestLookup(store).by_ref(ref)
        if request is None:
            raise InputError(
                f"no request {ref!r} in the dispatch log; check the request reference "
                "(it is in the request's subject, e.g. MASH-2026-0412-POLICE-1BAC7)"
            )
        if not request.handed_over:
            raise InputError(
                f"request {ref} was not sent (its last outcome is {request.outcome}); an "
                "answer can be recorded only for a request that went to the partner"
            )
        if received < request.prepared_at - CLOCK_SLACK:
            raise InputError(
                f"received time {received:%Y-%m-%d %H:%M} UTC is before request {ref} was "
                f"sent ({request.prepared_at:%Y-%m-%d %H:%M} UTC); check the date and time"
            )
        stamp = received.isoformat()

        class _Already(Exception):
            pass

        def not_yet_recorded() -> None:
            # Under the log's write lock: two people recording the same answer add one event.
            for stored in store.events(EventFilter(request_ref=ref, kinds=[EventKind.REPLIED])):
                details = stored.event.details
                if details.get("channel") == channel and details.get("received_at") == stamp:
                    raise _Already

        event = Event(
            kind=EventKind.REPLIED,
            operator=settings.operator,
            details={
                "channel": channel,
                "received_at": stamp,
                "source": "manual",
                "request_key": request.request_key,
            },
            **request.identity(),  # type: ignore[arg-type]
        )
        try:
            store.append(event, precondition=not_yet_recorded)
            recorded = True
        except _Already:
            recorded = False
    finally:
        if owned:
            store.close()
    return RecordedReply(
        request_ref=ref,
        case_ref=request.case_ref,
        partner=request.partner,
        channel=channel,
        received_at=received,
        operator=settings.operator,
        recorded=recorded,
    )
