"""``tradedb report`` (from the ledger) and ``tradedb alerts`` (the alert log, a webhook test)."""

from __future__ import annotations

import json

import click
from rich.table import Table

from tradedb.cli.base import (
    cli,
    console,
    env_option,
    parse_time,
    resolve_env,
)


@cli.command("report")
@env_option
@click.option("--since", help="Only entries started after this ISO time, or this long ago (30m, 12h, 7d).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (a chart only with --out).")
@click.option("--out", help="Where to write the chart PNG (default reports/<env>_<UTC time>.png).")
@click.option("--no-chart", is_flag=True, help="Do not draw the chart.")
@click.option("--slowest", default=5, show_default=True, type=click.IntRange(0, 99), help="Slowest shown.")
def report_command(
    env_name: str, since: str | None, as_json: bool, out: str | None, no_chart: bool, slowest: int
) -> None:
    """Success rates, step durations, slowest steps and database size from the ledger, with a chart."""
    from tradedb.ops import report as reports

    result = reports.collect(
        resolve_env(env_name), since=parse_time(since, option="--since", ago=True), slowest=slowest
    )
    wanted = not no_chart and (out is not None or not as_json)
    chart = reports.write_chart(result, out) if wanted and not result.empty else None
    if as_json:
        click.echo(reports.to_json_text(result, chart))
        return
    reports.render(result, console)
    if chart is not None:
        console.print(f"chart: {chart}")


@cli.command("alerts")
@click.option("--env", "env_name", help="Only this environment's alerts (default all); target of --test.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="How many alerts.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--test", "test", is_flag=True, help="Post a test alert to the environment's webhook now.")
def alerts_command(env_name: str | None, limit: int, as_json: bool, test: bool) -> None:
    """List recent alerts from the alert log, or check that an environment's webhook works (--test)."""
    from rich.markup import escape

    from tradedb.core import alerts
    from tradedb.core.settings import current_environment_name

    if test:
        name = current_environment_name(env_name)
        outcome = alerts.send_test(name)
        console.print(f"[green]✓[/] test alert delivered to the {name} webhook ({outcome.reason})")
        return
    rows = alerts.recent(limit, environment=env_name)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        console.print(f"no alerts in {alerts.log_path()}")
        return
    table = Table(title=f"last {len(rows)} alert(s) from {alerts.log_path()}", title_justify="left")
    for column in ("time (UTC)", "env", "kind", "severity", "title", "delivery"):
        table.add_column(column, overflow="fold")
    for r in rows:
        cells = [r.get(k, "") for k in ("time", "environment", "kind", "severity", "title", "delivery")]
        cells[0] = str(cells[0])[:19].replace("T", " ")
        table.add_row(*(escape(str(c)) for c in cells))
    console.print(table)
