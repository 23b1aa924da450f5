"""Maintenance windows: config validation, window arithmetic (timezones, DST, exchange holidays), the schedule's
launch decision, the in-run gate and the ``tradedb window`` CLI.

Every clock is frozen (an explicit ``now``); no database is needed. Dates are real: 2026-03-08 and 2026-11-01 are
the US daylight-saving changes, 2026-03-29 and 2026-10-25 the UK's, 2026-11-26 is Thanksgiving (NYSE closed) and
2026-11-27 an NYSE early close at 13:00.
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import exchange_calendars as xc
import pytest

from tests.conftest import ROOT, run_cli
from tradedb.core.errors import TradeDBError
from tradedb.ops import windows
from tradedb.ops.windows import WindowPolicy, decide_launch, gate, load_policies, require_window, wall_to_utc

NEW_YORK = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: str, *args: int) -> datetime:
    """A wall-clock time in ``zone`` as UTC (first occurrence), the way a test reads a schedule."""
    return datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def write(tmp_path: Path, body: str, name: str = "windows.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def production(tmp_path: Path, body: str) -> WindowPolicy:
    """Load a ``[production]`` table given as its body."""
    return windows.policy("production", write(tmp_path, "[production]\n" + textwrap.dedent(body)))


SATURDAY_SLOT = f"""
    timezone = "{NEW_YORK}"
    margin_minutes = 15
    slots = [ {{ days = ["sat"], start = "02:00", end = "06:00" }} ]
