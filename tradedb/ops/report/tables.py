"""The report at a terminal: outcome, step and slowest-step tables and the size line (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tradedb.ops.report.figures import Report, format_signed_size, format_size, step_label


def render(report: Report, console: Console) -> None:
    """Print the report as rich tables."""
    period = f"since {report.since:%Y-%m-%d %H:%M} UTC" if report.since else "whole ledger"
    console.print(f"[bold]run report: {report.environment or 'all environments'}[/] ({period})")
    if report.empty:
        console.print("no ledger entries in this period: nothing to report")
        return
    console.print(
        f"{report.entries} entries from {report.first_at:%Y-%m-%d %H:%M} to {report.last_at:%Y-%m-%d %H:%M} UTC"
    )
    console.print(_outcomes_table(report))
    console.print(_steps_table(report))
    console.print(_slowest_table(report))
    console.print(_size_line(report))
    console.print(
        f"downgrades: {report.downgrades}   stamps: {report.stamps}   data reverts: {report.reverts}"
    )
    for f in report.failures[-5:]:
        when = f["started_at"][:16].replace("T", " ")
        what = escape(f"{step_label(f['kind'], f['name'], f['direction'])}: {f['error'] or ''}")
        console.print(f"[red]failure[/] {when} {what}")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _outcomes_table(report: Report) -> Table:
    table = Table(title="outcomes", title_justify="left")
    for column in ("kind", "total", "success", "failure", "stopped", "success rate"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    rows = [(k, t) for k, t in report.by_kind.items()] + [("overall", report.overall)]
    for name, t in rows:
        style = "bold" if name == "overall" else None
        table.add_row(
            name,
            str(t.total),
            str(t.successes),
            str(t.failures),
            str(t.stopped),
            _rate(t.success_rate),
            style=style,
        )
    return table


def _steps_table(report: Report) -> Table:
    table = Table(title="steps", title_justify="left")
    for column in ("kind", "step", "runs", "failures", "mean s", "max s", "last s", "last outcome"):
        table.add_column(
            column,
            justify="right" if column.endswith(("s", "runs", "failures")) and column != "kind" else "left",
        )
    for s in report.steps:
        colour = (
            "red" if s.last_outcome == "failure" else "green" if s.last_outcome == "success" else "yellow"
        )
        table.add_row(
            s.kind,
            escape(s.label),
            str(s.count),
            str(s.failures),
            f"{s.mean_s:.2f}",
            f"{s.max_s:.2f}",
            f"{s.last_s:.2f}",
            f"[{colour}]{s.last_outcome}[/]",
        )
    return table


def _slowest_table(report: Report) -> Table:
    table = Table(title=f"slowest {len(report.slowest)} step(s)", title_justify="left")
    for column in ("step", "kind", "started (UTC)", "seconds", "outcome", "launched by"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for s in report.slowest:
        table.add_row(
            escape(s.label),
            s.kind,
            f"{s.started_at:%Y-%m-%d %H:%M}",
            f"{s.duration_s:.2f}",
            s.outcome,
            escape(s.launched_by),
        )
    return table


def _size_line(report: Report) -> str:
    if report.size_end is None:
        return "database size: not recorded"
    return (
        f"database size: {format_size(report.size_start)} -> {format_size(report.size_end)} "
        f"({format_signed_size(report.size_change or 0)} over the period)"
    )
