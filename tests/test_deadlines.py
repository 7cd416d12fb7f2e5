"""Response deadlines from the RAG rating, elapsed and in working hours."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from mash_requests.case import Rag
from mash_requests.deadlines import Timescales

WORKING = replace(Timescales.defaults(), working_hours=frozenset({Rag.AMBER}))


def test_red_counts_elapsed_hours_by_default() -> None:
    """Red is 4 hours on the clock, night or weekend."""
    sent = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)  # a Saturday night
    assert Timescales.defaults().due(Rag.RED, sent) == sent + timedelta(hours=4)


def test_working_hours_skip_the_weekend() -> None:
    """Amber in working hours sent on Thursday 16:30 is due the next Tuesday 16:30."""
    sent = datetime(2026, 11, 26, 16, 30, tzinfo=UTC)
    due = WORKING.due(Rag.AMBER, sent)
    assert (due.date(), due.hour, due.minute) == (date(2026, 12, 1), 16, 30)


def test_working_hours_skip_holidays() -> None:
    """A configured holiday is not a working day."""
    timescales = replace(WORKING, holidays=frozenset({date(2026, 11, 27)}))
    due = timescales.due(Rag.AMBER, datetime(2026, 11, 26, 16, 30, tzinfo=UTC))
    assert due.date() == date(2026, 12, 2)


def test_sent_out_of_hours_starts_next_working_morning() -> None:
    """A request sent at night starts counting at 09:00 the next working day."""
    timescales = replace(WORKING, hours={**WORKING.hours, Rag.AMBER: 2})
    due = timescales.due(Rag.AMBER, datetime(2026, 11, 26, 23, 0, tzinfo=UTC))
    assert (due.date(), due.hour) == (date(2026, 11, 27), 11)


@given(
    start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2030, 1, 1)),
    hours=st.floats(min_value=0.25, max_value=200),
)
def test_working_deadline_never_earlier_than_elapsed(start: datetime, hours: float) -> None:
    """Counting only working hours can only make a deadline later, and it lands in hours."""
    sent = start.replace(tzinfo=UTC)
    timescales = replace(WORKING, hours={**WORKING.hours, Rag.AMBER: hours})
    due = timescales.due(Rag.AMBER, sent)
    assert due >= sent + timedelta(hours=hours) - timedelta(seconds=1)
    assert due.weekday() < 5
    assert timescales.day_start <= due.timetz().replace(tzinfo=None) <= timescales.day_end