"""


@pytest.fixture
def saturday(tmp_path) -> WindowPolicy:
    return production(tmp_path, SATURDAY_SLOT)


# ----------------------------------------------------------------------------------------------- inside / outside


def test_inside_and_outside_a_slot(saturday):
    inside = local(NEW_YORK, 2026, 11, 28, 3, 0)
    window = saturday.window_at(inside)
    assert window is not None
    assert (window.start, window.end) == (utc(2026, 11, 28, 7), utc(2026, 11, 28, 11))
    assert window.deadline == utc(2026, 11, 28, 10, 45)
    assert window.source == "slot sat 02:00-06:00"
    assert saturday.window_at(local(NEW_YORK, 2026, 11, 28, 1, 59)) is None  # before it opens
    assert saturday.window_at(local(NEW_YORK, 2026, 11, 28, 6, 0)) is None  # after it closed
    assert saturday.window_at(local(NEW_YORK, 2026, 11, 27, 3, 0)) is None  # a Friday
    assert saturday.next_window(inside) == window  # the current one
    later = saturday.next_window(local(NEW_YORK, 2026, 11, 28, 7, 0))
    assert later.start == local(NEW_YORK, 2026, 12, 5, 2, 0)


def test_margin_closes_the_last_minutes_and_sets_the_deadline(saturday):
    in_margin = local(NEW_YORK, 2026, 11, 28, 5, 50)
    assert saturday.window_at(in_margin) is None
    assert saturday.raw_window_at(in_margin) is not None
    reason = windows.closed_reason(saturday, in_margin)
    assert "too close to the end" in reason and "last 15m" in reason
    assert "next opens at Sat 2026-12-05 02:00 EST" in reason
    assert saturday.window_at(local(NEW_YORK, 2026, 11, 28, 5, 44)) is not None


def test_a_window_shorter_than_the_margin_never_opens(tmp_path):
    pol = production(
        tmp_path,
        f"""
        timezone = "{NEW_YORK}"
        margin_minutes = 30
        slots = [ {{ days = ["sat"], start = "02:00", end = "02:20" }}, {{ days = ["sun"], start = "02:00", end = "04:00" }} ]
        """,
    )
    assert pol.window_at(local(NEW_YORK, 2026, 11, 28, 2, 5)) is None
    assert pol.next_window(local(NEW_YORK, 2026, 11, 28, 0, 0)).start == local(NEW_YORK, 2026, 11, 29, 2, 0)


def test_slot_crossing_midnight_belongs_to_the_day_it_starts(tmp_path):
    pol = production(
        tmp_path,
        f"""
        timezone = "{NEW_YORK}"
        margin_minutes = 0
        slots = [ {{ days = ["fri"], start = "22:00", end = "02:00" }} ]
        """,
    )
    window = pol.window_at(local(NEW_YORK, 2026, 11, 28, 1, 0))  # early Saturday
    assert window is not None
    assert (window.start, window.end) == (local(NEW_YORK, 2026, 11, 27, 22), local(NEW_YORK, 2026, 11, 28, 2))
    assert pol.window_at(local(NEW_YORK, 2026, 11, 27, 1, 0)) is None  # early Friday: Thursday has no slot


def test_slot_times_may_have_seconds(tmp_path):
    pol = production(
        tmp_path,
        f"""
        timezone = "{NEW_YORK}"
        margin_minutes = 0
        slots = [ {{ days = ["sat"], start = "02:00:30", end = "02:01:15" }}, {{ days = ["sun"], start = 03:00:05, end = "04:00" }} ]
        """,
    )
    window = pol.window_at(local(NEW_YORK, 2026, 11, 28, 2, 0, 30))
    assert window is not None and window.source == "slot sat 02:00:30-02:01:15"
    assert (window.start, window.end) == (utc(2026, 11, 28, 7, 0, 30), utc(2026, 11, 28, 7, 1, 15))
    assert pol.window_at(local(NEW_YORK, 2026, 11, 28, 2, 0, 29)) is None
    assert pol.window_at(local(NEW_YORK, 2026, 11, 28, 2, 1, 15)) is None
    sunday = pol.next_window(local(NEW_YORK, 2026, 11, 28, 3))  # its start is a TOML local time
    assert sunday.start == utc(2026, 11, 29, 8, 0, 5)
    # seconds show where they exist, in reasons and run keys; whole minutes read as before
    reason = windows.closed_reason(pol, local(NEW_YORK, 2026, 11, 28, 1))
    assert reason == "outside the maintenance window (next opens at Sat 2026-11-28 02:00:30 EST)"
    decision = decide_launch(pol, window.start, pending_steps=1, estimated_seconds=10)
    assert decision.launch and decision.run_key == "window-20261128T070030Z"
    assert "before Sat 2026-11-28 02:01:15 EST" in decision.reason


def test_overlapping_and_adjacent_windows_merge(tmp_path):
    pol = production(
        tmp_path,
        f"""
        timezone = "{NEW_YORK}"
        margin_minutes = 10
        slots = [
          {{ days = ["sat"], start = "02:00", end = "06:00" }},
          {{ days = ["sat"], start = "05:00", end = "08:00", name = "backfill slot" }},
          {{ days = ["sat"], start = "22:00", end = "24:00" }},
          {{ days = ["sun"], start = "00:00", end = "03:00" }},
        ]
        """,
    )
    found = pol.windows_between(local(NEW_YORK, 2026, 11, 28), local(NEW_YORK, 2026, 11, 30))
    assert [(w.start, w.end) for w in found] == [
        (local(NEW_YORK, 2026, 11, 28, 2), local(NEW_YORK, 2026, 11, 28, 8)),
        (local(NEW_YORK, 2026, 11, 28, 22), local(NEW_YORK, 2026, 11, 29, 3)),
    ]
    assert found[0].source == "slot sat 02:00-06:00 + backfill slot"
    assert found[0].deadline == local(NEW_YORK, 2026, 11, 28, 7, 50)  # the margin applies to the merged end
    assert found[1].source == "slot sat 22:00-24:00 + slot sun 00:00-03:00"


def test_naive_datetimes_are_refused(saturday):
    with pytest.raises(ValueError, match="naive"):
        saturday.window_at(datetime(2026, 11, 28, 3))


# ----------------------------------------------------------------------------------------------- timezones and DST


@pytest.mark.parametrize(
    ("zone", "when", "expected_start_utc"),
    [
        (NEW_YORK, date(2026, 1, 10), utc(2026, 1, 10, 7)),  # EST, UTC-5
        (NEW_YORK, date(2026, 7, 11), utc(2026, 7, 11, 6)),  # EDT, UTC-4
        ("Europe/London", date(2026, 1, 10), utc(2026, 1, 10, 2)),  # GMT
        ("Europe/London", date(2026, 7, 11), utc(2026, 7, 11, 1)),  # BST
        ("Asia/Tokyo", date(2026, 1, 10), utc(2026, 1, 9, 17)),  # JST, no DST: Friday in UTC
        ("Asia/Tokyo", date(2026, 7, 11), utc(2026, 7, 10, 17)),
    ],
)
def test_slots_are_wall_clock_times_in_their_timezone(tmp_path, zone, when, expected_start_utc):
    pol = production(tmp_path, SATURDAY_SLOT.replace(NEW_YORK, zone))
    three_am = local(zone, when.year, when.month, when.day, 3, 0)
    window = pol.window_at(three_am)
    assert window is not None
    assert window.start == expected_start_utc
    assert window.end - window.start == timedelta(hours=4)
    assert windows.format_local(window.start, ZoneInfo(zone)).startswith(f"Sat {when:%Y-%m-%d} 02:00")


def test_spring_forward_window_starts_when_the_clocks_jump(tmp_path):
    """2026-03-08 in New York: 02:00-03:00 does not exist; a 02:00 start means 03:00 EDT."""
    pol = production(
        tmp_path,
        f"""
        timezone = "{NEW_YORK}"
        margin_minutes = 0
        slots = [ {{ days = ["sun"], start = "02:00", end = "05:00" }}, {{ days = ["sat"], start = "22:00", end = "04:00" }} ]
        """,
    )
    sunday = pol.windows_between(utc(2026, 3, 7, 12), utc(2026, 3, 8, 23))
    # Saturday 22:00 EST (03:00 UTC) until Sunday 05:00 EDT (09:00 UTC): 7 h on the clock face, 6 h real; the
    # Sunday slot starting "02:00" (really 03:00 EDT) merges into it.
    assert [(w.start, w.end) for w in sunday] == [(utc(2026, 3, 8, 3), utc(2026, 3, 8, 9))]
    assert wall_to_utc(date(2026, 3, 8), 2 * 3600, ZoneInfo(NEW_YORK)) == utc(2026, 3, 8, 7)  # = 03:00 EDT
    half_past = 2 * 3600 + 30 * 60
    assert wall_to_utc(date(2026, 3, 8), half_past, ZoneInfo(NEW_YORK)) == utc(2026, 3, 8, 7)  # not 03:30
    assert wall_to_utc(date(2026, 3, 8), 3 * 3600, ZoneInfo(NEW_YORK)) == utc(2026, 3, 8, 7)
    # A week later the same night is its full 7 hours.
    normal = pol.windows_between(utc(2026, 3, 15, 5), utc(2026, 3, 15, 6))
    assert [(w.start, w.end) for w in normal] == [(utc(2026, 3, 15, 2), utc(2026, 3, 15, 9))]


def test_spring_forward_span_and_a_slot_inside_the_skipped_hour(tmp_path):
    pol = production(
        tmp_path,
        f"""
        timezone = "{NEW_YORK}"
        margin_minutes = 0
        slots = [ {{ days = ["sun"], start = "00:00", end = "04:00" }}, {{ days = ["sun"], start = "02:10", end = "02:50" }} ]
        """,
    )
    change = pol.windows_between(utc(2026, 3, 8), utc(2026, 3, 8, 12))
    assert [(w.start, w.end) for w in change] == [(utc(2026, 3, 8, 5), utc(2026, 3, 8, 8))]  # 3 h, not 4
    assert change[0].source == "slot sun 00:00-04:00"  # 02:10-02:50 never happened that night
    week_after = pol.windows_between(utc(2026, 3, 15), utc(2026, 3, 15, 12))
    assert week_after[0].source == "slot sun 00:00-04:00 + slot sun 02:10-02:50"


def test_fall_back_window_is_an_hour_longer_and_ambiguous_times_take_the_first(tmp_path):
    """2026-11-01 in New York: 01:00-02:00 happens twice (EDT, then EST)."""
    pol = production(
        tmp_path,
        f"""
        timezone = "{NEW_YORK}"
        margin_minutes = 0
        slots = [ {{ days = ["sun"], start = "00:00", end = "04:00" }} ]
        """,
    )
    change = pol.windows_between(utc(2026, 11, 1), utc(2026, 11, 1, 12))
    assert [(w.start, w.end) for w in change] == [(utc(2026, 11, 1, 4), utc(2026, 11, 1, 9))]  # 5 h
    assert wall_to_utc(date(2026, 11, 1), 90 * 60, ZoneInfo(NEW_YORK)) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    # at 01:30 EST (the second 01:30) the window is still open
    assert pol.window_at(utc(2026, 11, 1, 6, 30)) is not None


def test_london_dst_changes(tmp_path):
    pol = production(
        tmp_path,
        """
        timezone = "Europe/London"
        margin_minutes = 0
        slots = [ { days = ["sun"], start = "00:30", end = "03:00" } ]
        """,
    )
    spring = pol.windows_between(utc(2026, 3, 29), utc(2026, 3, 29, 12))  # 01:00 GMT -> 02:00 BST
    assert [(w.start, w.end) for w in spring] == [(utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 2))]
    autumn = pol.windows_between(utc(2026, 10, 25), utc(2026, 10, 25, 12))  # 02:00 BST -> 01:00 GMT
    assert [(w.start, w.end) for w in autumn] == [(utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 3))]


# ----------------------------------------------------------------------------------------------- exchange calendar


@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # raised inside exchange_calendars
def test_the_calendar_agrees_with_the_dates_these_tests_use():
    cal = xc.get_calendar("XNYS")
    assert not cal.is_session("2026-11-26")  # Thanksgiving
    assert cal.session_close("2026-11-27") == datetime(2026, 11, 27, 18, tzinfo=UTC)  # 13:00 EST early close
    assert cal.session_close("2026-11-25") == datetime(2026, 11, 25, 21, tzinfo=UTC)


EXCHANGE_ONLY = f"""
    timezone = "{NEW_YORK}"
    margin_minutes = 15
    exchange_closed = {{ calendar = "XNYS", min_minutes = 1440 }}
