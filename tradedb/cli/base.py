"""What every verb shares: the ``tradedb`` group, the consoles, ``--env``, and parsing of times and sizes.

Verbs live one module per group beside this one and register themselves on ``cli``; ``tradedb.cli.main`` imports
them all. Every ``TradeDBError`` becomes one ``error: ...`` line on stderr and exit status 1 (``main``); nothing
prints a password because everything prints ``Environment.safe_url``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click
from rich.console import Console
from rich.table import Table

from tradedb.core.errors import TradeDBError
from tradedb.core.settings import ENVIRONMENTS, Environment, resolve_environment

console = Console()

err_console = Console(stderr=True)

env_option = click.option(
    "--env",
    "env_name",
    envvar="TRADEDB_ENV",
    default="dev",
    show_default=True,
    help=f"Target environment: {', '.join(ENVIRONMENTS)} (default from TRADEDB_ENV).",
)


def resolve_env(env_name: str) -> Environment:
    """The environment a verb targets (its URL resolved, the embedded server started when none is configured)."""
    return resolve_environment(env_name)


@click.group()
def cli() -> None:
    """Orchestrated, checkpointed migrations for the A+ Trading App database."""


def print_data_status(rows: list[dict]) -> None:
    if not rows:
        return
    table = Table(title="data migrations", title_justify="left")
    for column in (
        "name",
        "after",
        "status",
        "done",
        "quarantined",
        "pending rows",
        "seconds",
        "throttled s",
    ):
        table.add_column(column)
    for r in rows:
        pending = "-" if r["pending_rows"] is None else str(r["pending_rows"])
        table.add_row(
            r["name"],
            r["after"],
            r["status"],
            str(r["rows_done"]),
            str(r["rows_quarantined"]),
            pending,
            f"{r['seconds']:.1f}",
            f"{r['throttled_seconds']:.1f}",
        )
    console.print(table)


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}  # suffix -> seconds, for 90s, 30m, 2h, 7d


def parse_time(value: str | None, *, option: str, ago: bool = False) -> datetime | None:
    """Accept an ISO timestamp (naive = UTC) or a duration such as 90s, 30m, 2h, 7d: from now, or ``ago``."""
    if not value:
        return None
    match = re.fullmatch(r"(\d+)([smhd])", value.strip())
    if match:
        try:
            delta = timedelta(seconds=int(match.group(1)) * DURATION_UNITS[match.group(2)])
            return datetime.now(UTC) - delta if ago else datetime.now(UTC) + delta
        except OverflowError:
            raise TradeDBError(
                f"{option} {value!r} is too far away: use a shorter duration or an ISO time"
            ) from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise TradeDBError(
            f"malformed {option} {value!r}: use an ISO time (2026-11-28T06:00+00:00) or 30m/2h/7d"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_deadline(value: str | None) -> datetime | None:
    """A ``--deadline``: an ISO time, or a duration from now."""
    return parse_time(value, option="--deadline")


def human_size(n: int) -> str:
    """Bytes for people: 812 KB, 1.4 GB."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit in ("B", "KB") else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{n} B"
