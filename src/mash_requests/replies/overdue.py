"""Requests sent and not answered that are past due (or due soon), most urgent first.

>>> items = overdue(settings, within_hours=4)
>>> for item in items:
...     print(item.state, item.partner, item.request_ref, item.due, item.hours_late)

What is listed, from the open requests of the log (:mod:`mash_requests.replies.tracking`):

- a request whose latest send was recorded ``sent`` (or reconciled as sent) and that has no
  ``replied`` event (an email reply from the partner, or an answer recorded by hand):
  ``overdue`` when its due time has passed, ``due_soon`` when it falls within
  ``within_hours`` from now;
- a request with a ``bounced`` event: ``bounced`` whatever its due time: the partner never
  got it and a person must act (send it to another address, phone them).

``unconfirmed`` requests are not listed: whether they went at all is settled first
(``mash-requests reconcile``, or a person and ``--resend``).

How late: in working hours where ``[timescales] working_hours`` names the rating (the same
working day, days and holidays as the deadline), in elapsed hours otherwise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from mash_requests.case import Rag
from mash_requests.deadlines import Timescales
from mash_requests.errors import InputError
from mash_requests.replies.tracking import OpenRequest, open_requests

if TYPE_CHECKING:
    from mash_requests.audit.events import EventStore
    from mash_requests.config import Settings

log = logging.getLogger(__name__)

#: The states a listed request can be in, most urgent first.
STATES = ("bounced", "overdue", "due_soon")
FORMATS = ("table", "csv", "jsonl")
_RAG_ORDER = {"red": 0, "amber": 1, "green": 2}


@dataclass(frozen=True)
class OverdueRequest:
    """One request that needs chasing (or, bounced, another way of reaching the partner)."""

    request_ref: str
    case_ref: str
    partner: str
    #: The partner's name from the directory (the key again if it is no longer there).
    partner_name: str
    rag: str
    #: When the answer is due, in ``[timescales] timezone``.
    due: datetime
    #: "bounced", "overdue" or "due_soon" (see the module docstring).
    state: str
    #: Hours past due (negative: hours left), in ``hours_basis`` hours, to 0.1.
    hours_late: float
    #: "working" when the rating counts working hours, else "elapsed".
    hours_basis: str
    #: Reminders sent for this request (``chased`` events).
    chasers: int
    bounced: bool
    #: The bounce's status code (e.g. "5.1.1"), if it gave one.
    bounce_status: str | None
    sent_at: datetime | None
    message_id: str | None

    def to_json(self) -> dict[str, Any]:
        """The item as JSON values (times in ISO 8601 with their offset)."""
        return {
            "request_ref": self.request_ref,
            "case_ref": self.case_ref,
            "partner": self.partner,
            "partner_name": self.partner_name,
            "rag": self.rag,
            "due": self.due.isoformat(),
            "state": self.state,
            "hours_late": self.hours_late,
            "hours_basis": self.hours_basis,
            "chasers": self.chasers,
            "bounced": self.bounced,
            "bounce_status": self.bounce_status,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "message_id": self.message_id,
        }


#: The furthest look ahead accepted (about 11 years; the CLI's --within has the same bound).
MAX_WITHIN_HOURS = 100_000


def overdue(
    settings: Settings,
    *,
    within_hours: float | None = None,
    now: datetime | None = None,
    store: EventStore | None = None,
    use_cache: bool = True,
) -> list[OverdueRequest]:
    """Requests past due, bounced, or due within ``within_hours``; most urgent first.

    Sorted: bounced, then overdue, then due soon; within each by due time (earliest first),
    then red before amber before green. Raises InputError for a ``within_hours`` that is
    negative, not a number or beyond MAX_WITHIN_HOURS.
    """
    if within_hours is not None and not 0 <= within_hours <= MAX_WITHIN_HOURS:
        raise InputError(
            f"within_hours must be 0 to {MAX_WITHIN_HOURS:g} hours, got {within_hours:g}"
        )
    moment = (now or datetime.now(UTC)).astimezone(settings.timescales.timezone)
    owned = store is None
    if store is None:
        from mash_requests.audit import open_store

        store = open_store(settings.log)
    try:
        state = open_requests(
            store,
            cache_dir=settings.data_dir / "cache" if use_cache else None,
            location=str(getattr(store, "location", settings.log.path)),
            hmac_key=settings.log.hmac_key,
        )
        warn_outside_chain(store)
    finally:
        if owned:
            store.close()
    names = {partner.key: partner.name for partner in settings.directory}
    horizon = moment + timedelta(hours=within_hours) if within_hours is not None else moment
    items: list[OverdueRequest] = []
    for request in state.by_key.values():
        item = _item(request, settings.timescales, moment, horizon, names)
        if item is not None:
            items.append(item)
    items.sort(
        key=lambda i: (STATES.index(i.state), i.due, _RAG_ORDER.get(i.rag, 3), i.request_ref)
    )
    return items


def warn_outside_chain(store: EventStore) -> None:
    """Log a warning (stderr, for the commands) when the events table holds rows outside the
    chain: the open requests are read without them, as every reader reads the log."""
    from mash_requests.audit.query import outside_chain_warning

    warning = outside_chain_warning(store)
    if warning is not None:
        log.warning(warning[0].upper() + warning[1:])


def _item(
    request: OpenRequest,
    timescales: Timescales,
    now: datetime,
    horizon: datetime,
    names: dict[str, str],
) -> OverdueRequest | None:
    if request.outcome != "sent" and not request.bounced:
        return None
    try:
        rag = Rag(request.rag or "")
    except ValueError:
        log.debug("request %s has no RAG rating in the log; not listed", request.request_ref)
        return None
    if request.due:
        due = datetime.fromisoformat(request.due)
        due = (due if due.tzinfo else due.replace(tzinfo=UTC)).astimezone(timescales.timezone)
    else:
        # Logs written before the due time was recorded: today's timescales from prepared.
        due = timescales.due(rag, datetime.fromisoformat(request.prepared_at))
    if request.bounced:
        state = "bounced"
    elif due <= now:
        state = "overdue"
    elif due <= horizon:
        state = "due_soon"
    else:
        return None
    working = rag in timescales.working_hours
    # Elapsed hours in UTC: two times of the same zone subtract on the wall clock, an hour
    # out across a clock change.
    elapsed = (now.astimezone(UTC) - due.astimezone(UTC)).total_seconds() / 3600
    late = (
        working_hours_between(due, now, timescales) if due <= now
        else -working_hours_between(now, due, timescales)
    ) if working else elapsed  # fmt: skip
    partner = request.partner or "-"
    return OverdueRequest(
        request_ref=request.request_ref,
        case_ref=request.case_ref,
        partner=partner,
        partner_name=names.get(partner, partner),
        rag=str(rag),
        due=due,
        state=state,
        hours_late=round(late, 1),
        hours_basis="working" if working else "elapsed",
        chasers=request.chasers,
        bounced=request.bounced,
        bounce_status=request.bounce_status,
        sent_at=datetime.fromisoformat(request.sent_at) if request.sent_at else None,
        message_id=request.message_id,
    )


def working_hours_between(start: datetime, end: datetime, timescales: Timescales) -> float:
    """Hours of working time from ``start`` to ``end`` (0 when ``end`` is not later).

    Working time is what :meth:`Timescales.due` counts: ``day_start`` to ``day_end`` on
    ``working_days`` that are neither bank holidays of the region nor local ``holidays``, in
    ``timezone``.
    """
    if end <= start:
        return 0.0
    zone = timescales.timezone
    start, end = start.astimezone(zone), end.astimezone(zone)
    total = 0.0
    day: date = start.date()
    # Bounded like the deadline: a gap of decades still ends.
    for _ in range(366 * 40):
        if day > end.date():
            break
        if day.weekday() in timescales.working_days and not timescales.is_holiday(day):
            opens = datetime.combine(day, timescales.day_start, zone)
            closes = datetime.combine(day, timescales.day_end, zone)
            lo, hi = max(opens, start), min(closes, end)
            if hi > lo:
                total += (hi - lo).total_seconds()
        day += timedelta(days=1)
    return total / 3600


# -- writing ---------------------------------------------------------------------------------

_COLUMNS: tuple[tuple[str, str], ...] = (
    ("state", "STATE"),
    ("partner", "PARTNER"),
    ("case_ref", "CASE"),
    ("request_ref", "REQUEST REF"),
    ("rag", "RAG"),
    ("due", "DUE"),
    ("late", "LATE"),
    ("chasers", "CHASERS"),
    ("bounced", "BOUNCED"),
)


def describe_lateness(item: OverdueRequest) -> str:
    """ "3.5 working h late", "due in 2.0 h" — for people."""
    unit = "working h" if item.hours_basis == "working" else "h"
    if item.hours_late >= 0:
        return f"{item.hours_late:.1f} {unit} late"
    return f"due in {-item.hours_late:.1f} {unit}"


def write_overdue(
    items: Iterable[OverdueRequest],
    out: TextIO,
    *,
    output_format: str = "table",
    bom: bool = False,
) -> None:
    """Write the list as a table (people), CSV (spreadsheets) or JSON Lines (scripts).

    CSV is written as ``audit query`` writes it (:func:`mash_requests.audit.export.write_csv`):
    CRLF line ends, so give ``out`` opened with ``newline=""``; ``bom`` (CSV only) starts it
    with a UTF-8 byte-order mark for Excel. Its cells are the ``jsonl`` fields (times in ISO
    8601 with their offset), with ``yes``/``no`` for ``bounced``.
    """
    from mash_requests.audit.export import write_csv

    if bom and output_format != "csv":
        raise ValueError(f"a byte-order mark is for CSV output, not {output_format}")
    rows = list(items)
    if output_format == "jsonl":
        for item in rows:
            out.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
    elif output_format == "csv":
        fields = list(OverdueRequest.__dataclass_fields__)
        write_csv((item.to_json() for item in rows), out, fieldnames=fields, bom=bom)
    elif output_format == "table":
        _write_table(rows, out)
    else:
        raise ValueError(
            f"output format must be one of {', '.join(FORMATS)}; got {output_format!r}"
        )


def _write_table(rows: list[OverdueRequest], out: TextIO) -> None:
    cells: Callable[[OverdueRequest], list[str]] = lambda item: [  # noqa: E731
        item.state,
        item.partner,
        item.case_ref,
        item.request_ref,
        item.rag.upper(),
        item.due.strftime("%Y-%m-%d %H:%M"),
        describe_lateness(item),
        str(item.chasers),
        (f"yes ({item.bounce_status})" if item.bounce_status else "yes") if item.bounced else "no",
    ]
    table = [[heading for _, heading in _COLUMNS], *(cells(item) for item in rows)]
    # Columns fit their content: references are never cut.
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
    for row in table:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
    counts = {state: sum(1 for r in rows if r.state == state) for state in STATES}
    summary = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n)
    out.write(
        f"({len(rows)} request{'s' if len(rows) != 1 else ''}"
        + (f": {summary})\n" if rows else ")\n")
    )