"""


def test_an_exchange_holiday_opens_a_window(tmp_path):
    pol = production(tmp_path, EXCHANGE_ONLY)  # only closures of at least a day: holidays and weekends
    thanksgiving = pol.window_at(local(NEW_YORK, 2026, 11, 26, 12, 0))
    assert thanksgiving is not None
    assert (thanksgiving.start, thanksgiving.end) == (utc(2026, 11, 25, 21), utc(2026, 11, 27, 14, 30))
    assert "Thanksgiving" in thanksgiving.source and thanksgiving.source.startswith("XNYS closed (holiday")
    # The early close on Friday opens the weekend window at 13:00 EST instead of 16:00.
    weekend = pol.window_at(local(NEW_YORK, 2026, 11, 27, 14, 0))
    assert weekend is not None
    assert (weekend.start, weekend.end) == (utc(2026, 11, 27, 18), utc(2026, 11, 30, 14, 30))
    assert "early close Fri 2026-11-27" in weekend.source and "weekend" in weekend.source
    # An ordinary Thursday night is shorter than a day, so it is not a window under min_minutes = 1440.
    assert pol.window_at(local(NEW_YORK, 2026, 11, 19, 23, 0)) is None


def test_exchange_nights_buffers_and_merge_with_slots(tmp_path):
    pol = production(
        tmp_path,
        f"""
        timezone = "{NEW_YORK}"
        margin_minutes = 15
        slots = [ {{ days = ["sat"], start = "02:00", end = "06:00" }} ]
        exchange_closed = {{ calendar = "XNYS", min_minutes = 60, after_close_minutes = 240, before_open_minutes = 330 }}
        """,
    )
    night = pol.window_at(local(NEW_YORK, 2026, 11, 24, 23, 0))
    assert night is not None
    assert (night.start, night.end) == (local(NEW_YORK, 2026, 11, 24, 20), local(NEW_YORK, 2026, 11, 25, 4))
    assert night.source == "XNYS closed (overnight)"
    assert pol.window_at(local(NEW_YORK, 2026, 11, 24, 18, 0)) is None  # after-hours trading
    weekend = pol.window_at(local(NEW_YORK, 2026, 11, 28, 3, 0))
    assert weekend is not None and weekend.source.endswith("+ slot sat 02:00-06:00")
    assert (weekend.start, weekend.end) == (
        local(NEW_YORK, 2026, 11, 27, 17),
        local(NEW_YORK, 2026, 11, 30, 4),
    )


def test_exchange_windows_across_the_new_year(tmp_path):
    pol = production(tmp_path, EXCHANGE_ONLY)
    found = pol.upcoming(utc(2026, 12, 30), 2)
    assert found[0].start == local(NEW_YORK, 2026, 12, 31, 16) and "New Year's Day" in found[0].source
    assert found[0].end == local(NEW_YORK, 2027, 1, 4, 9, 30)


def test_exchange_calendar_is_built_once_per_year_range(tmp_path):
    pol = production(tmp_path, EXCHANGE_ONLY)
    windows.exchange_closures.cache_clear()
    for hour in range(0, 48, 6):
        pol.window_at(utc(2026, 11, 26) + timedelta(hours=hour))
    info = windows.exchange_closures.cache_info()
    assert info.misses == 1 and info.hits >= 7


# ----------------------------------------------------------------------------------------------- launch decision


def test_decision_nothing_pending(saturday):
    decision = decide_launch(
        saturday, local(NEW_YORK, 2026, 11, 28, 2, 0), pending_steps=0, estimated_seconds=60
    )
    assert (decision.launch, decision.reason, decision.deadline) == (False, "nothing pending", None)


def test_decision_outside_the_window(saturday):
    decision = decide_launch(
        saturday, local(NEW_YORK, 2026, 11, 27, 12, 0), pending_steps=3, estimated_seconds=60
    )
    assert not decision.launch
    assert decision.reason == "outside the maintenance window (next opens at Sat 2026-11-28 02:00 EST)"
    assert decision.window is not None and decision.window.start == utc(2026, 11, 28, 7)
    assert decision.run_key is None


def test_decision_launch_inside_with_a_deadline(saturday):
    decision = decide_launch(
        saturday, local(NEW_YORK, 2026, 11, 28, 2, 0), pending_steps=3, estimated_seconds=2 * 3600
    )
    assert decision.launch
    assert decision.deadline == utc(2026, 11, 28, 10, 45)  # 06:00 EST minus the 15 minute margin
    assert "estimated 2h 00m (rehearsed, scaled to production's rows)" in decision.reason
    assert "3h 45m left" in decision.reason
    assert decision.run_key == "window-20261128T0700Z"


def test_decision_does_not_fit(saturday):
    now = local(NEW_YORK, 2026, 11, 28, 5, 0)
    decision = decide_launch(saturday, now, pending_steps=2, estimated_seconds=3600)
    assert not decision.launch and decision.deadline is None
    assert decision.reason.startswith(
        "the estimated duration 1h 00m of 2 pending step(s) (rehearsed, scaled to production's rows) does not "
        "fit in the 45m left before "
        "Sat 2026-11-28 05:45 EST (margin 15m)"
    )
    assert "the next window long enough opens Sat 2026-12-05 02:00 EST" in decision.reason
    too_long = decide_launch(saturday, now, pending_steps=2, estimated_seconds=10 * 3600)
    assert "no window in the next 62 days is long enough" in too_long.reason


def test_decision_without_an_estimate_launches_and_says_so(saturday, tmp_path):
    now = local(NEW_YORK, 2026, 11, 28, 3, 0)
    decision = decide_launch(saturday, now, pending_steps=1, estimated_seconds=None)
    assert decision.launch and decision.deadline == utc(2026, 11, 28, 10, 45)
    assert "without a rehearsal estimate" in decision.reason
    strict = production(tmp_path, SATURDAY_SLOT + "require_rehearsal = true\n")
    refused = decide_launch(strict, now, pending_steps=1, estimated_seconds=None)
    assert not refused.launch and "requires one" in refused.reason


def test_decision_on_an_exchange_holiday_with_the_shipped_file():
    """Thanksgiving 2026 (Thu 26 Nov): XNYS is closed all day, so the overnight window runs to Friday's open."""
    pol = load_policies(ROOT / "windows.toml")["production"]
    holiday = decide_launch(
        pol, local(NEW_YORK, 2026, 11, 26, 12, 0), pending_steps=2, estimated_seconds=3600
    )
    assert holiday.launch and holiday.deadline == local(NEW_YORK, 2026, 11, 27, 3, 45)
    assert holiday.run_key == "window-20261126T0100Z"  # opened Wednesday 20:00 EST
    trading_day = decide_launch(
        pol, local(NEW_YORK, 2026, 11, 19, 12, 0), pending_steps=2, estimated_seconds=60
    )
    assert not trading_day.launch and trading_day.reason.startswith("outside the maintenance window")


