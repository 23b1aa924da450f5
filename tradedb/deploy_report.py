"""Run an environment's deploy job through Dagster from the terminal and print what happened.

The CLI side of ``tradedb deploy``: Dagster's own log lines (including the engine's progress) stream to the
terminal while the job runs; then a table of every asset step and check.
"""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.table import Table

from tradedb.settings import Environment


def run_deploy_job(
    env: Environment,
    console: Console,
    *,
    override_window: str | None = None,
    deadline: datetime | None = None,
) -> bool:
    """Run ``deploy_<env>`` on the persistent instance; print a summary; True when it succeeded.

    ``override_window`` is the operator's reason to run outside the maintenance window (recorded and alerted).
    """
    from orchestration.resources import DEADLINE_TAG, OVERRIDE_TAG
    from orchestration.run import ensure_dagster_home, run_job
    from tradedb.ledger import cli_user

    home = ensure_dagster_home()
    console.print(
        f"[bold]deploy {env.name}[/] ({env.safe_url}) through Dagster job deploy_{env.name} (DAGSTER_HOME={home})"
    )
    tags = {"launched_by": cli_user("cli")}
    if override_window is not None:
        tags[OVERRIDE_TAG] = override_window
    if deadline is not None:
        tags[DEADLINE_TAG] = deadline.isoformat()
    summary = run_job(f"deploy_{env.name}", tags=tags)
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
