"""A window and an environment's policy: which windows exist, which one a run may start in now, the next ones.

Every datetime going in or out is timezone-aware UTC; the margin belongs to the merged window: its *deadline* is
``end - margin``, and "inside a window" means ``start <= now < deadline``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tradedb.core.errors import TradeDBError
from tradedb.ops.windows.formatting import format_duration
from tradedb.ops.windows.intervals import (
    FAR_FUTURE,
    FAR_PAST,
    MERGE_PAD,
    ExchangeClosed,
    Slot,
    exchange_intervals,
    merge,
    slot_intervals,
    utc,
)

WINDOWS_FILE = "windows.toml"

DEFAULT_MARGIN_MINUTES = 15

# How far ``next_window`` and the "long enough" search look ahead before giving up.
SEARCH_HORIZON = timedelta(days=366)

SEARCH_STEP = timedelta(days=14)


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
        a, b = utc(a), utc(b)
        if self.always:
            return [Window(FAR_PAST, FAR_FUTURE, "always open", timedelta(0))]
        lo, hi = a - MERGE_PAD, b + MERGE_PAD
        raw = list(slot_intervals(self.slots, self.tz, lo, hi))
        if self.exchange_closed is not None:
            raw.extend(exchange_intervals(self.exchange_closed, lo, hi))
        merged = merge(raw)
        return [
            Window(start, end, source, self.margin)
            for start, end, source in merged
            if end > a and start < b and end - self.margin > start
        ]

    def raw_window_at(self, now: datetime) -> Window | None:
        """The window containing ``now`` ignoring the margin (to explain "too close to the end")."""
        now = utc(now)
        return next(
            (w for w in self.windows_between(now, now + timedelta(seconds=1)) if w.start <= now < w.end), None
        )

    def window_at(self, now: datetime) -> Window | None:
        """The window a run may start in at ``now`` (``start <= now < deadline``), else None."""
        window = self.raw_window_at(now)
        return window if window is not None and window.contains(utc(now)) else None

    def upcoming(self, now: datetime, count: int = 1, *, horizon: timedelta = SEARCH_HORIZON) -> list[Window]:
        """The current window (if a run may still start in it) and the next ones, up to ``count`` in all."""
        now = utc(now)
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
                f"of {utc(now):%Y-%m-%d %H:%M} UTC: check {self.source_file or WINDOWS_FILE}"
            )
        return found[0]