def test_decision_on_the_spring_forward_night(tmp_path):
    """2026-03-08 in New York: a 02:00-05:00 slot opens at 03:00 EDT, so two hours no longer fit by 04:45."""
    pol = production(
        tmp_path,
        f'timezone = "{NEW_YORK}"\nmargin_minutes = 15\n'
        'slots = [{ days = ["sun"], start = "02:00", end = "05:00" }]\n',
    )
    now = local(NEW_YORK, 2026, 3, 8, 3, 10)
    fits = decide_launch(pol, now, pending_steps=1, estimated_seconds=3600)
    assert fits.launch and fits.run_key == "window-20260308T0700Z"  # 03:00 EDT
    assert fits.deadline == local(NEW_YORK, 2026, 3, 8, 4, 45)
    too_long = decide_launch(pol, now, pending_steps=1, estimated_seconds=2 * 3600)
    assert not too_long.launch and "does not fit in the 1h 35m left" in too_long.reason


def test_decision_for_an_always_open_environment():
    pol = load_policies(ROOT / "windows.toml")["staging"]
    decision = decide_launch(pol, utc(2026, 11, 25, 15), pending_steps=4, estimated_seconds=99_999)
    assert decision.launch and decision.deadline is None and decision.run_key is None


# ----------------------------------------------------------------------------------------------- gate


