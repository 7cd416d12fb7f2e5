"""Response deadlines from the RAG rating, in elapsed or working hours.

Areas set their own timescales (Surrey Police MASH: red 4 working hours, amber 24 working
hours, green 72 hours; Merton: 2 h, 6 h, 24 h), so every number is configuration. A rating
counted in *working* hours only advances inside the working day on working days that are
not holidays; red is usually worked to completion out of hours, i.e. counted elapsed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mash_requests.case import Rag


@dataclass(frozen=True)
class Timescales:
    """Hours each RAG rating gives a partner to answer, and how they are counted."""

    hours: Mapping[Rag, float]
    working_hours: frozenset[Rag]
    day_start: time
    day_end: time
    working_days: frozenset[int]  # Monday = 0
    holidays: frozenset[date]
    timezone: ZoneInfo

    @classmethod
    def defaults(cls) -> Timescales:
        return cls(
            hours={Rag.RED: 4, Rag.AMBER: 24, Rag.GREEN: 72},
            working_hours=frozenset(),
            day_start=time(9, 0),
            day_end=time(17, 0),
            working_days=frozenset(range(5)),
            holidays=frozenset(),
            timezone=ZoneInfo("Europe/London"),
        )

    def due(self, rag: Rag, sent_at: datetime) -> datetime:
        """When a request sent at ``sent_at`` (timezone-aware) must be answered, local time."""
        local = sent_at.astimezone(self.timezone)
        span = timedelta(hours=self.hours[rag])
        if rag not in self.working_hours:
            # Add in UTC so a clock change inside the window does not bend it.
            return (sent_at + span).astimezone(self.timezone)
        return _add_working(
            local, span, self.day_start, self.day_end, self.working_days, self.holidays
        )


def _add_working(
    start: datetime,
    span: timedelta,
    day_start: time,
    day_end: time,
    working_days: Collection[int],
    holidays: Collection[date],
) -> datetime:
    """Advance ``start`` by ``span`` counted only inside working hours."""
    tz = start.tzinfo
    current = start
    remaining = span
    # Bounded: a span of years of working hours still ends; the guard catches a config
    # with no working days at all (already refused at load, kept as a belt and braces).
    for _ in range(366 * 20):
        day = current.date()
        opens = datetime.combine(day, day_start, tz)
        closes = datetime.combine(day, day_end, tz)
        if day.weekday() in working_days and day not in holidays and current < closes:
            current = max(current, opens)
            available = closes - current
            if remaining <= available:
                return current + remaining
            remaining -= available
        current = datetime.combine(day + timedelta(days=1), day_start, tz)
    raise ValueError("no working time found within twenty years; check the working days")
