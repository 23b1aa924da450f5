"""The whole pipeline through Dagster: deploy, demo, ui, dagster-config, rehearse, plan.

``deploy`` streams Dagster's own log lines (including the engine's progress) while the job runs, then prints a
table of every asset step and check.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

import click
from rich.console import Console
from rich.table import Table

from tradedb.cli.base import (
    cli,
    console,
    env_option,
    err_console,
    parse_deadline,
    resolve_env,
)
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import Environment


@cli.command()
@env_option
@click.option(
    "--override-window",
    metavar="REASON",
    help="Run outside the maintenance window; the reason is written to the ledger and alerted.",
)
@click.option(
    "--deadline",
    help="Stop data migrations by this time (ISO) or after this long (30m); never past the window.",
)
@click.option(
    "--parallel",
    default=1,
    show_default=True,
    type=click.IntRange(1, 16),
    help="Steps at once: N > 1 runs data migrations on different tables side by side (a process per step).",
)
def deploy(env_name: str, override_window: str | None, deadline: str | None, parallel: int) -> None:
    """Run the Dagster job deploy_<env> (the one the UI launches): schema, data migrations, checks."""
    env = resolve_env(env_name)
    if override_window is None:
        from tradedb.ops.windows import require_window

        require_window(env.name)  # refuse here, before Dagster starts, with the same message the run gives
    elif not override_window.strip():
        raise TradeDBError("--override-window needs a reason (it is recorded in the ledger)")
    if not run_deploy_job(
        env, console, override_window=override_window, deadline=parse_deadline(deadline), parallel=parallel
    ):
        sys.exit(1)


@cli.command()
@click.option("--rows", default=20_000, show_default=True, type=click.IntRange(min=1))
def demo(rows: int) -> None:
    """Seed the dev database at release 1.0 (wiping it), then run the deploy_dev job, with progress."""
    from tradedb.ops.sample_data import seed as run_seed

    env = resolve_env("dev")
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

    from orchestration.instance import dagster_home, open_instance
    from tradedb.core.paths import project_root

    with (
        open_instance()
    ):  # a dagster.yaml that cannot load is one error line here, not a traceback from dagster
        home = dagster_home()
    console.print(f"DAGSTER_HOME={home}; Dagster UI on http://127.0.0.1:{port}")
    os.chdir(project_root())
    dagster = shutil.which("dagster") or "dagster"
    os.execvp(dagster, [dagster, "dev", "-w", "workspace.yaml", "-p", str(port)])


@cli.command("dagster-config")
@click.option(
    "--postgres",
    "postgres_url",
    metavar="URL",
    help="Write dagster.yaml with Dagster's storage in this PostgreSQL database (its own, never the app's).",
)
@click.option(
    "--password-env",
    default="DAGSTER_PG_PASSWORD",
    show_default=True,
    help="The variable the written file reads the storage password from (a password is never written).",
)
@click.option("--force", is_flag=True, help="Replace an existing, different dagster.yaml.")
def dagster_config(postgres_url: str | None, password_env: str, force: bool) -> None:
    """Show and check $DAGSTER_HOME/dagster.yaml, or write one with Dagster's storage on PostgreSQL (--postgres)."""
    from orchestration.instance import ensure_dagster_home, write_postgres_config

    if postgres_url is None:
        from orchestration.dagster_yaml import storage_of

        path = ensure_dagster_home() / "dagster.yaml"
        console.print(f"{path}: {storage_of(path).describe()}; Dagster loads it")
        return
    if not password_env.isidentifier():
        raise TradeDBError(f"--password-env {password_env!r} is not a variable name")
    written = write_postgres_config(postgres_url, password_env=password_env, force=force)
    console.print(
        f"[green]✓[/] {'replaced' if written.replaced else 'wrote'} {written.path}: {written.storage.describe()}, "
        "pools and run monitoring as tradedb's default; Dagster loaded it and created its tables"
    )
    if written.password_env:
        import os

        console.print(
            f"the password is not in the file: it reads {written.password_env}; set it for tradedb, "
            "dagster-webserver and dagster-daemon (or use ~/.pgpass and delete the password entry)"
            + (
                ""
                if os.environ.get(written.password_env)
                else f" ({written.password_env} is not set here yet)"
            )
        )


