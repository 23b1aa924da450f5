"""Building windows from the rules: weekly wall-clock slots and exchange closures, in UTC, merged.

Pure functions of the rules and a UTC range. Daylight saving: a wall time that does not exist (spring forward)
is read as the instant the clocks jump, so such a night's window is shorter, never longer; a wall time that
exists twice (fall back) means its first occurrence. Exchange closures come from ``exchange_calendars``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tradedb.core.errors import TradeDBError

MINUTES_PER_DAY = 24 * 60

SECONDS_PER_DAY = MINUTES_PER_DAY * 60

# Windows are computed over the asked range widened by this much on each side, so a window overlapping the range
# is seen whole even when it merges with neighbours (a closed weekend plus slots) that start before the range.
MERGE_PAD = timedelta(days=8)

ERROR_DETAIL_CHARS = 160  # exchange_calendars errors can list hundreds of dates

FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)

FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class Slot:
    """A weekly wall-clock slot. Seconds count from local midnight of a day in ``days``; ``end`` may be 86400.

    Seconds, not minutes: a window that closes a few seconds into a run is how the deadline stop is tested, and an
    operator may want one to end at ``05:59:30``; files written with ``HH:MM`` mean the same as before.
    """

    days: frozenset[int]
    start_second: int
    end_second: int
    name: str

    @property
    def crosses_midnight(self) -> bool:
        return self.end_second <= self.start_second


@dataclass(frozen=True)
class ExchangeClosed:
    """The "while the exchange is closed" rule: gaps between sessions of an exchange_calendars calendar."""

    calendar: str
    min_minutes: int = 0
    after_close_minutes: int = 0
    before_open_minutes: int = 0


def utc(moment: datetime) -> datetime:
    """Refuse naive datetimes (a silent local-time guess is how windows go wrong) and normalise to UTC."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: windows work with timezone-aware datetimes")
    return moment.astimezone(UTC)


