"""``tradedb window status|next``: when production may be migrated (``windows.toml``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from tradedb.cli.base import (
    cli,
)
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import ENVIRONMENTS

# Only production has windows, so these default to it (not to TRADEDB_ENV): `tradedb window next` answers "when
# can production be migrated" even in a shell that targets dev.
window_env_option = click.option(
    "--env",
    "env_name",
    default="production",
    show_default=True,
    help=f"Environment whose windows to show: {', '.join(ENVIRONMENTS)}.",
)
now_option = click.option("--now", "now_text", hidden=True, help="Pretend it is this ISO time (naive = UTC).")


def _parse_now(value: str | None) -> datetime:
    """The hidden ``--now``: reproducible output for tests and for "what would happen at 02:00 on Saturday"."""
    if not value:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise TradeDBError(
            f"malformed --now {value!r}: use an ISO time such as 2026-11-28T07:00+00:00"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _window_json(w, tz) -> dict:
    from tradedb.ops.windows import format_local

    return {
        "start": w.start.isoformat(),
        "end": None if w.open_ended else w.end.isoformat(),
        "deadline": w.deadline.isoformat() if w.deadline else None,
        "start_local": format_local(w.start, tz),
        "end_local": None if w.open_ended else format_local(w.end, tz),
        "deadline_local": format_local(w.deadline, tz) if w.deadline else None,
        "source": w.source,
    }


def _window_lines(w, tz, now: datetime | None = None) -> list[str]:
    """Two lines per window: local wall clock with usable time and deadline, then UTC and where it comes from."""
    from tradedb.ops.windows import format_duration, format_local, format_utc

    left = f", {format_duration(w.left(now))} left" if now is not None and w.contains(now) else ""
    return [
        f"{format_local(w.start, tz)} -> {format_local(w.end, tz)} (usable {format_duration(w.usable)}, "
        f"deadline {format_local(w.deadline, tz)}{left})",
        f"{format_utc(w.start)} -> {format_utc(w.end)}; {w.source}",
    ]


@cli.group()
def window() -> None:
    """Maintenance windows (windows.toml): when production may be migrated."""


@window.command("status")
@window_env_option
@now_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def window_status(env_name: str, now_text: str | None, as_json: bool) -> None:
    """Open or closed now, with the window's deadline and source.

    The deadline is the window's end minus the margin: data migrations stop by then and no run starts after it.
    """
    from tradedb.core.settings import current_environment_name
    from tradedb.ops import windows

    now = _parse_now(now_text)
    pol = windows.policy(current_environment_name(env_name))
    current = pol.window_at(now)
    upcoming = None if current else pol.next_window(now)
    reason = pol.describe() if pol.always else (None if current else windows.closed_reason(pol, now))
    if as_json:
        payload = {
            "environment": pol.environment,
            "now": now.astimezone(UTC).isoformat(),
            "open": current is not None,
            "always": pol.always,
            "timezone": pol.timezone,
            "margin_minutes": int(pol.margin.total_seconds() // 60),
            "window": _window_json(current, pol.tz) if current and not pol.always else None,
            "next": _window_json(upcoming, pol.tz) if upcoming else None,
            "reason": reason,
        }
        click.echo(json.dumps(payload, indent=2))
        return
    if pol.always:
        click.echo(f"{pol.environment}: OPEN - {reason}")
        return
    state = "OPEN" if current else "CLOSED"
    click.echo(f"{pol.environment}: {state} at {windows.format_local(now, pol.tz)} ({pol.describe()})")
    if current:
        click.echo("  current window:")
        lines = _window_lines(current, pol.tz, now)
    else:
        click.echo(f"  {reason}")
        click.echo("  next window:")
        lines = _window_lines(upcoming, pol.tz)
    for line in lines:
        click.echo(f"    {line}")


@window.command("next")
@window_env_option
@now_option
@click.option("--count", default=5, show_default=True, type=click.IntRange(1, 100), help="How many windows.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def window_next(env_name: str, now_text: str | None, count: int, as_json: bool) -> None:
    """List the current window (if a run may still start in it) and the next ones."""
    from tradedb.core.settings import current_environment_name
    from tradedb.ops import windows

    now = _parse_now(now_text)
    pol = windows.policy(current_environment_name(env_name))
    found = pol.upcoming(now, count)
    if as_json:
        click.echo(json.dumps([_window_json(w, pol.tz) for w in found], indent=2))
        return
    if pol.always:
        click.echo(f"{pol.environment}: {pol.describe()}")
        return
    if not found:
        raise TradeDBError(
            f"no maintenance window for {pol.environment} opens within a year: check {pol.source_file}"
        )
    click.echo(
        f"{pol.environment}: {len(found)} window(s) from {windows.format_local(now, pol.tz)} ({pol.describe()})"
    )
    for i, w in enumerate(found, 1):
        first, second = _window_lines(w, pol.tz, now)
        click.echo(f"  {i:>2}. {first}")
        click.echo(f"      {second}")
