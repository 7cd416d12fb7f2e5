"""How long partner agencies take to answer: the evidence report's timeliness figures.

Which requests are open, answered or bounced is decided by one fold, the one ``overdue``
uses (:class:`~mash_requests.replies.tracking.OpenRequests`): a ``replied`` event for any
reference of a request key answers its latest sending; ``bounced`` flags it; ``chased``
counts a reminder; a resend starts a new cycle. This module follows that fold and notes,
for each request *sent* in the report's period, when it was sent, when it was answered,
whether it bounced and how many reminders it had.

A request counts once, in the month (UTC) of its latest sending in the period: a resend
replaces the earlier sending (its clock starts again), keeping the bounces and reminders
of the earlier one. Its due time is the one recorded when it was prepared (from the RAG
rating); time to answer runs from sending to the ``replied`` event's time, in working hours
where ``[timescales] working_hours`` names the rating (the same working day, days and
holidays as the deadline), in elapsed hours otherwise.

Each request is in exactly one of :data:`CATEGORIES`, as of the report's generation time.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from mash_requests.audit.events import EventKind, StoredEvent
from mash_requests.case import Rag
from mash_requests.deadlines import Timescales
from mash_requests.replies.overdue import working_hours_between
from mash_requests.replies.tracking import TRACKED_KINDS, OpenRequest, OpenRequests

K = TypeVar("K")

_PREPARED, _SENT, _RECONCILED = EventKind.PREPARED, EventKind.SENT, EventKind.RECONCILED
_REPLIED, _BOUNCED, _CHASED = EventKind.REPLIED, EventKind.BOUNCED, EventKind.CHASED

#: Where a request stands, each with what the report calls it; in the chart's order.
CATEGORIES: dict[str, str] = {
    "in_time": "answered within the timescale",
    "late": "answered late",
    "bounced": "bounced, not answered",
    "overdue": "overdue now, not answered",
    "not_due": "not answered, not due yet",
    "other": "not answered and no longer open, or no RAG rating in the log",
}


@dataclass(slots=True)
class Sending:
    """One request sent in the period, as the fold saw it."""

    request: OpenRequest
    sent_at: datetime
    #: Bounces and reminders of earlier sendings of the same request (before a resend).
    bounced_before: bool = False
    chasers_before: int = 0
    answered_at: datetime | None = None

    @property
    def bounced(self) -> bool:
        return self.bounced_before or self.request.bounced

    @property
    def chasers(self) -> int:
        return self.chasers_before + self.request.chasers


class AnswerFold(OpenRequests):
    """The open-requests fold, noting each sending in [since, until) and its answer."""

    def __init__(self, since: datetime | None = None, until: datetime | None = None) -> None:
        super().__init__()
        self.since = since
        self.until = until
        #: The latest sending in the period of each request key.
        self.sendings: dict[str, Sending] = {}

    def apply(self, stored: StoredEvent) -> None:
        event = stored.event
        kind = event.kind
        if kind is _PREPARED or kind is _BOUNCED or kind is _CHASED:
            OpenRequests.apply(self, stored)  # nothing of ours to note
            return
        ref = event.request_ref
        if kind is _REPLIED:
            key = self.key_of_ref.get(ref) if ref is not None else None
            answered = self.by_key.get(key) if key is not None else None
            OpenRequests.apply(self, stored)
            if answered is not None and answered.request_key not in self.by_key:
                sending = self.sendings.get(answered.request_key)  # the reply closed it
                if sending is not None and sending.request is answered:
                    sending.answered_at = _received_at(stored)
            return
        OpenRequests.apply(self, stored)
        if ref is None or not (
            kind is _SENT or (kind is _RECONCILED and event.details.get("outcome") == "sent")
        ):
            return
        at = stored.recorded_at
        if (self.since is not None and at < self.since) or (
            self.until is not None and at >= self.until
        ):
            return
        key = self.key_of_ref.get(ref)
        current = self.by_key.get(key) if key is not None else None
        if current is None or current.request_ref != ref:
            return
        earlier = self.sendings.get(current.request_key)
        if earlier is not None and earlier.request is current:
            return  # sent again within one cycle (a reconciliation after sent): one sending
        self.sendings[current.request_key] = Sending(
            request=current,
            sent_at=at,
            bounced_before=earlier.bounced if earlier else False,
            chasers_before=earlier.chasers if earlier else 0,
        )

    def feed(self, stored: StoredEvent) -> None:
        """:meth:`apply` for any event of a read, cheaply: kinds the fold ignores are skipped.

        Every tracked event counts, before ``since`` too: an answer or a failure there
        closes a request that a later event of the period would otherwise seem to send.
        """
        kind = stored.event.kind
        if kind is _PREPARED or kind is _BOUNCED or kind is _CHASED:
            OpenRequests.apply(self, stored)  # as apply does, one call less
        elif kind in TRACKED_KINDS:
            self.apply(stored)

    def is_open(self, sending: Sending) -> bool:
        return self.by_key.get(sending.request.request_key) is sending.request

    def awaited_refs(self) -> set[str]:
        """The references whose later ``replied``, ``bounced`` or ``chased`` events can still
        change the figures of the sendings noted so far; those of any other reference cannot.

        A sending no longer open (answered, closed, or its key prepared again) is settled:
        later events reach only a key's open request. So these are the references of the
        keys still open on a sending, plus, rarely, those of any other open request whose
        closing would drop one of them (two keys that both prepared one reference), and so
        on: :meth:`apply` of only these references' later events, in ``seq`` order, leaves
        every sending as applying all of them does.
        """
        keys = {key for key, sending in self.sendings.items() if self.is_open(sending)}
        if not keys:
            return set()
        key_of_ref = self.key_of_ref
        # A reference that an open request would drop on closing but that now names another
        # key (both prepared it): closing that request changes what the reference answers.
        droppers: dict[str, list[str]] = {}
        for key, request in self.by_key.items():
            for ref in (*request.earlier_refs, request.request_ref):
                owner = key_of_ref.get(ref)
                if owner is not None and owner != key:
                    droppers.setdefault(ref, []).append(key)
        if droppers:
            refs_of: dict[str, list[str]] = {}
            for ref, key in key_of_ref.items():
                refs_of.setdefault(key, []).append(ref)
            pending = list(keys)
            while pending:
                for ref in refs_of.get(pending.pop(), ()):
                    for other in droppers.get(ref, ()):
                        if other not in keys:
                            keys.add(other)
                            pending.append(other)
        return {ref for ref, key in key_of_ref.items() if key in keys}


@dataclass
class Timeliness:
    """The timeliness figures of one group of requests (all, an agency, a month, or both)."""

    requests: int = 0
    answered: int = 0
    #: Requests in each of :data:`CATEGORIES`.
    categories: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    #: Hours from sending to the answer, in each request's basis (working or elapsed).
    hours: list[float] = field(default_factory=list)
    bounced: int = 0
    chasers: int = 0
    #: Requests whose timeliness is known by now: answered (with a due time), or not
    #: answered and past due (bounced or not). The share answered in time is of these.
    decided: int = 0

    def add(self, other: Timeliness) -> None:
        """Add another group's requests to this one's."""
        self.requests += other.requests
        self.answered += other.answered
        for category, n in other.categories.items():
            self.categories[category] += n
        self.hours.extend(other.hours)
        self.bounced += other.bounced
        self.chasers += other.chasers
        self.decided += other.decided

    @property
    def in_time(self) -> int:
        return self.categories["in_time"]

    @property
    def overdue(self) -> int:
        return self.categories["overdue"]

    @property
    def in_time_rate(self) -> float | None:
        """Answered within the timescale, of the requests whose timeliness is known."""
        return self.in_time / self.decided if self.decided else None

    @property
    def median_hours(self) -> float | None:
        return statistics.median(self.hours) if self.hours else None

    @property
    def p90_hours(self) -> float | None:
        """The 90th percentile (nearest rank): nine in ten answers came at least this fast."""
        if not self.hours:
            return None
        ordered = sorted(self.hours)
        return ordered[math.ceil(0.9 * len(ordered)) - 1]


@dataclass
class TimelinessTally:
    """Timeliness of the requests sent in the period, grouped as the report shows them."""

    totals: Timeliness = field(default_factory=Timeliness)
    by_partner: dict[str, Timeliness] = field(default_factory=dict)
    by_month: dict[str, Timeliness] = field(default_factory=dict)
    by_partner_month: dict[tuple[str, str], Timeliness] = field(default_factory=dict)
    #: The ratings counted in working hours (from ``[timescales] working_hours``).
    working_ratings: tuple[str, ...] = ()


def count(fold: AnswerFold, timescales: Timescales, now: datetime) -> TimelinessTally:
    """Group the fold's sendings by agency and month, each in one category as of ``now``."""
    result = TimelinessTally(
        working_ratings=tuple(str(r) for r in Rag if r in timescales.working_hours)
    )
    # Counted once per agency-month, then summed into agencies, months and totals.
    cells = result.by_partner_month
    months: dict[tuple[int, int], str] = {}
    working = timescales.working_hours
    open_now = fold.by_key
    for key, sending in fold.sendings.items():
        request = sending.request
        sent_at = sending.sent_at
        utc = sent_at if sent_at.tzinfo is UTC else sent_at.astimezone(UTC)
        month = months.get((utc.year, utc.month))
        if month is None:
            month = months[(utc.year, utc.month)] = f"{utc.year:04d}-{utc.month:02d}"
        rag = _RAGS.get(request.rag) if request.rag else None
        due = _due(request, rag, timescales)
        answered_at = sending.answered_at
        if answered_at is not None and answered_at < sent_at:
            answered_at = sent_at  # a sender's clock behind ours: not before it was asked
        bounced = sending.bounced_before or request.bounced
        hours: float | None = None
        if answered_at is not None:
            if rag is not None and rag in working:
                hours = working_hours_between(sent_at, answered_at, timescales)
            else:
                hours = max(0.0, (answered_at - sent_at).total_seconds() / 3600)
            category = "other" if due is None else "in_time" if answered_at <= due else "late"
        elif bounced:
            category = "bounced"
        elif due is None or open_now.get(key) is not request:
            category = "other"
        else:
            category = "overdue" if due <= now else "not_due"
        cell_key = (request.partner or "(no partner)", month)
        group = cells.get(cell_key)
        if group is None:
            group = cells[cell_key] = Timeliness()
        group.requests += 1
        group.categories[category] += 1
        if due is not None and (answered_at is not None or due <= now):
            group.decided += 1
        if answered_at is not None:
            group.answered += 1
        if hours is not None:
            group.hours.append(hours)
        if bounced:
            group.bounced += 1
        group.chasers += sending.chasers_before + request.chasers
    for (partner, month), cell in sorted(cells.items()):
        for group in (
            result.totals,
            _group(result.by_partner, partner),
            _group(result.by_month, month),
        ):
            group.add(cell)
    result.by_partner = dict(sorted(result.by_partner.items()))
    result.by_month = dict(sorted(result.by_month.items()))
    return result