def wall_to_utc(day: date, second: int, tz: ZoneInfo) -> datetime:
    """Map a wall-clock time (``second`` after local midnight of ``day``, may be >= 86400) to UTC.

    Ambiguous times (fall back) take their first occurrence (fold=0). Times the clocks skip (spring forward) map to
    the instant of the jump: zoneinfo would otherwise read 02:30 as 03:30, making a window end later than written.
    """
    day = day + timedelta(days=second // SECONDS_PER_DAY)
    of_day = second % SECONDS_PER_DAY
    naive = datetime.combine(day, time(of_day // 3600, of_day // 60 % 60, of_day % 60))
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    return _offset_change(min(first, second), max(first, second), tz)


def _offset_change(lo: datetime, hi: datetime, tz: ZoneInfo) -> datetime:
    """The first second in ``(lo, hi]`` at which ``tz``'s UTC offset differs from the one at ``lo``."""
    before = lo.astimezone(tz).utcoffset()
    lo_s, hi_s = 0, int((hi - lo).total_seconds())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if (lo + timedelta(seconds=mid)).astimezone(tz).utcoffset() == before:
            lo_s = mid
        else:
            hi_s = mid
    return lo + timedelta(seconds=hi_s)


def slot_intervals(
    slots: Iterable[Slot], tz: ZoneInfo, lo: datetime, hi: datetime
) -> Iterable[tuple[datetime, datetime, str]]:
    """Every occurrence of every slot that overlaps ``[lo, hi)``, in UTC."""
    first = lo.astimezone(tz).date() - timedelta(days=1)
    last = hi.astimezone(tz).date() + timedelta(days=1)
    day = first
    while day <= last:
        for slot in slots:
            if day.weekday() not in slot.days:
                continue
            end_second = slot.end_second + (SECONDS_PER_DAY if slot.crosses_midnight else 0)
            start, end = wall_to_utc(day, slot.start_second, tz), wall_to_utc(day, end_second, tz)
            if end > start and end > lo and start < hi:
                yield start, end, slot.name
        day += timedelta(days=1)


def merge(intervals: Iterable[tuple[datetime, datetime, str]]) -> list[tuple[datetime, datetime, str]]:
    """Merge overlapping or touching intervals; the merged source lists each contributing source once."""
    merged: list[tuple[datetime, datetime, list[str]]] = []
    for start, end, source in sorted(intervals, key=lambda i: (i[0], i[1])):
        if merged and start <= merged[-1][1]:
            last_start, last_end, sources = merged[-1]
            if source not in sources:
                sources.append(source)
            merged[-1] = (last_start, max(last_end, end), sources)
        else:
            merged.append((start, end, [source]))
    return [(s, e, " + ".join(src)) for s, e, src in merged]


def exchange_intervals(
    rule: ExchangeClosed, lo: datetime, hi: datetime
) -> Iterable[tuple[datetime, datetime, str]]:
    """The exchange's closures overlapping ``[lo, hi)``, shrunk by the buffers and filtered by length."""
    after = timedelta(minutes=rule.after_close_minutes)
    before = timedelta(minutes=rule.before_open_minutes)
    shortest = timedelta(minutes=rule.min_minutes)
    for close, reopen, detail in exchange_closures(rule.calendar, lo.year, hi.year):
        start, end = close + after, reopen - before
        if end - start >= shortest and end > start and end > lo and start < hi:
            yield start, end, f"{rule.calendar} closed ({detail})"


@functools.lru_cache(maxsize=8)
def _calendar(name: str, first_year: int, last_year: int):
    """Build (slow: about 0.1 s plus the import) and keep an exchange calendar bounded to the years asked for."""
    import exchange_calendars as xc
    import pandas as pd

    # exchange_calendars 4.13 trips a pandas 3.1 deprecation while building; it is theirs, not the operator's.
    noise = getattr(pd.errors, "Pandas4Warning", FutureWarning)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=noise)
            return xc.get_calendar(name, start=f"{first_year - 1}-12-01", end=f"{last_year + 1}-01-31")
    except xc.errors.InvalidCalendarName:
        raise TradeDBError(f"unknown exchange calendar {name!r}") from None
    except ValueError as exc:  # out of the calendar's bounds, or a calendar that fails to build
        detail = str(exc).splitlines()[0][:ERROR_DETAIL_CHARS] if str(exc) else type(exc).__name__
        raise TradeDBError(
            f"exchange calendar {name} cannot be built for {first_year}-{last_year}: {detail}"
        ) from None


@functools.lru_cache(maxsize=8)
def exchange_closures(
    name: str, first_year: int, last_year: int
) -> tuple[tuple[datetime, datetime, str], ...]:
    """Every gap in trading of calendar ``name`` during the years, as (close, reopen, why) in UTC."""
    cal = _calendar(name, first_year, last_year)
    schedule = cal.schedule
    early = {ts.date() for ts in cal.early_closes}
    holiday_names = _holiday_names(cal)
    has_breaks = "break_start" in schedule.columns
    weekmask = str(getattr(cal, "weekmask", "1111100"))
    rows = list(schedule.itertuples())
    gaps: list[tuple[datetime, datetime, str]] = []
    for i, row in enumerate(rows):
        session = row.Index.date()
        if has_breaks and _present(row.break_start) and _present(row.break_end):
            gaps.append((row.break_start.to_pydatetime(), row.break_end.to_pydatetime(), "lunch break"))
        if i + 1 == len(rows):
            break
        following = rows[i + 1].Index.date()
        gaps.append(
            (
                row.close.to_pydatetime(),
                rows[i + 1].open.to_pydatetime(),
                _closure_detail(session, following, session in early, holiday_names, weekmask),
            )
        )
    return tuple((s.astimezone(UTC), e.astimezone(UTC), why) for s, e, why in gaps)


def _present(value: Any) -> bool:
    import pandas as pd

    return not pd.isna(value)


def _holiday_names(cal) -> dict[date, str]:
    """Regular holidays by date with their names (some calendars have none; then holidays are just dates)."""
    rules = getattr(cal, "regular_holidays", None)
    if rules is None:
        return {}
    try:
        named = rules.holidays(cal.first_session, cal.last_session, return_name=True)
    except (TypeError, ValueError, AttributeError):
        return {}
    return {ts.date(): str(name) for ts, name in named.items()}


def _closure_detail(
    session: date, following: date, early_close: bool, names: dict[date, str], weekmask: str
) -> str:
    """Why the exchange is closed between two sessions: night, weekend, holiday(s), after an early close.

    ``weekmask`` is the calendar's ("1111100": Monday to Friday), so a skipped trading weekday is a holiday.
    """
    skipped = [session + timedelta(days=d) for d in range(1, (following - session).days)]
    holidays = [d for d in skipped if weekmask[d.weekday()] == "1"]
    parts: list[str] = []
    if early_close:
        parts.append(f"early close {session:%a %Y-%m-%d}")
    for d in holidays:
        parts.append(f"holiday {d:%a %Y-%m-%d}" + (f" {names[d]}" if d in names else ""))
    if any(weekmask[d.weekday()] != "1" for d in skipped):
        parts.append("weekend")
    return ", ".join(parts) or "overnight"
