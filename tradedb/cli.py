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
    for line in report["edited_revisions"]:
        console.print(f"[red]edited after applying:[/] {line}")
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
    ranges = engine.revert(env.url, migration.name, options=engine.RunOptions(environment=env.name))
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
@click.option(
    "--override-window",
    metavar="REASON",
    help="Run outside the maintenance window; the reason is written to the ledger and alerted.",
)
@click.option(
    "--deadline",
    help="Stop data migrations by this time (ISO) or after this long (30m); never past the window.",
)
def deploy(env_name: str, override_window: str | None, deadline: str | None) -> None:
    """Run the Dagster job deploy_<env> (the one the UI launches): schema, data migrations, checks."""
    from tradedb.deploy_report import run_deploy_job

    env = _env(env_name)
    if override_window is None:
        from tradedb.windows import require_window

        require_window(env.name)  # refuse here, before Dagster starts, with the same message the run gives
    elif not override_window.strip():
        raise TradeDBError("--override-window needs a reason (it is recorded in the ledger)")
    if not run_deploy_job(env, console, override_window=override_window, deadline=parse_deadline(deadline)):
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
    from tradedb.windows import format_local

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
    from tradedb.windows import format_duration, format_local, format_utc

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
    from tradedb import windows
    from tradedb.settings import current_environment_name

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
    from tradedb import windows
    from tradedb.settings import current_environment_name

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


# ----------------------------------------------------------------------------------------------- backups
# (backup, restore)


def _size(n: int) -> str:
    """Bytes for people: 812 KB, 1.4 GB."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit in ("B", "KB") else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{n} B"


@cli.command()
@env_option
@click.option(
    "--reason", default="manual backup", show_default=True, help="Why (kept in the manifest and row)."
)
@click.option("--jobs", type=click.IntRange(1, 32), help="Parallel pg_dump workers (default [backups] jobs).")
def backup(env_name: str, reason: str, jobs: int | None) -> None:
    """Back up the database (pg_dump directory format) with table checksums of the same snapshot."""
    from tradedb.backup import take_backup

    env = _env(env_name)
    with console.status(f"backing up {env.name} ({env.safe_url})"):
        made = take_backup(env, reason=reason, jobs=jobs)
    console.print(
        f"[green]✓[/] backup [bold]{made.id}[/] of {env.name} at revision {made.revision or '(empty)'}"
    )
    console.print(f"  path: {made.path}")
    console.print(
        f"  {_size(made.size_bytes)}, {made.duration_s:.1f}s, {made.tables} tables checksummed, "
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
    from tradedb.backup import environment_folder, list_backups, prune

    if do_prune:
        target: Environment | str = _env(env_name)
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
        table.add_row(b.id, _size(b.size_bytes), str(b.tables), b.reason, b.launched_by)
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
    from tradedb.backup import check_restore_allowed, find_backup
    from tradedb.backup import restore as run_restore
    from tradedb.settings import current_environment_name

    target = _env(env_name)
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


# ----------------------------------------------------------------------------------------------- rehearsal and plan
# (rehearse, plan)


@cli.command()
def rehearse() -> None:
    """Run the Dagster job rehearse_staging: refresh staging from production, deploy, check, round-trip."""
    from orchestration.run import ensure_dagster_home, latest_rehearsal_report, run_job

    staging = _env("staging")
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
    from orchestration.run import latest_rehearsal_report
    from tradedb.plan import build_plan

    deployment = build_plan(_env(env_name), latest_rehearsal_report())
    if as_json:
        click.echo(json.dumps(deployment.to_json(), indent=2, default=str))
        return
    console.print(
        f"[bold]{deployment.environment}[/]: {deployment.current or '(empty)'} -> {deployment.head}, "
        f"{len(deployment.steps)} step(s) pending"
    )
    console.print(f"rehearsal: {deployment.rehearsal}")
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
            s.estimate_text,
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


# ----------------------------------------------------------------------------------------------- lint
# (lint)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.argument("revisions", nargs=-1)
def lint(revisions: tuple[str, ...], as_json: bool) -> None:
    """Lint each revision's own SQL with squawk and check its documentation; exit 1 on any failing finding.

    REVISIONS (ids, prefixes, head) limit the check; default: the whole history. A finding passes only when the
    revision file acknowledges its rule with a reason in `lint_acknowledged`.
    """
    from tradedb import lint as linting

    results = linting.lint_all(revisions or None)
    failing = [r for r in results if not r.ok]
    if as_json:
        payload = {
            "ok": not failing,
            "pg_version": linting.PG_VERSION,
            "revisions": [r.to_json() for r in results],
        }
        click.echo(json.dumps(payload, indent=2))
        sys.exit(1 if failing else 0)
    _print_lint(results)
    if failing:
        names = ", ".join(f"{r.revision} ({', '.join(sorted({f.rule for f in r.failing}))})" for r in failing)
        err_console.print(
            f"[red]ERROR:[/] {len(failing)} revision(s) fail lint: {names}. Fix the SQL or the documentation, or "
            'accept a squawk rule in the revision file: lint_acknowledged = {"rule": "why it is safe here"}'
        )
        sys.exit(1)
    acknowledged = sum(len(r.acknowledged) for r in results)
    stale = sum(len(r.stale) for r in results)
    console.print(
        f"[green]✓[/] {len(results)} revision(s) lint clean: {acknowledged} acknowledged finding(s)"
        + (f", [yellow]{stale} stale acknowledgement(s) to remove[/]" if stale else "")
    )


LINT_LOG_WIDTH = 160


def _print_lint(results) -> None:
    colours = {"failing": "red", "acknowledged": "dim", "stale": "yellow", "clean": "green"}
    table = Table(title="migration lint (squawk + documentation)", title_justify="left", show_lines=False)
    for column in ("revision", "feature", "rule", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("SQL lines", max_width=12)
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


# ----------------------------------------------------------------------------------------------- ledger and reports
# (report, ledger)


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
    from tradedb import report as reports

    result = reports.collect(
        _env(env_name), since=parse_time(since, option="--since", ago=True), slowest=slowest
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

    from tradedb import alerts
    from tradedb.settings import current_environment_name

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
