"""The deploy pipeline's steps: apply one revision, run one data migration, run the checks.

These are the units both entry points share: the Dagster assets call them one per asset, and the plain
``deploy`` here calls them in the same order (expand revision -> its data migrations -> contract revision), under
one migration lock for the whole run so nothing else can migrate in between.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Console
from rich.table import Table

from tradedb import schema
from tradedb.db import connect_checked, make_engine
from tradedb.locks import migration_lock
from tradedb.settings import Environment


@dataclass
class StepOutcome:
    kind: str  # "revision", "data", "check"
    name: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class DeploySummary:
    environment: str
    start_revision: str | None
    end_revision: str | None = None
    steps: list[StepOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)


@contextmanager
def locked(env: Environment) -> Iterator[None]:
    """Hold the environment's migration lock for a whole deploy."""
    engine = make_engine(env)
    try:
        with migration_lock(engine, env):
            yield
    finally:
        engine.dispose()


def apply_revision(env: Environment, revision: str) -> StepOutcome:
    """Upgrade to ``revision`` (an already-applied revision is a recorded no-op). Caller holds the lock."""
    started = time.monotonic()
    with connect_checked(env) as conn:
        current = schema.current_revision(env, conn)
    applied = [r.revision for r in schema.revisions()]
    if current is not None and current in applied and applied.index(current) >= applied.index(revision):
        return StepOutcome("revision", revision, True, 0.0, f"already applied (database at {current})")
    schema.upgrade(env, revision, lock_held=True)
    return StepOutcome(
        "revision", revision, True, time.monotonic() - started, f"upgraded from {current or 'empty'}"
    )


def run_data_migration(
    env: Environment,
    name: str,
    *,
    deadline: datetime | None = None,
    on_progress=None,
    console: Console | None = None,
):
    """Run one data migration to completion (or to the deadline); returns the engine's ``RunResult``."""
    from data_migrations import engine
    from data_migrations.runs import run_with_progress

    if console is not None:
        return run_with_progress(env, name, deadline=deadline, console=console)
    return engine.run(env.url, name, engine.RunOptions(deadline=deadline, on_progress=on_progress))


def deploy(
    env: Environment, *, deadline: datetime | None = None, console: Console | None = None
) -> DeploySummary:
    """Bring ``env`` to head: revisions in order, each data migration right after its ``after`` revision, checks."""
    import data_migrations
    from data_migrations.checks import all_checks

    console = console or Console()
    by_after: dict[str, list[str]] = {}
    for m in data_migrations.registry().values():
        by_after.setdefault(m.after, []).append(m.name)
    with connect_checked(env) as conn:
        start = schema.current_revision(env, conn)
    summary = DeploySummary(env.name, start)
    console.print(
        f"[bold]deploy {env.name}[/] ({env.safe_url}): at {start or '(empty)'}, head {schema.head()}"
    )
    with locked(env):
        todo = schema.pending(env, start)
        applied_before = [r.revision for r in schema.revisions() if r not in todo]
        # data migrations whose revision is already applied but which never finished go first
        backlog = [n for rev in applied_before for n in by_after.get(rev, [])]
        for name in backlog:
            if not _run_data(env, name, deadline, console, summary):
                return _finish(env, summary, console)
        for info in todo:
            console.print(
                f"[cyan]→[/] revision {info.revision} [dim]({info.feature}, {info.ticket})[/] {info.message.splitlines()[0]}"
            )
            try:
                step = apply_revision(env, info.revision)
            except Exception as exc:  # noqa: BLE001 - reported in the summary, then re-raised below
                summary.steps.append(
                    StepOutcome("revision", info.revision, False, 0.0, str(exc).splitlines()[0])
                )
                _finish(env, summary, console)
                raise
            summary.steps.append(step)
            for name in by_after.get(info.revision, []):
                if not _run_data(env, name, deadline, console, summary):
                    return _finish(env, summary, console)
    with connect_checked(env) as conn:
        checks = all_checks(conn)
    drift = schema.drift(env)
    summary.steps.append(StepOutcome("check", "schema matches models", not drift, 0.0, "; ".join(drift)))
    for c in checks:
        if not c.skipped:
            detail = f"{c.violations} violation(s), e.g. {c.sample[:2]}" if not c.passed else ""
            summary.steps.append(StepOutcome("check", c.name, c.passed, 0.0, detail))
    return _finish(env, summary, console)


def _run_data(env: Environment, name: str, deadline, console: Console, summary: DeploySummary) -> bool:
    console.print(f"[cyan]→[/] data migration {name}")
    result = run_data_migration(env, name, deadline=deadline, console=console)
    ok = result.status == "finished"
    summary.steps.append(
        StepOutcome(
            "data",
            name,
            ok,
            result.seconds,
            f"{result.rows_done} rows, {result.rows_quarantined} quarantined, {result.batches} batches"
            + (f" ({result.stop_reason})" if result.stop_reason else ""),
        )
    )
    return ok


def _finish(env: Environment, summary: DeploySummary, console: Console) -> DeploySummary:
    with connect_checked(env) as conn:
        summary.end_revision = schema.current_revision(env, conn)
    table = Table(
        title=f"deploy {summary.environment}: {summary.start_revision or '(empty)'} -> {summary.end_revision}",
        title_justify="left",
    )
    for column in ("", "step", "name", "seconds", "detail"):
        table.add_column(column, overflow="fold")
    for s in summary.steps:
        table.add_row("[green]✓[/]" if s.ok else "[red]✗[/]", s.kind, s.name, f"{s.seconds:.2f}", s.detail)
    console.print(table)
    console.print("[green]deploy succeeded[/]" if summary.ok else "[red]deploy did not complete[/]")
    return summary
