"""``tradedb data ...``: list, status, run with a progress bar, pause/resume/cancel, revert, quarantine."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from tradedb import schema
from tradedb.cli.base import (
    cli,
    console,
    env_option,
    parse_deadline,
    print_data_status,
    resolve_env,
)
from tradedb.core.errors import TradeDBError, first_line


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
    from tradedb.ops.status import data_status as collect

    rows = collect(resolve_env(env_name))
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        print_data_status(rows)


class WorkersType(click.ParamType):
    """``auto`` or a whole number of workers from 1 to 32."""

    name = "auto|N"

    def convert(self, value, param, ctx) -> int | str:
        if isinstance(value, int) or str(value).strip().lower() == "auto":
            return value if isinstance(value, int) else "auto"
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither auto nor a number of workers", param, ctx)
        if not 1 <= number <= 32:
            self.fail(f"{number} workers: choose from 1 to 32, or auto", param, ctx)
        return number


@data.command("run")
@env_option
@click.argument("names", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Run every data migration the schema is ready for.")
@click.option(
    "--deadline", help="Stop cleanly before this time (ISO) or after this long (30m); resume later."
)
@click.option(
    "--workers",
    default="auto",
    show_default=True,
    type=WorkersType(),
    help="Workers per migration: threads for SQL steps, processes for pandas steps; auto: one per core on big "
    "tables.",
)
@click.option(
    "--no-vacuum",
    is_flag=True,
    help="Do not VACUUM the table when its dead tuples are the run's own; pace instead (TRADEDB_DATA_VACUUM=0).",
)
@click.option(
    "--parallel",
    default=1,
    show_default=True,
    type=click.IntRange(1, 16),
    help="With several migrations: run up to N side by side, never two on the same table.",
)
@click.option("--batch-size", type=click.IntRange(1), help="Pin the batch size (default: adaptive).")
@click.option("--max-batches", type=int, hidden=True)
def data_run(
    env_name: str,
    names: tuple[str, ...],
    run_all: bool,
    deadline: str | None,
    workers: int | str,
    no_vacuum: bool,
    parallel: int,
    batch_size: int | None,
    max_batches: int | None,
) -> None:
    """Run data migrations to completion with a live progress bar each (side by side with --parallel)."""
    from data_migrations import get
    from data_migrations.engine.position import runnable
    from tradedb.cli.progress import Settings, run_with_progress

    env = resolve_env(env_name)
    if bool(names) == run_all:
        raise TradeDBError("name one or more data migrations, or pass --all")
    selected = runnable(env) if run_all else [get(n).name for n in names]
    if not selected:
        console.print("nothing to run: no data migration is pending at this revision")
        return
    settings = Settings(parse_deadline(deadline), workers, not no_vacuum, batch_size, max_batches)
    outcomes = run_with_progress(env, selected, settings, parallel=parallel, console=console)
    errors = [(name, o) for name, o in outcomes.items() if isinstance(o, BaseException)]
    for name, result in outcomes.items():
        if isinstance(result, BaseException):
            continue
        colour = "green" if result.status == "finished" else "yellow"
        console.print(
            f"[{colour}]{result.status}[/] {name}: {result.rows_done} rows migrated, {result.rows_quarantined} "
            f"quarantined of {result.source_rows}, {result.batches} batches, {result.retries} retries, "
            f"{result.seconds:.1f}s ({result.rows_per_s:,.0f} rows/s"
            + (f", {result.throttled_seconds:.1f}s throttled" if result.throttled_seconds else "")
            + ")"
            + (f" - {result.stop_reason}" if result.stop_reason else "")
        )
    if len(errors) == 1 and len(outcomes) == 1:
        raise errors[0][1]  # one migration: its error is the command's one line
    for name, exc in errors:
        click.echo(f"error: {name}: {first_line(exc)}", err=True)
    if errors:
        sys.exit(1)
    if any(o.status != "finished" for o in outcomes.values()):
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
        from data_migrations import get
        from data_migrations.engine import state
        from tradedb.core.db import connect_checked

        migration = get(name)
        with connect_checked(resolve_env(env_name)) as conn:
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

    env = resolve_env(env_name)
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
    from data_migrations import get
    from data_migrations.engine import state
    from tradedb.core.db import connect_checked

    migration = get(name)
    with connect_checked(resolve_env(env_name)) as conn:
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


@data.command("new")
@click.argument("name")
@click.option(
    "--feature", required=True, help="Feature folder: common, events, setups, strategy, execution, discord."
)
@click.option("--table", required=True, help="The table it walks (one of the models' tables).")
@click.option("--after", help="The revision it runs after (default: the current head).")
@click.option(
    "--kind", default="sql", show_default=True, help="sql (set-based UPDATE) or pandas (transform in Python)."
)
@click.option(
    "--allow-dirty", is_flag=True, help="Write even though data_migrations/FEATURE/ has uncommitted changes."
)
def data_new(name: str, feature: str, table: str, after: str | None, kind: str, allow_dirty: bool) -> None:
    """Scaffold data_migrations/FEATURE/NAME.py and its test; print the next steps."""
    from tradedb.ops.scaffold import new_data_migration

    made = new_data_migration(name, feature, table, after=after, kind=kind, allow_dirty=allow_dirty)
    click.echo(
        f"created {made.module_path} ({made.kind} step over {made.table}.{made.key}, after {made.after})"
    )
    click.echo(f"created {made.test_path}")
    click.echo("next:")
    click.echo(f"  1. fill in every TODO(scaffold) in {made.module_path}: the docstring and its ticket,")
    click.echo("     PENDING (the rows that still need it), the step, revert_sql, the invariants")
    click.echo(f"  2. make its test pass: pytest -n 0 {made.test_path}")
    click.echo(
        f'  3. the contract revision that needs it: tradedb new revision -m "..." --feature {made.feature} '
        f"--requires-data {made.name}"
    )
    click.echo(
        f'     (it declares requires_data = ("{made.name}",) and refuses to upgrade while rows are pending)'
    )
    click.echo(f"  4. tradedb lint; tradedb data list; tradedb data run {made.name}")
