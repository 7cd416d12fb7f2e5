"""Response deadlines from the RAG rating, in elapsed or working hours.

Areas set their own timescales (Surrey Police MASH: red 4 working hours, amber 24 working
hours, green 72 hours; Merton: 2 h, 6 h, 24 h), so every number is configuration. A rating
counted in *working* hours only advances inside the working day on working days that are
not holidays; red is usually worked to completion out of hours, i.e. counted elapsed.

Holidays are the region's bank holidays, from the maintained ``holidays`` package (England
and Wales by default, substitute days included: Boxing Day 2026 falls on a Saturday, so
Monday 28 December is the holiday), plus the local closures the config lists.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
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
    holidays: frozenset[date]  # local closures, beside the region's bank holidays
    timezone: ZoneInfo
    #: UK bank holiday region (ENG, WLS, SCT, NIR), or None for no bank holidays.
    holidays_region: str | None = "ENG"

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
            holidays_region="ENG",
        )

    def is_holiday(self, day: date) -> bool:
        """Whether ``day`` is a bank holiday in the region or a configured local closure."""
        if day in self.holidays:
            return True
        return self.holidays_region is not None and day in bank_holidays(
            self.holidays_region, day.year
        )

    def describe(self, rag: Rag) -> str:
        """The rating's timescale as people say it: ``24 working hours``, ``4 hours``."""
        return describe_hours(self.hours[rag], working=rag in self.working_hours)

    def due(self, rag: Rag, sent_at: datetime) -> datetime:
        """When a request sent at ``sent_at`` (timezone-aware) must be answered, local time."""
        local = sent_at.astimezone(self.timezone)
        span = timedelta(hours=self.hours[rag])
        if rag not in self.working_hours:
            # Add in UTC so a clock change inside the window does not bend it.
            return (sent_at + span).astimezone(self.timezone)
        return _add_working(
            local, span, self.day_start, self.day_end, self.working_days, self.is_holiday
        )


@functools.cache
def bank_holidays(region: str, year: int) -> frozenset[date]:
    """The bank holidays of a UK region (ENG, WLS, SCT, NIR) in one year, substitutes included.

    From the ``holidays`` package. Importing it takes a tenth of a second (it loads every
    country's rules), so the dates are also kept in a small per-user cache file, keyed by
    the package's version: a new version (new announcements) is computed afresh. The cache
    is only a speed-up: if it cannot be read or written, the dates are computed.
    """
    cache = _HolidayCache.load()
    dates = cache.get(region, year)
    if dates is None:
        import holidays

        dates = frozenset(holidays.country_holidays("GB", subdiv=region, years=year))
        cache.put(region, year, dates)
    return dates


class _HolidayCache:
    """``{"version": "<holidays version>", "ENG/2026": ["2026-01-01", …], …}`` in one file."""

    def __init__(self, path: Path | None, version: str | None, entries: dict[str, Any]) -> None:
        self.path = path
        self.version = version
        self.entries = entries

    @classmethod
    def load(cls) -> _HolidayCache:
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed: str | None = version("holidays")
        except PackageNotFoundError:  # pragma: no cover - a dependency; nothing to key by
            installed = None
        path = _cache_path()
        entries: dict[str, Any] = {}
        if path is not None and installed is not None:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("version") == installed:
                    entries = data
            except (OSError, ValueError):
                pass
        return cls(path, installed, entries)

    def get(self, region: str, year: int) -> frozenset[date] | None:
        found = self.entries.get(f"{region}/{year}")
        if not isinstance(found, list):
            return None
        try:
            return frozenset(date.fromisoformat(text) for text in found)
        except (TypeError, ValueError):
            return None

    def put(self, region: str, year: int, dates: frozenset[date]) -> None:
        if self.path is None or self.version is None:
            return
        self.entries["version"] = self.version
        self.entries[f"{region}/{year}"] = sorted(day.isoformat() for day in dates)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.entries, handle)
            os.replace(temporary, self.path)  # whole or not at all, for concurrent runs
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def _cache_path() -> Path | None:
    """``$MASH_CACHE_DIR``, else the user's cache folder (``%LOCALAPPDATA%`` on Windows)."""
    explicit = os.environ.get("MASH_CACHE_DIR")
    if explicit:
        return Path(explicit) / "bank-holidays.json"
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    if not base or base.startswith("~"):
        return None
    return Path(base) / "mash-requests" / "bank-holidays.json"


def describe_hours(hours: float, *, working: bool = False) -> str:
    """``4 hours``, ``1 hour``, ``2.5 hours``, ``30 minutes``; ``working`` adds the word."""
    kind = "working " if working else ""
    if hours < 1 and float(hours * 60).is_integer():
        minutes = int(hours * 60)
        return f"{minutes} {kind}minute{'s' if minutes != 1 else ''}"
    number = f"{hours:g}"
    return f"{number} {kind}hour{'s' if number != '1' else ''}"


def _add_working(
    start: datetime,
    span: timedelta,
    day_start: time,
    day_end: time,
    working_days: frozenset[int],
    is_holiday: Callable[[date], bool],
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
        if day.weekday() in working_days and current < closes and not is_holiday(day):
            current = max(current, opens)
            available = closes - current
            if remaining <= available:
                return current + remaining
            remaining -= available
        current = datetime.combine(day + timedelta(days=1), day_start, tz)
    raise ValueError("no working time found within twenty years; check the working days")