@pytest.fixture
def windows_file(tmp_path, monkeypatch) -> Path:
    path = write(tmp_path, "[production]\n" + textwrap.dedent(SATURDAY_SLOT) + "\n[staging]\nalways = true\n")
    monkeypatch.setenv("TRADEDB_WINDOWS", str(path))
    return path


def test_gate_refuses_production_outside_a_window(windows_file):
    outside = local(NEW_YORK, 2026, 11, 25, 12, 0)
    result = gate("production", outside)
    assert not result.allowed and not result.overridden
    assert "production run refused: outside the maintenance window" in result.reason
    with pytest.raises(TradeDBError, match="override with a reason"):
        require_window("production", outside)


def test_gate_accepts_an_override_with_a_reason(windows_file):
    result = require_window(
        "production", local(NEW_YORK, 2026, 11, 25, 12, 0), override_reason="  hotfix TRD-999 \n"
    )
    assert result.allowed and result.overridden
    assert result.override_reason == "hotfix TRD-999"
    assert result.reason.endswith(": hotfix TRD-999")


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
def test_gate_refuses_an_empty_override_reason(windows_file, blank):
    result = gate("production", local(NEW_YORK, 2026, 11, 25, 12, 0), override_reason=blank)
    assert not result.allowed and "non-empty reason" in result.reason
    with pytest.raises(TradeDBError, match="non-empty reason"):
        require_window("production", local(NEW_YORK, 2026, 11, 25, 12, 0), override_reason=blank)