@cli.command()
def rehearse() -> None:
    """Run the Dagster job rehearse_staging: refresh staging from production, deploy, check, round-trip."""
    from orchestration.instance import ensure_dagster_home
    from orchestration.launch import latest_rehearsal_report, run_job

    staging = resolve_env("staging")
    console.print(f"[bold]rehearse on staging[/] ({staging.safe_url}), DAGSTER_HOME={ensure_dagster_home()}")
    summary = run_job("rehearse_staging")
    report = latest_rehearsal_report() if summary.success else None
    if report is not None:
        for line in report.summary():
            console.print(line)
    if not summary.success:
        err_console.print(f"[red]rehearsal failed[/]: {summary.failure}")
        sys.exit(1)
    console.print(f"[green]rehearsal {report.fingerprint if report else ''} passed[/]; see `tradedb plan`")


@cli.command()
@env_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plan(env_name: str, as_json: bool) -> None:
    """What a deploy would do now: steps, rehearsed durations and locks, window need, backup, rollback commands."""
    from orchestration.launch import latest_rehearsal_report
    from tradedb.ops.plan import SCALING, build_plan

    deployment = build_plan(resolve_env(env_name), latest_rehearsal_report())
    if as_json:
        click.echo(json.dumps(deployment.to_json(), indent=2, default=str))
        return
    console.print(
        f"[bold]{deployment.environment}[/]: {deployment.current or '(empty)'} -> {deployment.head}, "
        f"{len(deployment.steps)} step(s) pending"
    )
    console.print(f"rehearsal: {deployment.rehearsal}")
    console.print(f"estimates: {SCALING}")
    console.print(f"backup to restore: {deployment.backup}")
    if not deployment.steps:
        console.print("[green]nothing pending[/]")
        return
    table = Table()
    for column in ("step", "estimate", "longest lock", "window?", "rollback"):
        table.add_column(column, overflow="fold")
    for s in deployment.steps:
        table.add_row(
            f"{s.kind} {s.name}",
            s.estimate_text + (f" ({s.basis})" if s.basis else ""),
            s.lock_text,
            ("[yellow]window[/]" if s.needs_window else "online") + f": {s.why}",
            s.rollback,
        )
    console.print(table)
    total = deployment.estimated_seconds
    console.print(
        "estimated total: "
        + ("unknown (rehearse first)" if total is None else f"{total:,.1f} s")
        + ("; needs a maintenance window" if deployment.needs_window else "; can run online")
    )


def run_deploy_job(
    env: Environment,
    console: Console,
    *,
    override_window: str | None = None,
    deadline: datetime | None = None,
    parallel: int = 1,
) -> bool:
    """Run ``deploy_<env>`` on the persistent instance; print a summary; True when it succeeded.

    ``override_window`` is the operator's reason to run outside the maintenance window (recorded and alerted);
    ``parallel`` > 1 runs data migrations on different tables side by side (``orchestration.executor``).
    """
    from orchestration.instance import ensure_dagster_home
    from orchestration.launch import run_job
    from orchestration.resources import DEADLINE_TAG, OVERRIDE_TAG
    from tradedb.core.launchers import cli_user

    home = ensure_dagster_home()
    console.print(
        f"[bold]deploy {env.name}[/] ({env.safe_url}) through Dagster job deploy_{env.name} (DAGSTER_HOME={home})"
    )
    tags = {"launched_by": cli_user("cli")}
    if override_window is not None:
        tags[OVERRIDE_TAG] = override_window
    if deadline is not None:
        tags[DEADLINE_TAG] = deadline.isoformat()
    summary = run_job(f"deploy_{env.name}", tags=tags, parallel=parallel)
    table = Table(title=f"run {summary.run_id}", title_justify="left")
    for column in ("step", "outcome", "figures"):
        table.add_column(column, overflow="fold")
    for asset, outcome, meta in summary.steps:
        figures = ", ".join(
            f"{k}={meta[k]}"
            for k in ("duration_s", "rows_done", "rows_quarantined", "batches", "rows_per_s", "seconds")
            if k in meta
        )
        table.add_row(asset, outcome, figures)
    console.print(table)
    failed = [name for name, passed in summary.checks if not passed]
    console.print(
        f"checks: {len(summary.checks) - len(failed)} passed, {len(failed)} failed"
        + (f": {', '.join(failed)}" if failed else "")
    )
    if summary.success:
        console.print(f"[green]deploy {env.name} succeeded[/]; see it with `tradedb ui`")
    else:
        console.print(f"[red]deploy {env.name} failed[/]: {summary.failure}")
    return summary.success
