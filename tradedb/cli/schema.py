"""Schema verbs: status, check, validate, drift, seed, lint (the strategy document's scripts are these)."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from tradedb import schema
from tradedb.cli.base import (
    cli,
    console,
    env_option,
    err_console,
    print_data_status,
    resolve_env,
)


@cli.command()
@env_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(env_name: str, as_json: bool) -> None:
    """Show the current revision, head, and what is pending (schema and data)."""
    from tradedb.ops.status import collect

    report = collect(resolve_env(env_name))
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    console.print(f"[bold]{report['environment']}[/] {report['url']}")
    console.print(
        f"current: [bold]{report['current'] or '(empty database)'}[/]   head: [bold]{report['head']}[/]"
    )
    if report["pending"]:
        table = Table(title=f"{len(report['pending'])} pending revision(s)", title_justify="left")
        for column in ("revision", "feature", "ticket", "message", "data impact"):
            table.add_column(column, overflow="fold")
        for r in report["pending"]:
            table.add_row(
                r["revision"], r["feature"], r["ticket"], r["message"].splitlines()[0], r["data_impact"]
            )
        console.print(table)
    else:
        console.print("[green]schema is up to date[/]")
    for line in report["edited_revisions"]:
        console.print(f"[red]edited after applying:[/] {line}")
    print_data_status(report["data_migrations"])


@cli.command()
@env_option
def check(env_name: str) -> None:
    """Exit 1 when the database is behind the code (the strategy's check_migrations.py, done right)."""
    from tradedb.ops.status import check_up_to_date

    ok, message = check_up_to_date(resolve_env(env_name))
    if not ok:
        err_console.print(f"[red]ERROR:[/] {message}")
        sys.exit(1)
    console.print(f"[green]✓[/] {message}")


@cli.command()
@env_option
@click.option("--rows", default=300, show_default=True, help="Sample rows loaded at the first release.")
def validate(env_name: str, rows: int) -> None:
    """Upgrade, downgrade and re-upgrade every revision on a scratch database holding data."""
    from tradedb.ops.validate import validate as run_validation

    def show(step) -> None:
        mark = "[green]✓[/]" if step.ok else "[red]✗[/]"
        console.print(
            f"{mark} {step.revision} [dim]{step.feature:9}[/] {step.message}"
            + (f"  [red]{step.detail}[/]" if step.detail else "")
        )

    report = run_validation(resolve_env(env_name), rows=rows, on_step=show)
    for line in report.drift:
        err_console.print(f"[red]drift at head:[/] {line}")
    if not report.ok:
        err_console.print("[red]ERROR:[/] migration validation failed")
        sys.exit(1)
    console.print(
        f"[green]✓ All {len(report.steps)} migrations validated successfully[/] (up, down, up with data)"
    )


@cli.command()
@env_option
def drift(env_name: str) -> None:
    """Compare the models with the database; exit 1 with a readable diff when they differ."""
    env = resolve_env(env_name)
    lines = schema.drift(env)
    if lines:
        err_console.print(
            f"[red]schema drift on {env.name}:[/] {len(lines)} difference(s) between models and database"
        )
        for line in lines:
            err_console.print(f"  - {line}")
        sys.exit(1)
    console.print(f"[green]✓[/] the {env.name} schema matches the models")


@cli.command()
@env_option
@click.option(
    "--rows", default=2_000, show_default=True, type=click.IntRange(min=1), help="Size of the big tables."
)
@click.option(
    "--seed", "seed_value", default=42, show_default=True, help="Random seed (same seed, same data)."
)
@click.option("--reset", is_flag=True, help="Wipe a database that already holds tables first.")
def seed(env_name: str, rows: int, seed_value: int, reset: bool) -> None:
    """Build the database at the first release and load sample trading data (with legacy shapes)."""
    from tradedb.ops.sample_data import FIRST_RELEASE
    from tradedb.ops.sample_data import seed as run_seed

    env = resolve_env(env_name)
    with console.status(f"seeding {env.name} with {rows} rows (seed {seed_value})"):
        counts = run_seed(env, rows=rows, seed_value=seed_value, reset=reset)
    console.print(f"[green]✓[/] {env.name} at revision {FIRST_RELEASE} with {sum(counts.values())} rows:")
    console.print("  " + ", ".join(f"{t} {n}" for t, n in counts.items()))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.argument("revisions", nargs=-1)
def lint(revisions: tuple[str, ...], as_json: bool) -> None:
    """Lint each revision's own SQL with squawk and check its documentation; exit 1 on any failing finding.

    REVISIONS (ids, prefixes, head, or data-migration names) limit the check; default: the whole history and every
    data migration (their docstring and ticket, and no TODO(scaffold) left). A squawk finding passes only when the
    revision file acknowledges its rule with a reason in `lint_acknowledged`.
    """
    import data_migrations
    from tradedb.ops import data_lint
    from tradedb.ops import lint as linting

    known = data_migrations.registry()
    wanted_data = [name for name in revisions if name in known]
    wanted_revisions = [r for r in revisions if r not in known]
    everything = not revisions
    results = (
        linting.lint_all(None if everything else wanted_revisions) if everything or wanted_revisions else []
    )
    data_results = data_lint.lint_data_migrations(None if everything else wanted_data)
    failing = [r for r in (*results, *data_results) if not r.ok]
    if as_json:
        payload = {
            "ok": not failing,
            "pg_version": linting.PG_VERSION,
            "revisions": [r.to_json() for r in results],
            "data_migrations": [r.to_json() for r in data_results],
        }
        click.echo(json.dumps(payload, indent=2))
        sys.exit(1 if failing else 0)
    if results:
        _print_lint(results, "migration lint (squawk + documentation)", "revision")
    if data_results:
        _print_lint(data_results, "data-migration lint (documentation, scaffold)", "data migration")
    if failing:
        names = ", ".join(f"{r.revision} ({', '.join(sorted({f.rule for f in r.failing}))})" for r in failing)
        err_console.print(
            f"[red]ERROR:[/] {len(failing)} revision(s) or data migration(s) fail lint: {names}. Fix the SQL or the "
            'documentation, or accept a squawk rule in the revision file: lint_acknowledged = {"rule": "why it is '
            'safe here"}'
        )
        sys.exit(1)
    acknowledged = sum(len(r.acknowledged) for r in results)
    stale = sum(len(r.stale) for r in results)
    console.print(
        f"[green]✓[/] {len(results)} revision(s) lint clean: {acknowledged} acknowledged finding(s)"
        + (f", [yellow]{stale} stale acknowledgement(s) to remove[/]" if stale else "")
        + f"; {len(data_results)} data migration(s) documented",
        soft_wrap=True,
    )


LINT_LOG_WIDTH = 160


def _print_lint(results, title: str, what: str) -> None:
    colours = {"failing": "red", "acknowledged": "dim", "stale": "yellow", "clean": "green"}
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in (what, "feature", "rule", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("lines", max_width=12)
    table.add_column("message / reason", overflow="fold", ratio=1)
    for r in results:
        rows = r.rows() or [{"rule": "-", "status": "clean", "lines": [], "message": "", "reason": ""}]
        for i, row in enumerate(rows):
            # an acknowledged finding is explained by its reason; a failing or stale one by what is wrong
            message = (
                f"[dim]{row['reason']}[/]"
                if row["status"] == "acknowledged"
                else row["message"] + (f"\n[dim]acknowledged as: {row['reason']}[/]" if row["reason"] else "")
            )
            table.add_row(
                r.revision if i == 0 else "",
                r.feature if i == 0 else "",
                row["rule"],
                f"[{colours[row['status']]}]{row['status']}[/]",
                ", ".join(map(str, row["lines"])) or "-",
                message,
                end_section=i == len(rows) - 1,
            )
    # CI logs are not terminals (rich would fold everything into 80 columns): give the reasons room there
    (console if console.is_terminal else Console(width=LINT_LOG_WIDTH)).print(table)