def test_gate_inside_a_window_passes_the_deadline(windows_file):
    result = require_window("production", local(NEW_YORK, 2026, 11, 28, 3, 0), override_reason="not needed")
    assert result.allowed and not result.overridden
    assert result.deadline == utc(2026, 11, 28, 10, 45)


@pytest.mark.parametrize("name", ["dev", "staging"])
def test_non_production_is_always_open(windows_file, name):
    result = require_window(name, local(NEW_YORK, 2026, 11, 25, 12, 0))
    assert result.allowed and result.deadline is None and not result.overridden
    assert windows.policy(name).next_window(utc(2026, 11, 25)).open_ended


# ----------------------------------------------------------------------------------------------- config errors


def test_the_shipped_windows_file_is_valid():
    policies = load_policies(ROOT / "windows.toml")
    prod = policies["production"]
    assert prod.exchange_closed is not None and prod.exchange_closed.calendar == "XNYS"
    assert prod.margin == timedelta(minutes=15) and len(prod.slots) == 2
    assert policies["staging"].always and policies["dev"].always
    assert prod.next_window(utc(2026, 11, 25, 18)).start == local(NEW_YORK, 2026, 11, 25, 20)


def test_production_without_a_table_is_an_error(tmp_path):
    path = write(tmp_path, "[staging]\nalways = true\n")
    assert load_policies(path)["dev"].always  # no table: always open
    with pytest.raises(
        TradeDBError, match=r"no maintenance windows for production: add a \[production\] table"
    ):
        windows.policy("production", path)


def test_a_missing_named_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEDB_WINDOWS", str(tmp_path / "nope.toml"))
    with pytest.raises(TradeDBError, match="nope.toml does not exist"):
        load_policies()


