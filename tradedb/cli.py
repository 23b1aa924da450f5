"""The ``tradedb`` command line: thin verbs over the core, like Alembic's command layer.

Each verb resolves the environment, calls one core function and renders its result. Every ``TradeDBError``
becomes one ``error: ...`` line on stderr and exit status 1 (2 for usage errors, as click does); nothing prints a
password because everything prints ``Environment.safe_url``.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import OperationalError

from tradedb import schema
from tradedb.errors import TradeDBError
from tradedb.settings import ENVIRONMENTS, Environment, resolve_environment

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


def _env(env_name: str) -> Environment:
    return resolve_environment(env_name)


@click.group()
def cli() -> None:
    """Orchestrated, checkpointed migrations for the A+ Trading App database."""


# ----------------------------------------------------------------------------------------------- schema status


@cli.command()
@env_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(env_name: str, as_json: bool) -> None:
    """Show the current revision, head, and what is pending (schema and data)."""
    from tradedb.status import collect

    report = collect(_env(env_name))
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
    _print_data_status(report["data_migrations"])


def _print_data_status(rows: list[dict]) -> None:
    if not rows:
        return
    table = Table(title="data migrations", title_justify="left")
    for column in ("name", "after", "status", "done", "quarantined", "pending rows"):
        table.add_column(column)
    for r in rows:
        pending = "-" if r["pending_rows"] is None else str(r["pending_rows"])
        table.add_row(
            r["name"], r["after"], r["status"], str(r["rows_done"]), str(r["rows_quarantined"]), pending
        )
    console.print(table)


@cli.command()
@env_option
def check(env_name: str) -> None:
    """Exit 1 when the database is behind the code (the strategy's check_migrations.py, done right)."""
    from tradedb.status import check_up_to_date

    ok, message = check_up_to_date(_env(env_name))
    if not ok:
        err_console.print(f"[red]ERROR:[/] {message}")
        sys.exit(1)
    console.print(f"[green]✓[/] {message}")


@cli.command()
@env_option
@click.option("--rows", default=300, show_default=True, help="Sample rows loaded at the first release.")
def validate(env_name: str, rows: int) -> None:
    """Upgrade, downgrade and re-upgrade every revision on a scratch database holding data."""
    from tradedb.validate import validate as run_validation

    def show(step) -> None:
        mark = "[green]✓[/]" if step.ok else "[red]✗[/]"
        console.print(
            f"{mark} {step.revision} [dim]{step.feature:9}[/] {step.message}"
            + (f"  [red]{step.detail}[/]" if step.detail else "")
        )

    report = run_validation(_env(env_name), rows=rows, on_step=show)
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
    env = _env(env_name)
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
    from tradedb.sample_data import FIRST_RELEASE
    from tradedb.sample_data import seed as run_seed

    env = _env(env_name)
    with console.status(f"seeding {env.name} with {rows} rows (seed {seed_value})"):
        counts = run_seed(env, rows=rows, seed_value=seed_value, reset=reset)
    console.print(f"[green]✓[/] {env.name} at revision {FIRST_RELEASE} with {sum(counts.values())} rows:")
    console.print("  " + ", ".join(f"{t} {n}" for t, n in counts.items()))


# ----------------------------------------------------------------------------------------------- data migrations


@cli.group()
def data() -> None:
    """Batched, checkpointed data migrations."""


@data.command("list")
def data_list() -> None:
    """List the declared data migrations."""
    from data_migrations import registry

    contract = {name: r.revision for r in schema.revisions() for name in r.requires_data}
    table = Table()
    for column in ("name", "feature", "after", "needed by", "table", "kind", "revert", "on bad row"):
        table.add_column(column)
    for m in registry().values():
        table.add_row(
            m.name,
            m.feature,
            m.after,
            contract.get(m.name, "-"),
            m.table,
            m.kind,
            "yes" if m.reversible else "no",
            m.on_bad_row,
        )
    console.print(table)


@data.command("status")
@env_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def data_status(env_name: str, as_json: bool) -> None:
    """Show each data migration's state and rows still pending."""
    from tradedb.status import data_status as collect

    rows = collect(_env(env_name))
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        _print_data_status(rows)


def parse_deadline(value: str | None) -> datetime | None:
    """Accept an ISO timestamp (naive = UTC) or a duration from now such as 90s, 30m, 2h."""
    if not value:
        return None
    match = re.fullmatch(r"(\d+)([smh])", value.strip())
    if match:
        seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]
        return datetime.now(UTC) + timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise TradeDBError(
            f"malformed --deadline {value!r}: use an ISO time (2026-11-28T06:00+00:00) or 30m/2h"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@data.command("run")
@env_option
@click.argument("names", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Run every data migration the schema is ready for.")
@click.option(
    "--deadline", help="Stop cleanly before this time (ISO) or after this long (30m); resume later."
)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 32), help="Parallel worker processes."
)
@click.option("--batch-size", type=click.IntRange(1), help="Pin the batch size (default: adaptive).")
@click.option("--max-batches", type=int, hidden=True)
def data_run(
    env_name: str,
    names: tuple[str, ...],
    run_all: bool,
    deadline: str | None,
    workers: int,
    batch_size: int | None,
    max_batches: int | None,
) -> None:
    """Run data migrations to completion with a live progress bar."""
    from data_migrations import get
    from data_migrations.runs import run_with_progress, runnable

    env = _env(env_name)
    if bool(names) == run_all:
        raise TradeDBError("name one or more data migrations, or pass --all")
    selected = runnable(env) if run_all else [get(n).name for n in names]
    if not selected:
        console.print("nothing to run: no data migration is pending at this revision")
        return
    failed = False
    for name in selected:
        result = run_with_progress(
            env,
            name,
            deadline=parse_deadline(deadline),
            workers=workers,
            batch_size=batch_size,
            max_batches=max_batches,
            console=console,
        )
        colour = "green" if result.status == "finished" else "yellow"
        console.print(
            f"[{colour}]{result.status}[/] {name}: {result.rows_done} rows migrated, {result.rows_quarantined} "
            f"quarantined of {result.source_rows}, {result.batches} batches, {result.retries} retries, "
            f"{result.seconds:.1f}s ({result.rows_per_s:,.0f} rows/s)"
            + (f" - {result.stop_reason}" if result.stop_reason else "")
        )
        failed |= result.status not in ("finished",)
    if failed:
        sys.exit(3)


