"""Reading ``windows.toml`` (or ``TRADEDB_WINDOWS``) into policies, with one clear error per mistake.

An environment without a table is always open (dev, staging); ``production`` must have one, so a missing file or
table can never silently mean "production may migrate at any time". A mistake is one line naming the file and
the key.
"""

from __future__ import annotations

import os
import tomllib
from datetime import time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tradedb.core.errors import TradeDBError
from tradedb.core.paths import project_root
from tradedb.core.settings import ENVIRONMENTS
from tradedb.ops.windows.formatting import format_duration
from tradedb.ops.windows.intervals import MINUTES_PER_DAY, ExchangeClosed, Slot
from tradedb.ops.windows.model import DEFAULT_MARGIN_MINUTES, WINDOWS_FILE, WindowPolicy

WINDOWS_VARIABLE = "TRADEDB_WINDOWS"

GATED_ENVIRONMENT = "production"  # the one environment that must declare its windows

# Upper bounds of the minute settings, checked on load. A margin (or an exchange buffer) of a whole day already
# swallows every nightly window, so anything longer is a typo; unbounded, a huge one overflowed datetime arithmetic
# deep inside the window search instead of naming the key.
MAX_MARGIN_MINUTES = MINUTES_PER_DAY

MAX_BUFFER_MINUTES = MINUTES_PER_DAY  # after_close_minutes, before_open_minutes

# No exchange stays closed for two weeks (the longest closures in exchange_calendars, Tokyo's 2019 Golden Week and
# Seoul's 2017 Chuseok, last under 11 days): a longer min_minutes could never be met, so it can only be a typo.
MAX_MIN_CLOSURE_MINUTES = 14 * MINUTES_PER_DAY

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
            'must be a list of tables { days = [...], start = "HH:MM[:SS]", end = "HH:MM[:SS]" }',
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
    start = _parse_time(file, f"{where}.start", raw["start"], allow_24=False)
    end = _parse_time(file, f"{where}.end", raw["end"], allow_24=True)
    if end == start:
        _bad(file, f"{where}.end", f"equals start ({raw['start']}): a slot must have a length")
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        _bad(file, f"{where}.name", "must be a non-empty string")
    days_text = "/".join(DAY_ABBREVIATIONS[d] for d in sorted(numbers))
    label = name.strip() if name else f"slot {days_text} {clock(start)}-{clock(end)}"
    return Slot(frozenset(numbers), start, end, label)


def _parse_time(file: Path, where: str, raw: Any, *, allow_24: bool) -> int:
    """``"HH:MM"``, ``"HH:MM:SS"`` (or a TOML local time) as seconds after midnight; ``"24:00"`` only for an end."""
    if isinstance(raw, time):
        return raw.hour * 3600 + raw.minute * 60 + raw.second
    text = raw.strip() if isinstance(raw, str) else ""
    parts = text.split(":")
    if len(parts) in (2, 3) and all(p.isdigit() and len(p) == 2 for p in parts):
        hours, minutes, seconds = (int(p) for p in [*parts, "00"][:3])
        in_day = hours < 24 and minutes < 60 and seconds < 60
        if in_day or (allow_24 and (hours, minutes, seconds) == (24, 0, 0)):
            return hours * 3600 + minutes * 60 + seconds
    hint = "00:00 to 24:00" if allow_24 else "00:00 to 23:59:59"
    _bad(file, where, f"bad time {raw!r} (use HH:MM or HH:MM:SS, {hint})")
    raise AssertionError  # unreachable: _bad raises


def clock(second: int) -> str:
    """``02:00``, or ``02:00:30`` when the time has seconds: a slot's time as the file would write it."""
    hours, rest = divmod(second, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")


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