SLOT = '{ days = ["sat"], start = "02:00", end = "06:00" }'
GOOD = f'timezone = "{NEW_YORK}"\nslots = [ {SLOT} ]\n'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[prod]\nalways = true\n", "prod: unknown environment (choose from dev, staging, production)"),
        ("[production]\n" + GOOD + "margin = 5\n", "[production] margin: unknown key"),
        (
            '[production]\ntimezone = "UTC"\nslots = [ { days = ["sat"], start = "02:00", end = "03:00", len = 1 } ]\n',
            "[production] slots[0].len: unknown key",
        ),
        (
            '[production]\ntimezone = "UTC"\nslots = [ { days = ["sat", "funday"], start = "02:00", end = "03:00" } ]\n',
            "[production] slots[0].days: unknown day 'funday' (use mon, tue, wed, thu, fri, sat, sun)",
        ),
        (
            '[production]\ntimezone = "UTC"\nslots = [ { days = [], start = "02:00", end = "03:00" } ]\n',
            "[production] slots[0].days: must be a non-empty list",
        ),
        (
            '[production]\ntimezone = "UTC"\nslots = [ { days = ["sat"], start = "25:00", end = "03:00" } ]\n',
            "[production] slots[0].start: bad time '25:00' (use HH:MM or HH:MM:SS, 00:00 to 23:59:59)",
        ),
        (
            '[production]\ntimezone = "UTC"\nslots = [ { days = ["sat"], start = "2:00", end = "03:00" } ]\n',
            "[production] slots[0].start: bad time '2:00'",
        ),
        (
            '[production]\ntimezone = "UTC"\nslots = [ { days = ["sat"], start = "24:00", end = "03:00" } ]\n',
            "[production] slots[0].start: bad time '24:00'",
        ),
        (
            '[production]\ntimezone = "UTC"\nslots = [ { days = ["sat"], start = "02:00", end = "03:61" } ]\n',
            "[production] slots[0].end: bad time '03:61' (use HH:MM or HH:MM:SS, 00:00 to 24:00)",
        ),
        (
            '[production]\ntimezone = "UTC"\nslots = [ { days = ["sat"], start = "02:00:60", end = "03:00" } ]\n',
            "[production] slots[0].start: bad time '02:00:60' (use HH:MM or HH:MM:SS, 00:00 to 23:59:59)",
        ),
        (
            '[production]\ntimezone = "UTC"\nslots = [ { days = ["sat"], start = "02:00", end = "24:00:01" } ]\n',
            "[production] slots[0].end: bad time '24:00:01'",
        ),
        (
            '[production]\ntimezone = "UTC"\nslots = [ { days = ["sat"], start = "02:00", end = "02:00" } ]\n',
            "[production] slots[0].end: equals start (02:00)",
        ),
        (
            '[production]\ntimezone = "UTC"\nslots = [ { days = ["sat"], start = "02:00", end = "02:00:00" } ]\n',
            "[production] slots[0].end: equals start (02:00)",
        ),
        (
            '[production]\ntimezone = "UTC"\nslots = [ { days = ["sat"], start = "02:00" } ]\n',
            "[production] slots[0].end: missing",
        ),
        (
            f'[production]\ntimezone = "Mars/Olympus"\nslots = [ {SLOT} ]\n',
            "[production] timezone: unknown timezone",
        ),
        (f"[production]\nslots = [ {SLOT} ]\n", "[production] timezone: required"),
        (
            '[production]\ntimezone = "UTC"\nexchange_closed = { calendar = "XXXX" }\n',
            "[production] exchange_closed.calendar: unknown exchange calendar 'XXXX'",
        ),
        (
            '[production]\ntimezone = "UTC"\nexchange_closed = { calendar = "XNYS", min_minutes = -5 }\n',
            "[production] exchange_closed.min_minutes: must be a whole number of minutes >= 0, not -5",
        ),
        (
            '[production]\ntimezone = "UTC"\nexchange_closed = { calendar = "XNYS", opens = 1 }\n',
            "[production] exchange_closed.opens: unknown key",
        ),
        (
            "[production]\n" + GOOD + "margin_minutes = -1\n",
            "[production] margin_minutes: must be a whole number",
        ),
        (
            "[production]\n" + GOOD + 'margin_minutes = "15"\n',
            "[production] margin_minutes: must be a whole number",
        ),
        (  # used to end in an OverflowError traceback from the window search
            "[production]\n" + GOOD + "margin_minutes = 99999999999\n",
            "[production] margin_minutes: must be at most 1440 minutes (24h 00m), not 99999999999",
        ),
        (
            "[production]\n" + GOOD + "margin_minutes = 1441\n",
            "[production] margin_minutes: must be at most 1440 minutes",
        ),
        (
            "[staging]\nalways = true\nmargin_minutes = 99999999999\n",
            "[staging] margin_minutes: must be at most",
        ),
        (
            '[production]\ntimezone = "UTC"\nexchange_closed = { calendar = "XNYS", min_minutes = 99999999999 }\n',
            "[production] exchange_closed.min_minutes: must be at most 20160 minutes (14d 0h), not 99999999999",
        ),
        (
            '[production]\ntimezone = "UTC"\nexchange_closed = { calendar = "XNYS", after_close_minutes = 1441 }\n',
            "[production] exchange_closed.after_close_minutes: must be at most 1440 minutes",
        ),
        (
            '[production]\ntimezone = "UTC"\nexchange_closed = { calendar = "XNYS", before_open_minutes = 99999999999 }\n',
            "[production] exchange_closed.before_open_minutes: must be at most 1440 minutes",
        ),
        (
            "[production]\n" + GOOD + "always = true\n",
            "[production] always: always = true cannot be combined",
        ),
        ("[staging]\nalways = 1\n", "[staging] always: must be true or false"),
        ("[production]\n", "[production]: no windows"),
        ('[production]\ntimezone = "UTC"\nslots = []\n', "[production] slots: is empty"),
        ('[production]\ntimezone = "UTC"\nslots = "sat 02:00-06:00"\n', "[production] slots: must be a list"),
        ('timezone = "UTC"\n', "timezone: unknown environment"),
        ("[production\n", "malformed windows file"),
    ],
    ids=lambda v: v.splitlines()[0][:40] if isinstance(v, str) else None,
)
def test_bad_config_gives_one_clear_line(tmp_path, body, expected):
    path = write(tmp_path, body)
    with pytest.raises(TradeDBError) as caught:
        windows.policy("production", path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"malformed windows file {path}")
    assert expected in message