OPERATOR_REQUESTS = {  # verb -> (status it requests, help)
    "pause": ("paused", "Pause a running data migration (its runners wait after their current batch)."),
    "resume": ("running", "Resume a paused data migration."),
    "cancel": (
        "cancelled",
        "Cancel a data migration; runners stop after their current batch, checkpoints are kept.",
    ),
}


def _operator_request(verb: str, to: str, help_text: str) -> None:
    """Register ``tradedb data <verb> NAME``: write the requested status for the runners to see."""

    @data.command(verb, help=help_text)
    @env_option
    @click.argument("name")
    def command(env_name: str, name: str) -> None:
        from data_migrations import get, state
        from tradedb.db import connect_checked

        migration = get(name)
        with connect_checked(_env(env_name)) as conn:
            before = state.request(conn, migration.name, to)
        console.print(f"{migration.name}: {before} -> {to}")


for _verb, (_to, _help) in OPERATOR_REQUESTS.items():
    _operator_request(_verb, _to, _help)


@data.command("revert")
@env_option
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def data_revert(env_name: str, name: str, yes: bool) -> None:
    """Undo a reversible data migration (range by range) and forget its state, so it can run again."""
    from data_migrations import engine, get

    env = _env(env_name)
    migration = get(name)
    if not yes:
        click.confirm(f"revert {migration.name} on {env.name} ({env.safe_url})?", abort=True)
    ranges = engine.revert(env.url, migration.name)
    console.print(f"[green]✓[/] reverted {migration.name} on {env.name} in {ranges} range(s)")


@data.command("quarantine")
@env_option
@click.argument("name")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def data_quarantine(env_name: str, name: str, limit: int, as_json: bool) -> None:
    """Show rows a data migration could not transform, with the reason and the original row."""
    from data_migrations import get, state
    from tradedb.db import connect_checked

    migration = get(name)
    with connect_checked(_env(env_name)) as conn:
        rows = state.quarantined(conn, migration.name, limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"{migration.name}: {len(rows)} quarantined row(s) shown", title_justify="left")
    for column in ("key", "reason", "original row"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(str(r["row_key"]), r["reason"], json.dumps(r["row_data"], default=str)[:200])
    console.print(table)


# ----------------------------------------------------------------------------------------------- the whole pipeline


@cli.command()
@env_option
def deploy(env_name: str) -> None:
    """Run the Dagster job deploy_<env> (the one the UI launches): schema, data migrations, checks."""
    from tradedb.deploy_report import run_deploy_job

    if not run_deploy_job(_env(env_name), console):
        sys.exit(1)


@cli.command()
@click.option("--rows", default=20_000, show_default=True, type=click.IntRange(min=1))
def demo(rows: int) -> None:
    """Seed the dev database at release 1.0 (wiping it), then run the deploy_dev job, with progress."""
    from tradedb.deploy_report import run_deploy_job
    from tradedb.sample_data import seed as run_seed

    env = _env("dev")
    with console.status(f"seeding {env.name} at release 1.0 with {rows} rows"):
        counts = run_seed(env, rows=rows, reset=True)
    console.print(
        f"[green]✓[/] seeded {env.name} ({env.safe_url}) with {sum(counts.values())} rows at release 1.0"
    )
    if not run_deploy_job(env, console):
        sys.exit(1)


@cli.command()
@click.option("--port", default=3000, show_default=True)
def ui(port: int) -> None:
    """Start `dagster dev -w workspace.yaml` on the persistent instance (.dagster_home), where CLI runs show too."""
    import os
    import shutil

    from orchestration.run import ensure_dagster_home
    from tradedb.settings import project_root

    home = ensure_dagster_home()
    console.print(f"DAGSTER_HOME={home}; Dagster UI on http://127.0.0.1:{port}")
    os.chdir(project_root())
    dagster = shutil.which("dagster") or "dagster"
    os.execvp(dagster, [dagster, "dev", "-w", "workspace.yaml", "-p", str(port)])


# ----------------------------------------------------------------------------------------------- maintenance windows
# (window status|next)

# ----------------------------------------------------------------------------------------------- backups
# (backup, restore)

# ----------------------------------------------------------------------------------------------- rehearsal and plan
# (rehearse, plan)

# ----------------------------------------------------------------------------------------------- lint
# (lint)

# ----------------------------------------------------------------------------------------------- ledger and reports
# (report, ledger)


def main() -> None:
    """Console-script entry point: one clear line for every error the operator can fix."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TradeDBError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OperationalError as exc:
        click.echo(f"error: database error: {str(exc.orig).splitlines()[0] if exc.orig else exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
