"""Maintenance windows: when production may be migrated, and whether a run should start now.

Why a package of pure functions: the Dagster schedule, the in-run gate, the data-migration deadline and the CLI must
all agree on "is this inside a window, and until when", so they all ask the same functions with an explicit ``now``
(frozen clocks in tests, ``--now`` on the CLI). Every datetime going in or out is timezone-aware UTC; wall-clock
times exist only inside the config and in the strings shown to operators.

Config (``windows.toml`` at the project root, or the file named by ``TRADEDB_WINDOWS``), one table per environment::

    [production]
    timezone = "America/New_York"   # IANA name; slot times are wall-clock times there
    margin_minutes = 15             # runs must finish this long before a window ends; no launch in the last N
                                    # (0 to 1440; the exchange buffers too, min_minutes up to 14 days)
    require_rehearsal = false       # true: the schedule skips when no rehearsal estimate exists
    slots = [ { days = ["sat"], start = "02:00", end = "06:00" } ]   # optional "name"; end "24:00" allowed;
                                                                     # "HH:MM:SS" for a time with seconds
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

Modules: ``loading`` (the file), ``model`` (a window, a policy), ``intervals`` (slots and closures to UTC windows),
``decisions`` (launch or skip, the in-run gate), ``formatting``. May import: ``tradedb.core`` only.
"""

from tradedb.ops.windows.decisions import (
    Decision,
    GateResult,
    closed_reason,
    decide_launch,
    gate,
    require_window,
)
from tradedb.ops.windows.formatting import format_duration, format_local, format_utc
from tradedb.ops.windows.intervals import ExchangeClosed, Slot, exchange_closures, wall_to_utc
from tradedb.ops.windows.loading import (
    MAX_BUFFER_MINUTES,
    MAX_MARGIN_MINUTES,
    MAX_MIN_CLOSURE_MINUTES,
    load_policies,
    policy,
    windows_path,
)
from tradedb.ops.windows.model import WINDOWS_FILE, Window, WindowPolicy

__all__ = [
    "MAX_BUFFER_MINUTES",
    "MAX_MARGIN_MINUTES",
    "MAX_MIN_CLOSURE_MINUTES",
    "WINDOWS_FILE",
    "Decision",
    "ExchangeClosed",
    "GateResult",
    "Slot",
    "Window",
    "WindowPolicy",
    "closed_reason",
    "decide_launch",
    "exchange_closures",
    "format_duration",
    "format_local",
    "format_utc",
    "gate",
    "load_policies",
    "policy",
    "require_window",
    "wall_to_utc",
    "windows_path",
]
