"""Data migrations at a terminal: one live progress bar per migration (rows, rows/s, batch size, ETA, throttling).

Migrations run one after another, or side by side (``--parallel N``: never two on one table), each drawing its own
bar in one display. The ETA is the engine's: the rate over the last minutes of wall time, pauses included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from data_migrations import get
from data_migrations.base import DataMigration
from data_migrations.engine import RunOptions, run
from data_migrations.engine.progress import Progress as Snapshot
from data_migrations.engine.progress import Reporter
from data_migrations.engine.side_by_side import Outcome, run_side_by_side
from tradedb.core.settings import Environment
from tradedb.ops.pipeline import configured_options

COLUMNS = (
    TextColumn("[bold]{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TextColumn("{task.fields[rate]:>9,.0f} rows/s  batch {task.fields[batch]:>6}"),
    TextColumn("ETA {task.fields[eta]}"),
    TextColumn("[yellow]{task.fields[note]}"),
)


@dataclass
class Settings:
    """What the operator asked of every migration of one ``tradedb data run``."""

    deadline: datetime | None = None
    workers: int | str = "auto"
    vacuum: bool = True
    batch_size: int | None = None
    max_batches: int | None = None

    def options(self, env: Environment, on_progress: Reporter) -> RunOptions:
        """The engine's options for one migration, with the configured ``[data_migrations] max_batch`` cap."""
        options = configured_options(
            deadline=self.deadline,
            workers=self.workers,
            vacuum=self.vacuum,
            on_progress=on_progress,
            max_batches=self.max_batches,
            environment=env.name,
        )
        if self.batch_size:
            options.initial_batch = options.min_batch = options.max_batch = self.batch_size
        return options


def bar_reporter(bar: Progress, name: str) -> Reporter:
    """A reporter drawing ``name``'s snapshots on its own task of ``bar``."""
    task = bar.add_task(name, total=None, rate=0.0, batch=0, eta="-", note="")

    def show(p: Snapshot) -> None:
        bar.update(
            task,
            total=max(p.rows_total, p.rows_done),
            completed=p.rows_done,
            rate=p.rows_per_s,
            batch=p.batch_size,
            eta="-" if p.eta_seconds is None else f"{p.eta_seconds:,.0f}s",
            note=f"throttled for {p.throttled_for:.0f}s: {p.throttled}" if p.throttled else "",
        )

    return show


def run_with_progress(
    env: Environment,
    names: list[str],
    settings: Settings,
    *,
    parallel: int = 1,
    console: Console | None = None,
) -> dict[str, Outcome]:
    """Run ``names`` (in order, or ``parallel`` side by side) with a bar each; each one's result or error by name."""
    migrations: list[DataMigration] = [get(n) for n in names]
    with Progress(*COLUMNS, console=console, transient=False) as bar:
        reporters = {m.name: bar_reporter(bar, m.name) for m in migrations}

        def options_for(m: DataMigration) -> RunOptions:
            return settings.options(env, reporters[m.name])

        if parallel > 1:
            return run_side_by_side(env.url, migrations, parallel, options_for)
        outcomes: dict[str, Outcome] = {}
        for m in migrations:
            try:
                outcomes[m.name] = run(env.url, m, options_for(m))
            except Exception as exc:  # reported with the others; as before, a failure stops the sequence
                outcomes[m.name] = exc
                break
        return outcomes
