"""Response deadlines from the RAG rating, elapsed and in working hours."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mash_requests.case import Rag
from mash_requests.deadlines import Timescales, bank_holidays

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


@settings(deadline=None)  # the first example may import the holidays package
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


# -- bank holidays ---------------------------------------------------------------------------

BANK = replace(WORKING, hours={**WORKING.hours, Rag.AMBER: 8})  # one working day


def test_christmas_and_the_boxing_day_substitute_are_not_working_days() -> None:
    """Amber (8 working hours) sent Thursday 24 Dec 2026 17:00 skips 25 Dec and Monday 28 Dec."""
    due = BANK.due(Rag.AMBER, datetime(2026, 12, 24, 17, 0, tzinfo=UTC))
    assert (due.date(), due.hour) == (date(2026, 12, 29), 17)


def test_easter_monday_2027_is_not_a_working_day() -> None:
    """Sent on Maundy Thursday 2027 after hours, the working day is Tuesday 30 March."""
    due = BANK.due(Rag.AMBER, datetime(2027, 3, 25, 18, 0, tzinfo=UTC))
    assert due.date() == date(2027, 3, 30)


def test_regions_differ() -> None:
    """Scotland keeps 2 January (4 January 2027 in lieu); England does not."""
    scotland = replace(BANK, holidays_region="SCT")
    assert scotland.is_holiday(date(2027, 1, 4))
    assert not BANK.is_holiday(date(2027, 1, 4))
    assert BANK.is_holiday(date(2027, 1, 1)) and scotland.is_holiday(date(2027, 1, 1))


def test_no_region_means_only_local_closures() -> None:
    """With no region, only the configured closures are holidays."""
    local = replace(BANK, holidays_region=None, holidays=frozenset({date(2026, 12, 24)}))
    assert not local.is_holiday(date(2026, 12, 25))
    assert local.is_holiday(date(2026, 12, 24))
    assert BANK.is_holiday(date(2026, 12, 28))


def test_elapsed_ratings_ignore_holidays() -> None:
    """Red counts the clock on Christmas Day too."""
    sent = datetime(2026, 12, 25, 10, 0, tzinfo=UTC)
    assert BANK.due(Rag.RED, sent) == sent + timedelta(hours=4)


def test_config_reads_the_region_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    """[timescales] holidays_region takes ENG, WLS, SCT, NIR or none; anything else is an error."""
    from mash_requests.config import load_settings
    from mash_requests.errors import ConfigError

    config = tmp_path / "c.toml"
    config.write_text('[timescales]\nholidays_region = "NIR"\n')
    assert load_settings(config).timescales.holidays_region == "NIR"
    config.write_text('[timescales]\nholidays_region = "none"\n')
    assert load_settings(config).timescales.holidays_region is None
    config.write_text('[timescales]\nholidays_region = "GB"\n')
    with pytest.raises(ConfigError, match=r"holidays_region: expected one of ENG, WLS, SCT"):
        load_settings(config)


def test_timescale_descriptions() -> None:
    """describe() names working hours only for the ratings counted that way."""
    assert WORKING.describe(Rag.AMBER) == "24 working hours"
    assert WORKING.describe(Rag.RED) == "4 hours"


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty holiday cache folder, and no dates remembered in this process."""
    monkeypatch.setenv("MASH_CACHE_DIR", str(tmp_path))
    bank_holidays.cache_clear()
    yield tmp_path
    bank_holidays.cache_clear()


def test_bank_holidays_are_cached_on_disk_for_the_next_process(cache_dir: Path) -> None:
    """Dates computed once are written to the cache, keyed by the holidays package's version."""
    assert date(2027, 3, 29) in bank_holidays("ENG", 2027)
    cached = json.loads((cache_dir / "bank-holidays.json").read_text())
    assert cached["version"] == version("holidays")
    assert "2027-03-29" in cached["ENG/2027"]


def test_the_cache_is_read_when_its_version_matches(cache_dir: Path) -> None:
    """A cache of the installed version is used as it is (no recomputation)."""
    entries = {"version": version("holidays"), "ENG/2031": ["2031-06-17"]}
    (cache_dir / "bank-holidays.json").write_text(json.dumps(entries))
    assert bank_holidays("ENG", 2031) == frozenset({date(2031, 6, 17)})


@pytest.mark.parametrize("content", ['{"version": "0.1", "ENG/2031": ["2031-06-17"]}', "{broken"])
def test_a_stale_or_broken_cache_is_recomputed(cache_dir: Path, content: str) -> None:
    """A cache from another holidays version, or unreadable, is ignored and replaced."""
    (cache_dir / "bank-holidays.json").write_text(content)
    dates = bank_holidays("ENG", 2031)
    assert date(2031, 6, 17) not in dates and date(2031, 12, 25) in dates
    assert json.loads((cache_dir / "bank-holidays.json").read_text())["version"] != "0.1"