def timeliness(
    events: Iterable[StoredEvent],
    *,
    timescales: Timescales,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
) -> TimelinessTally:
    """The timeliness of requests sent in [since, until), from events in seq order.

    ``events`` should run from a little before ``since`` (so requests prepared before it
    are known) to the end of the log (so answers after ``until`` count).
    """
    fold = AnswerFold(since, until)
    for stored in events:
        fold.feed(stored)
    return count(fold, timescales, now)


_RAGS = {str(rag): rag for rag in Rag}


def _due(request: OpenRequest, rag: Rag | None, timescales: Timescales) -> datetime | None:
    """The due time recorded at preparing; else (older logs) today's timescales from then."""
    if request.due:
        due = datetime.fromisoformat(request.due)
        return due if due.tzinfo else due.replace(tzinfo=UTC)
    if rag is None:
        return None
    prepared_at = datetime.fromisoformat(request.prepared_at)
    if rag not in timescales.working_hours:
        # What Timescales.due gives, without converting it to local time for display:
        # only compared with other aware times here.
        return prepared_at + timedelta(hours=timescales.hours[rag])
    return timescales.due(rag, prepared_at)


def _group(groups: dict[K, Timeliness], key: K) -> Timeliness:
    figures = groups.get(key)
    if figures is None:
        figures = groups[key] = Timeliness()
    return figures


def _received_at(stored: StoredEvent) -> datetime:
    """When an answer reached the MASH: the ``received_at`` it was recorded with (a reply's
    arrival, or the time given to ``replies record``), else when it was recorded. Timeliness
    is the partner's: an answer fetched or typed in days later was still in time if it came
    in time."""
    value = stored.event.details.get("received_at")
    if isinstance(value, str):
        try:
            received = datetime.fromisoformat(value)
        except ValueError:
            return stored.recorded_at
        return received if received.tzinfo is not None else received.replace(tzinfo=UTC)
    return stored.recorded_at


__all__ = [
    "CATEGORIES",
    "AnswerFold",
    "Sending",
    "Timeliness",
    "TimelinessTally",
    "count",
    "timeliness",
]
