"""Windows as operators read them: durations and local wall-clock times beside UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


def format_duration(span: timedelta) -> str:
    """``45s``, ``40m``, ``2h 05m``, ``3d 4h``: short enough for a skip reason."""
    seconds = int(span.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    if seconds < 60:
        return f"{sign}{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{sign}{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{sign}{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{sign}{days}d {hours}h"


def format_local(moment: datetime | None, tz: ZoneInfo) -> str:
    """``Sat 2026-11-28 02:00 EST``: the operator's wall clock, with the zone abbreviation to settle DST.

    Seconds are shown only for a moment that has them (a slot ending at ``05:59:30``), so whole minutes read as
    before.
    """
    if moment is None:
        return "never"
    return moment.astimezone(tz).strftime(f"%a %Y-%m-%d {_clock(moment)} %Z")


def format_utc(moment: datetime | None) -> str:
    return "never" if moment is None else moment.astimezone(UTC).strftime(f"%Y-%m-%d {_clock(moment)} UTC")


def _clock(moment: datetime) -> str:
    return "%H:%M:%S" if moment.second else "%H:%M"
