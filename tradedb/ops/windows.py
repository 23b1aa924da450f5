"""Maintenance windows: when production may be migrated, and whether a run should start now.

Why a module of pure functions: the Dagster schedule, the in-run gate, the data-migration deadline and the CLI must
all agree on "is this inside a window, and until when", so they all ask the same functions with an explicit ``now``
(frozen clocks in tests, ``--now`` on the CLI). Every datetime going in or out is timezone-aware UTC; wall-clock
times exist only inside the config and in the strings shown to operators.

Config (``windows.toml`` at the project root, or the file named by ``TRADEDB_WINDOWS``), one table per environment::

    [production]
    timezone = "America/New_York"   # IANA name; slot times are wall-clock times there
    margin_minutes = 15             # runs must finish this long before a window ends; no launch in the last N
                                    # (0 to 1440; the exchange buffers too, min_minutes up to 14 days)
    require_rehearsal = false       # true: the schedule skips when no rehearsal estimate exists
    slots = [ { days = ["sat"], start = "02:00", end = "06:00" } ]   # optional "name"; end "24:00" allowed
    exchange_closed = { calendar = "XNYS", min_minutes = 60, after_close_minutes = 0, before_open_minutes = 0 }

    [staging]
    always = true

An environment without a table is always open (dev, staging); ``production`` must have one, so a missing file or
table can never silently mean "production may migrate at any time".

Semantics worth knowing:

- A slot's ``days`` name the day it *starts*; ``start = "22:00", end = "02:00"`` crosses midnight.
- Daylight saving: a wall time that does not exist (spring forward, e.g. 02:30 on 2026-03-08 in New York) is read
  as the instant the clocks jump (03:00 EDT), so such a night's window is shorter, never longer; a wall time that
  exists twice (fall back) means its first occurrence. A slot that lies wholly inside the skipped hour vanishes.
- ``exchange_closed`` adds every gap between one trading session's close and the next one's open (nights,
  weekends, holidays, the afternoon after an early close, and lunch breaks on exchanges that have them), shrunk by
  ``after_close_minutes`` / ``before_open_minutes`` (extended-hours trading) and kept when at least ``min_minutes``
  long.
- Windows that overlap or touch (a slot inside a closed weekend) merge into one, whose source names both.
- The margin belongs to the merged window: its *deadline* is ``end - margin``; "inside a window" means
  ``start <= now < deadline``.
"""

from __future__ import annotations

import functools
import os
import tomllib
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tradedb.core.errors import TradeDBError
from tradedb.core.paths import project_root
from tradedb.core.settings import ENVIRONMENTS

WINDOWS_FILE = "windows.toml"
WINDOWS_VARIABLE = "TRADEDB_WINDOWS"
GATED_ENVIRONMENT = "production"  # the one environment that must declare its windows
DEFAULT_MARGIN_MINUTES = 15
MINUTES_PER_DAY = 24 * 60
# Upper bounds of the minute settings, checked on load. A margin (or an exchange buffer) of a whole day already
# swallows every nightly window, so anything longer is a typo; unbounded, a huge one overflowed datetime arithmetic
# deep inside the window search instead of naming the key.
MAX_MARGIN_MINUTES = MINUTES_PER_DAY
MAX_BUFFER_MINUTES = MINUTES_PER_DAY  # after_close_minutes, before_open_minutes
# No exchange stays closed for two weeks (the longest closures in exchange_calendars, Tokyo's 2019 Golden Week and
# Seoul's 2017 Chuseok, last under 11 days): a longer min_minutes could never be met, so it can only be a typo.
MAX_MIN_CLOSURE_MINUTES = 14 * MINUTES_PER_DAY

# Windows are computed over the asked range widened by this much on each side, so a window overlapping the range
# is seen whole even when it merges with neighbours (a closed weekend plus slots) that start before the range.
MERGE_PAD = timedelta(days=8)
# How far ``next_window`` and the "long enough" search look ahead before giving up.
SEARCH_HORIZON = timedelta(days=366)
FIT_SEARCH_HORIZON = timedelta(days=62)
SEARCH_STEP = timedelta(days=14)
ERROR_DETAIL_CHARS = 160  # exchange_calendars errors can list hundreds of dates

FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)

