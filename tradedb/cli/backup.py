"""``tradedb backup``, ``backups`` and ``restore``."""

from __future__ import annotations

import json

import click
from rich.table import Table

from tradedb.cli.base import (
    cli,
    console,
    env_option,
    err_console,
    human_size,
    resolve_env,
)
from tradedb.core.settings import Environment


@cli.command()
@env_option
@click.option(
    "--reason", default="manual backup", show_default=True, help="Why (kept in the manifest and row)."
)
@click.option("--jobs", type=click.IntRange(1, 32), help="Parallel pg_dump workers (default [backups] jobs).")
def backup(env_name: str, reason: str, jobs: int | None) -> None:
    """Back up the database (pg_dump directory format) with table checksums of the same snapshot."""
    from tradedb.ops.backup import take_backup

    env = resolve_env(env_name)
    with console.status(f"backing up {env.name} ({env.safe_url})"):
        made = take_backup(env, reason=reason, jobs=jobs)
    console.print(
        f"[green]✓[/] backup [bold]{made.id}[/] of {env.name} at revision {made.revision or '(empty)'}"
    )
    console.print(f"  path: {made.path}")
    console.print(
        f"  {human_size(made.size_bytes)}, {made.duration_s:.1f}s, {made.tables} tables checksummed, "
        f"pg_dump {made.tool_version} with {made.jobs} job(s)"
    )
    if made.pruned:
        console.print(f"  retention removed: {', '.join(made.pruned)}")


@cli.command()
@env_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the manifests).")
@click.option("--prune", "do_prune", is_flag=True, help="Apply retention now ([backups] keep).")
def backups(env_name: str, as_json: bool, do_prune: bool) -> None:
    """List the backups of an environment, newest first (read from their manifests)."""
    from tradedb.ops.backup import environment_folder, list_backups, prune

    if do_prune:
        target: Environment | str = resolve_env(env_name)
        removed = prune(target)
        err_console.print(f"pruned {len(removed)} backup(s)" + (f": {', '.join(removed)}" if removed else ""))
    found = list_backups(env_name)
    if as_json:
        click.echo(json.dumps([b.manifest() for b in found], indent=2, default=str))
        return
    if not found:
        console.print(f"no backups of {env_name} in {environment_folder(env_name)}")
        return
    table = Table(
        title=f"{len(found)} backup(s) of {env_name} in {environment_folder(env_name)}", title_justify="left"
    )
    table.add_column("id (time_revision)", no_wrap=True)  # operators copy it into `tradedb restore`
    table.add_column("size", no_wrap=True, justify="right")
    for column in ("tables", "reason", "launched by"):
        table.add_column(column, overflow="fold")
    for b in found:
        table.add_row(b.id, human_size(b.size_bytes), str(b.tables), b.reason, b.launched_by)
    console.print(table)


@cli.command()
@click.argument("backup_id")
@env_option
@click.option("--from-env", "source_name", help="Environment the backup was taken of (default: --env).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@click.option(
    "--allow-cross-env",
    is_flag=True,
    help="Confirm restoring another environment's backup into production (needed even with --yes).",
)
@click.option("--no-verify", is_flag=True, help="Skip comparing table checksums with the backup's.")
@click.option("--jobs", type=click.IntRange(1, 32), help="Parallel pg_restore workers.")
def restore(
    backup_id: str,
    env_name: str,
    source_name: str | None,
    yes: bool,
    allow_cross_env: bool,
    no_verify: bool,
    jobs: int | None,
) -> None:
    """Replace a database with backup BACKUP_ID (or `latest`), verified before it goes live.

    Refused while a migration or another restore holds the target's migration lock. In production the replaced
    database is kept as <db>_old_<time>, for the on-call engineer to drop (an in-place restore backs it up first).
    """
    from tradedb.core.settings import current_environment_name
    from tradedb.ops.backup import check_restore_allowed, find_backup
    from tradedb.ops.backup import restore as run_restore

    target = resolve_env(env_name)
    found = find_backup(current_environment_name(source_name or target.name), backup_id)
    # before any question: a missing --allow-cross-env must not be discovered after the operator typed "production"
    check_restore_allowed(found, target, allow_production=True, allow_cross_environment=allow_cross_env)
    if not yes:
        origin = "" if found.environment == target.name else " (ANOTHER environment)"
        _confirm_restore(
            target,
            f"backup {found.id} of {found.environment}{origin} (revision {found.revision or '(empty)'}, "
            f"taken {found.taken_at:%Y-%m-%d %H:%M} UTC)",
        )
    with console.status(f"restoring {found.id} into {target.name}"):
        result = run_restore(
            found,
            target,
            verify=not no_verify,
            allow_production=True,
            allow_cross_environment=allow_cross_env,
            jobs=jobs,
        )
    checked = (
        f"{result.tables_verified} tables verified against the backup's checksums"
        if result.verified
        else "not verified"
    )
    console.print(
        f"[green]✓[/] restored {result.backup_id} ({result.source_environment}) into {result.target_environment} "
        f"(database {result.database}) by {result.mode}"
    )
    console.print(f"  {checked}, {result.seconds:.1f}s")
    if result.kept_database:
        console.print(
            f"  the replaced database was kept as [bold]{result.kept_database}[/]; drop it once it is no longer "
            f'needed: DROP DATABASE "{result.kept_database}";',
            soft_wrap=True,
        )
    if result.safety_backup:
        console.print(
            f"  the data it replaced was backed up first as [bold]{result.safety_backup}[/] (restore it with "
            f"`tradedb restore {result.safety_backup} --env {result.target_environment}`)",
            soft_wrap=True,
        )


def _confirm_restore(target: Environment, replacement: str) -> None:
    """Ask before replacing a database; production must be typed out, since a y/N reflex is not enough there."""
    console.print(f"the {target.name} database {target.safe_url} will be replaced by {replacement}")
    if target.name == "production":
        typed = click.prompt("type production to restore into it", default="", show_default=False)
        if typed != "production":
            raise click.exceptions.Abort()
    else:
        click.confirm("restore?", abort=True)