def test_the_largest_allowed_minutes_load_and_answer(tmp_path):
    body = (
        f'[production]\ntimezone = "UTC"\nmargin_minutes = {windows.MAX_MARGIN_MINUTES}\n'
        f"slots = [ {SLOT} ]\n"
        f'exchange_closed = {{ calendar = "XNYS", min_minutes = {windows.MAX_MIN_CLOSURE_MINUTES}, '
        f"after_close_minutes = {windows.MAX_BUFFER_MINUTES}, before_open_minutes = {windows.MAX_BUFFER_MINUTES} }}\n"
    )
    pol = windows.policy("production", write(tmp_path, body))
    assert pol.margin == timedelta(days=1)
    # a margin of a whole day leaves the four-hour slot no usable time: closed, and said so, not a traceback
    assert pol.upcoming(datetime(2026, 11, 25, tzinfo=UTC), 1) == []


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_window_status_and_next(tmp_path):
    path = write(tmp_path, "[production]\n" + textwrap.dedent(SATURDAY_SLOT))
    extra = {"TRADEDB_WINDOWS": str(path)}
    opened = run_cli("window", "status", "--now", "2026-11-28T08:00:00Z", extra=extra)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.startswith("production: OPEN at Sat 2026-11-28 03:00 EST")
    assert "Sat 2026-11-28 02:00 EST -> Sat 2026-11-28 06:00 EST" in opened.stdout
    assert "deadline Sat 2026-11-28 05:45 EST, 2h 45m left" in opened.stdout
    assert "2026-11-28 07:00 UTC -> 2026-11-28 11:00 UTC; slot sat 02:00-06:00" in opened.stdout

    closed = run_cli("window", "status", "--now", "2026-11-25T12:00:00", "--json", extra=extra)
    assert closed.returncode == 0, closed.stderr
    payload = json.loads(closed.stdout)
    assert payload["open"] is False and payload["window"] is None
    assert payload["next"]["start"] == "2026-11-28T07:00:00+00:00"
    assert payload["next"]["deadline_local"] == "Sat 2026-11-28 05:45 EST"
    assert payload["reason"].startswith("outside the maintenance window")

    upcoming = run_cli("window", "next", "--count", "3", "--now", "2026-11-25T12:00:00Z", extra=extra)
    assert upcoming.returncode == 0, upcoming.stderr
    for n, day in enumerate(("2026-11-28", "2026-12-05", "2026-12-12"), 1):
        assert f"{n:>2}. Sat {day} 02:00 EST -> Sat {day} 06:00 EST (usable 3h 45m" in upcoming.stdout

    staging = run_cli("window", "status", "--env", "staging", extra=extra)
    assert staging.returncode == 0 and staging.stdout.startswith("staging: OPEN - staging is always open")


def test_cli_bad_config_is_one_error_line(tmp_path):
    path = write(
        tmp_path,
        '[production]\ntimezone = "UTC"\nslots = [ { days = ["sat"], start = "02:00", end = "02:00" } ]\n',
    )
    result = run_cli("window", "next", extra={"TRADEDB_WINDOWS": str(path)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: malformed windows file {path}: [production] slots[0].end: equals start (02:00): a slot must have a "
        "length"
    ]
    assert result.stdout == ""


def test_cli_huge_margin_is_one_error_line_not_a_traceback(tmp_path):
    path = write(tmp_path, "[production]\n" + GOOD + "margin_minutes = 99999999999\n")
    result = run_cli("window", "status", extra={"TRADEDB_WINDOWS": str(path)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: malformed windows file {path}: [production] margin_minutes: must be at most 1440 minutes "
        "(24h 00m), not 99999999999"
    ]