DAY_NAMES: dict[str, int] = {
    **{d: i for i, d in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
    **{
        d: i
        for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
    },
}
DAY_ABBREVIATIONS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

SECTION_KEYS = {"timezone", "margin_minutes", "slots", "exchange_closed", "always", "require_rehearsal"}
SLOT_KEYS = {"days", "start", "end", "name"}
EXCHANGE_KEYS = {"calendar", "min_minutes", "after_close_minutes", "before_open_minutes"}


# ----------------------------------------------------------------------------------------------- data types


@dataclass(frozen=True, order=True)
class Window:
    """One maintenance window in UTC. ``deadline`` (end minus the policy's margin) is when runs must be done."""

    start: datetime
    end: datetime
    source: str = field(compare=False)
    margin: timedelta = field(default=timedelta(0), compare=False)

    @property
    def open_ended(self) -> bool:
        """True for an always-open environment's window, which has no end and so no deadline."""
        return self.end >= FAR_FUTURE

    @property
    def deadline(self) -> datetime | None:
        """When runs launched in this window must stop (None: never, the environment is always open)."""
        return None if self.open_ended else self.end - self.margin

    @property
    def usable(self) -> timedelta:
        """Time from the start to the deadline: how long a run may take in this window."""
        return (self.deadline or FAR_FUTURE) - self.start

    def contains(self, now: datetime) -> bool:
        """Whether a run may start at ``now``: inside the window and before its deadline."""
        return self.start <= now < (self.deadline or FAR_FUTURE)

    def left(self, now: datetime) -> timedelta:
        """Time from ``now`` to the deadline (negative once past it)."""
        return (self.deadline or FAR_FUTURE) - now


@dataclass(frozen=True)
class Slot:
    """A weekly wall-clock slot. Minutes count from local midnight of a day in ``days``; ``end`` may be 1440."""

    days: frozenset[int]
    start_minute: int
    end_minute: int
    name: str

    @property
    def crosses_midnight(self) -> bool:
        return self.end_minute <= self.start_minute


@dataclass(frozen=True)
class ExchangeClosed:
    """The "while the exchange is closed" rule: gaps between sessions of an exchange_calendars calendar."""

    calendar: str
    min_minutes: int = 0
    after_close_minutes: int = 0
    before_open_minutes: int = 0


@dataclass(frozen=True)
class WindowPolicy:
    """An environment's windows: either always open, or weekly slots and/or exchange closures in a timezone."""

    environment: str
    timezone: str = "UTC"
    margin: timedelta = timedelta(minutes=DEFAULT_MARGIN_MINUTES)
    slots: tuple[Slot, ...] = ()
    exchange_closed: ExchangeClosed | None = None
    always: bool = False
    require_rehearsal: bool = False
    source_file: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def describe(self) -> str:
        """One line for operators: where the policy came from and what it is."""
        if self.always:
            origin = (
                f"[{self.environment}] in {self.source_file}" if self.source_file else "no windows configured"
            )
            return f"{self.environment} is always open ({origin})"
        return f"{self.timezone}, margin {format_duration(self.margin)}"

    def windows_between(self, a: datetime, b: datetime) -> list[Window]:
        """Merged windows overlapping ``[a, b)``, whole (not clipped to the range), oldest first."""
        a, b = _utc(a), _utc(b)
        if self.always:
            return [Window(FAR_PAST, FAR_FUTURE, "always open", timedelta(0))]
        lo, hi = a - MERGE_PAD, b + MERGE_PAD
        raw = list(_slot_intervals(self.slots, self.tz, lo, hi))
        if self.exchange_closed is not None:
            raw.extend(_exchange_intervals(self.exchange_closed, lo, hi))
        merged = _merge(raw)
        return [
            Window(start, end, source, self.margin)
            for start, end, source in merged
            if end > a and start < b and end - self.margin > start
        ]

    def raw_window_at(self, now: datetime) -> Window | None:
        """The window containing ``now`` ignoring the margin (to explain "too close to the end")."""
        now = _utc(now)
        return next(
            (w for w in self.windows_between(now, now + timedelta(seconds=1)) if w.start <= now < w.end), None
        )

    def window_at(self, now: datetime) -> Window | None:
        """The window a run may start in at ``now`` (``start <= now < deadline``), else None."""
        window = self.raw_window_at(now)
        return window if window is not None and window.contains(_utc(now)) else None

    def upcoming(self, now: datetime, count: int = 1, *, horizon: timedelta = SEARCH_HORIZON) -> list[Window]:
        """The current window (if a run may still start in it) and the next ones, up to ``count`` in all."""
        now = _utc(now)
        if self.always:
            return [Window(now, FAR_FUTURE, "always open", timedelta(0))]
        found: list[Window] = []
        cursor = now
        while len(found) < count and cursor < now + horizon:
            for w in self.windows_between(cursor, cursor + SEARCH_STEP):
                usable_now = w.contains(now) or w.start > now
                if usable_now and (not found or w.start > found[-1].start):
                    found.append(w)
            cursor += SEARCH_STEP
        return found[:count]

    def next_window(self, now: datetime) -> Window:
        """The window a run may start in now, else the next one to open; an error when none opens within a year."""
        found = self.upcoming(now, 1)
        if not found:
            raise TradeDBError(
                f"no maintenance window for {self.environment} opens within {SEARCH_HORIZON.days} days "
                f"of {_utc(now):%Y-%m-%d %H:%M} UTC: check {self.source_file or WINDOWS_FILE}"
            )
        return found[0]


@dataclass(frozen=True)
class Decision:
    """What the schedule should do at ``now``: launch (with a deadline for data migrations) or skip, and why."""

    launch: bool
    reason: str
    window: Window | None
    deadline: datetime | None

    @property
    def run_key(self) -> str | None:
        """One launch per window: a stable Dagster run key from the window's start (None when always open)."""
        if not self.launch or self.window is None or self.window.open_ended:
            return None
        return f"window-{self.window.start:%Y%m%dT%H%MZ}"


@dataclass(frozen=True)
class GateResult:
    """The in-run gate's verdict; ``overridden`` runs carry the operator's reason for the audit record."""

    allowed: bool
    reason: str
    window: Window | None
    deadline: datetime | None
    overridden: bool = False
    override_reason: str | None = None


# ----------------------------------------------------------------------------------------------- decisions


def decide_launch(
    policy: WindowPolicy, now: datetime, *, pending_steps: int, estimated_seconds: float | None
) -> Decision:
    """Should the scheduled production deploy start at ``now``?

    Skips when nothing is pending, when outside a window (or in its last ``margin``), and when the rehearsed
    duration of the pending steps does not fit before the deadline. Without a rehearsal estimate it launches (and
    says so) unless the policy has ``require_rehearsal``: the deadline still stops data migrations cleanly and the
    in-run gate still refuses a start outside the window, while never deploying until someone rehearses would let
    production fall silently behind.
    """
    now = _utc(now)
    if pending_steps <= 0:
        return Decision(False, "nothing pending", policy.window_at(now), None)
    window = policy.window_at(now)
    if policy.always and window is not None:
        return Decision(
            True,
            f"{policy.environment} has no maintenance windows: launching {_steps(pending_steps)}",
            window,
            None,
        )
    if window is None:
        return Decision(False, closed_reason(policy, now), _next_or_none(policy, now), None)
    deadline = window.deadline
    left = window.left(now)
    until = f"{format_local(deadline, policy.tz)} (margin {format_duration(policy.margin)})"
    if estimated_seconds is None:
        if policy.require_rehearsal:
            return Decision(
                False,
                f"no rehearsal estimate for {_steps(pending_steps)} and {policy.environment} requires one: "
                "rehearse on staging first",
                window,
                None,
            )
        return Decision(
            True,
            f"launching {_steps(pending_steps)} without a rehearsal estimate; {format_duration(left)} left, "
            f"data migrations stop at {until}",
            window,
            deadline,
        )
    estimate = timedelta(seconds=max(0.0, float(estimated_seconds)))
    if estimate > left:
        return Decision(
            False,
            f"the rehearsed duration {format_duration(estimate)} of {_steps(pending_steps)} does not fit in the "
            f"{format_duration(left)} left before {until}; {_long_enough(policy, now, estimate)}",
            window,
            None,
        )
    return Decision(
        True,
        f"launching {_steps(pending_steps)}: rehearsed {format_duration(estimate)}, {format_duration(left)} left "
        f"before {until}",
        window,
        deadline,
    )


def gate(
    env_name: str,
    now: datetime,
    *,
    override_reason: str | None = None,
    policies: Mapping[str, WindowPolicy] | None = None,
) -> GateResult:
    """The in-run check: may a run on ``env_name`` start at ``now``?

    Outside a window it is refused unless ``override_reason`` says why (a blank reason is refused too, so the
    audit trail always has one). Inside a window an override is not needed and is not recorded as one.
    """
    now = _utc(now)
    pol = (policies or {}).get(env_name) or policy(env_name)
    window = pol.window_at(now)
    if window is not None:
        if pol.always:
            return GateResult(True, pol.describe(), window, None)
        return GateResult(
            True,
            f"inside the {pol.environment} maintenance window ({window.source}); runs stop by "
            f"{format_local(window.deadline, pol.tz)}",
            window,
            window.deadline,
        )
    refused = closed_reason(pol, now)
    if override_reason is None:
        return GateResult(
            False,
            f"{pol.environment} run refused: {refused}; launch inside the window or override with a reason",
            _next_or_none(pol, now),
            None,
        )
    reason = override_reason.strip()
    if not reason:
        return GateResult(
            False,
            f"{pol.environment} run refused: an override of the maintenance window needs a non-empty reason",
            _next_or_none(pol, now),
            None,
        )
    return GateResult(
        True,
        f"{pol.environment} maintenance window overridden ({refused}): {reason}",
        None,
        None,
        overridden=True,
        override_reason=reason,
    )


def require_window(
    env_name: str,
    now: datetime | None = None,
    *,
    override_reason: str | None = None,
    policies: Mapping[str, WindowPolicy] | None = None,
) -> GateResult:
    """``gate`` that raises ``TradeDBError`` (one line, the refusal) instead of returning a refusal."""
    result = gate(env_name, now or datetime.now(UTC), override_reason=override_reason, policies=policies)
    if not result.allowed:
        raise TradeDBError(result.reason)
    return result


def closed_reason(pol: WindowPolicy, now: datetime) -> str:
    """Why no run may start at ``now``: outside every window, or inside one but within its final margin."""
    raw = pol.raw_window_at(now)
    nxt = _next_or_none(pol, now)
    opens = f"next opens at {format_local(nxt.start, pol.tz)}" if nxt else "no window opens within a year"
    if raw is not None:
        return (
            f"too close to the end of the maintenance window (it ends {format_local(raw.end, pol.tz)} and keeps its "
            f"last {format_duration(pol.margin)} free; {opens})"
        )
    return f"outside the maintenance window ({opens})"


def _next_or_none(pol: WindowPolicy, now: datetime) -> Window | None:
    found = pol.upcoming(now, 1)
    return found[0] if found else None


def _long_enough(pol: WindowPolicy, now: datetime, estimate: timedelta) -> str:
    """Name the next window whose usable length holds the estimate, so the operator knows when it will run."""
    cursor = now
    while cursor < now + FIT_SEARCH_HORIZON:
        for w in pol.windows_between(cursor, cursor + SEARCH_STEP):
            if w.start > now and w.usable >= estimate:
                return f"the next window long enough opens {format_local(w.start, pol.tz)}"
        cursor += SEARCH_STEP
    return f"no window in the next {FIT_SEARCH_HORIZON.days} days is long enough"


def _steps(n: int) -> str:
    return f"{n} pending step(s)"


# ----------------------------------------------------------------------------------------------- interval building


def _utc(moment: datetime) -> datetime:
    """Refuse naive datetimes (a silent local-time guess is how windows go wrong) and normalise to UTC."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: windows work with timezone-aware datetimes")
    return moment.astimezone(UTC)


def wall_to_utc(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """Map a wall-clock time (``minute`` after local midnight of ``day``, may be >= 1440) to UTC.

    Ambiguous times (fall back) take their first occurrence (fold=0). Times the clocks skip (spring forward) map to
    the instant of the jump: zoneinfo would otherwise read 02:30 as 03:30, making a window end later than written.
    """
    day = day + timedelta(days=minute // MINUTES_PER_DAY)
    naive = datetime.combine(day, time(minute % MINUTES_PER_DAY // 60, minute % 60))
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


def _slot_intervals(
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
            end_minute = slot.end_minute + (MINUTES_PER_DAY if slot.crosses_midnight else 0)
            start, end = wall_to_utc(day, slot.start_minute, tz), wall_to_utc(day, end_minute, tz)
            if end > start and end > lo and start < hi:
                yield start, end, slot.name
        day += timedelta(days=1)


def _merge(intervals: Iterable[tuple[datetime, datetime, str]]) -> list[tuple[datetime, datetime, str]]:
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


def _exchange_intervals(
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


# ----------------------------------------------------------------------------------------------- formatting


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
    """``Sat 2026-11-28 02:00 EST``: the operator's wall clock, with the zone abbreviation to settle DST."""
    if moment is None:
        return "never"
    return moment.astimezone(tz).strftime("%a %Y-%m-%d %H:%M %Z")


def format_utc(moment: datetime | None) -> str:
    return "never" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# ----------------------------------------------------------------------------------------------- loading


def windows_path() -> Path:
    """``TRADEDB_WINDOWS`` or ``windows.toml`` at the project root."""
    return Path(os.environ.get(WINDOWS_VARIABLE) or project_root() / WINDOWS_FILE)


def load_policies(path: str | Path | None = None) -> dict[str, WindowPolicy]:
    """Read and validate the windows file: configured environments plus always-open ones for the rest.

    Production is left out when it has no table, so asking for it (``policy("production")``) is the error, not
    loading: dev tools that never touch production keep working with no file at all.
    """
    explicit = path is not None or bool(os.environ.get(WINDOWS_VARIABLE))
    file = Path(path) if path is not None else windows_path()
    if not file.exists():
        if explicit:
            raise TradeDBError(f"windows file {file} does not exist")
        data: dict[str, Any] = {}
    else:
        try:
            data = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise TradeDBError(f"malformed windows file {file}: {exc}") from None
    policies: dict[str, WindowPolicy] = {}
    for name, section in data.items():
        if name not in ENVIRONMENTS:
            _bad(file, name, f"unknown environment (choose from {', '.join(ENVIRONMENTS)})")
        if not isinstance(section, dict):
            _bad(file, name, "must be a table such as [production]")
        policies[name] = _parse_section(file, name, section)
    for name in ENVIRONMENTS:
        if name not in policies and name != GATED_ENVIRONMENT:
            policies[name] = WindowPolicy(name, always=True, margin=timedelta(0))
    return policies


def policy(env_name: str, path: str | Path | None = None) -> WindowPolicy:
    """The policy for one environment; production without a table is an error (never "always open" by accident)."""
    if env_name not in ENVIRONMENTS:
        raise TradeDBError(f"unknown environment {env_name!r}: choose one of {', '.join(ENVIRONMENTS)}")
    policies = load_policies(path)
    if env_name not in policies:
        file = Path(path) if path is not None else windows_path()
        raise TradeDBError(
            f"no maintenance windows for {env_name}: add a [{env_name}] table to {file} "
            "(slots, exchange_closed, or always = true)"
        )
    return policies[env_name]


def _bad(file: Path, key: str, message: str):
    raise TradeDBError(f"malformed windows file {file}: {key}: {message}")


def _known_keys(file: Path, where: str, raw: dict, allowed: set[str]) -> None:
    """A misspelt key is an error, not a silently ignored setting (``margin_minute = 30`` would mean no margin)."""
    for key in raw:
        if key not in allowed:
            _bad(file, f"{where}{key}", f"unknown key (expected one of {', '.join(sorted(allowed))})")


def _parse_section(file: Path, env: str, section: dict) -> WindowPolicy:
    _known_keys(file, f"[{env}] ", section, SECTION_KEYS)
    always = section.get("always", False)
    if not isinstance(always, bool):
        _bad(file, f"[{env}] always", "must be true or false")
    require_rehearsal = section.get("require_rehearsal", False)
    if not isinstance(require_rehearsal, bool):
        _bad(file, f"[{env}] require_rehearsal", "must be true or false")
    margin = _minutes(
        file,
        f"[{env}] margin_minutes",
        section.get("margin_minutes", 0 if always else DEFAULT_MARGIN_MINUTES),
        MAX_MARGIN_MINUTES,
    )
    has_rules = "slots" in section or "exchange_closed" in section
    if always and has_rules:
        _bad(file, f"[{env}] always", "always = true cannot be combined with slots or exchange_closed")
    if not always and not has_rules:
        _bad(file, f"[{env}]", "no windows: give slots, exchange_closed, or always = true")
    if always:
        return WindowPolicy(env, always=True, margin=timedelta(0), source_file=str(file))
    zone = section.get("timezone")
    if not isinstance(zone, str) or not zone:
        _bad(file, f"[{env}] timezone", 'required: an IANA timezone name such as "America/New_York"')
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        _bad(
            file,
            f"[{env}] timezone",
            f"unknown timezone {zone!r} (use an IANA name such as America/New_York)",
        )
    slots_raw = section.get("slots", [])
    if not isinstance(slots_raw, list):
        _bad(
            file,
            f"[{env}] slots",
            'must be a list of tables { days = [...], start = "HH:MM", end = "HH:MM" }',
        )
    slots = tuple(_parse_slot(file, f"[{env}] slots[{i}]", raw) for i, raw in enumerate(slots_raw))
    exchange = None
    if "exchange_closed" in section:
        exchange = _parse_exchange(file, f"[{env}] exchange_closed", section["exchange_closed"])
    if not slots and exchange is None:
        _bad(
            file,
            f"[{env}] slots",
            "is empty and there is no exchange_closed: the environment would never open",
        )
    return WindowPolicy(
        env,
        timezone=zone,
        margin=timedelta(minutes=margin),
        slots=slots,
        exchange_closed=exchange,
        require_rehearsal=require_rehearsal,
        source_file=str(file),
    )


def _parse_slot(file: Path, where: str, raw: Any) -> Slot:
    if not isinstance(raw, dict):
        _bad(file, where, 'must be a table { days = ["sat"], start = "02:00", end = "06:00" }')
    _known_keys(file, f"{where}.", raw, SLOT_KEYS)
    for key in ("days", "start", "end"):
        if key not in raw:
            _bad(file, f"{where}.{key}", "missing")
    days = raw["days"]
    if isinstance(days, str):
        days = [days]
    if not isinstance(days, list) or not days:
        _bad(file, f"{where}.days", 'must be a non-empty list of day names such as ["sat", "sun"]')
    numbers = set()
    for day in days:
        number = DAY_NAMES.get(day.strip().lower()) if isinstance(day, str) else None
        if number is None:
            _bad(file, f"{where}.days", f"unknown day {day!r} (use {', '.join(DAY_ABBREVIATIONS)})")
        numbers.add(number)
    start = _parse_minute(file, f"{where}.start", raw["start"], allow_24=False)
    end = _parse_minute(file, f"{where}.end", raw["end"], allow_24=True)
    if end == start:
        _bad(file, f"{where}.end", f"equals start ({raw['start']}): a slot must have a length")
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        _bad(file, f"{where}.name", "must be a non-empty string")
    days_text = "/".join(DAY_ABBREVIATIONS[d] for d in sorted(numbers))
    label = name.strip() if name else f"slot {days_text} {_hhmm(start)}-{_hhmm(end)}"
    return Slot(frozenset(numbers), start, end, label)


def _parse_minute(file: Path, where: str, raw: Any, *, allow_24: bool) -> int:
    """``"HH:MM"`` (or a TOML local time) as minutes after midnight; ``"24:00"`` only for an end."""
    if isinstance(raw, time):
        return raw.hour * 60 + raw.minute
    text = raw.strip() if isinstance(raw, str) else ""
    parts = text.split(":")
    if len(parts) == 2 and all(p.isdigit() and len(p) == 2 for p in parts):
        hours, minutes = int(parts[0]), int(parts[1])
        if (hours < 24 and minutes < 60) or (allow_24 and hours == 24 and minutes == 0):
            return hours * 60 + minutes
    hint = "00:00 to 24:00" if allow_24 else "00:00 to 23:59"
    _bad(file, where, f"bad time {raw!r} (use HH:MM, {hint})")
    raise AssertionError  # unreachable: _bad raises


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _parse_exchange(file: Path, where: str, raw: Any) -> ExchangeClosed:
    if not isinstance(raw, dict):
        _bad(file, where, 'must be a table { calendar = "XNYS", min_minutes = 60 }')
    _known_keys(file, f"{where}.", raw, EXCHANGE_KEYS)
    name = raw.get("calendar")
    if not isinstance(name, str) or not name.strip():
        _bad(file, f"{where}.calendar", 'required: an exchange_calendars name such as "XNYS"')
    name = name.strip()
    import exchange_calendars as xc

    if name not in xc.get_calendar_names(include_aliases=True):
        _bad(file, f"{where}.calendar", f"unknown exchange calendar {name!r} (e.g. XNYS, XLON, XTKS)")
    limits = {
        "min_minutes": MAX_MIN_CLOSURE_MINUTES,
        "after_close_minutes": MAX_BUFFER_MINUTES,
        "before_open_minutes": MAX_BUFFER_MINUTES,
    }
    numbers = {key: _minutes(file, f"{where}.{key}", raw.get(key, 0), limit) for key, limit in limits.items()}
    return ExchangeClosed(name, **numbers)


def _minutes(file: Path, where: str, value: Any, maximum: int) -> int:
    """A whole number of minutes from 0 to ``maximum``, else the file's one-line error naming the key."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _bad(file, where, f"must be a whole number of minutes >= 0, not {value!r}")
    if value > maximum:
        _bad(
            file,
            where,
            f"must be at most {maximum} minutes ({format_duration(timedelta(minutes=maximum))}), not {value!r}",
        )
    return value
