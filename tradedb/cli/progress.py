"""A data migration's live progress bar at a terminal (rows, rows/s, batch size, ETA)."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from data_migrations import engine
from data_migrations.engine import RunResult
from data_migrations.engine.progress import Progress as Snapshot
from tradedb.core.settings import Environment
from tradedb.ops.pipeline import configured_options


def run_with_progress(
    env: Environment,
    name: str,
    *,
    deadline: datetime | None = None,
    workers: int = 1,
    batch_size: int | None = None,
    max_batches: int | None = None,
    console: Console | None = None,
) -> RunResult:
    """Run one data migration with a rich progress bar (rows, rows/s, batch size, ETA)."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9,.0f} rows/s  batch {task.fields[batch]:>6}"),
        TimeRemainingColumn(),
        TextColumn("[yellow]{task.fields[note]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(name, total=None, rate=0.0, batch=0, note="")

        def show(p: Snapshot) -> None:
            bar.update(
                task,
                total=max(p.rows_total, p.rows_done),
                completed=p.rows_done,
                rate=p.rows_per_s,
                batch=p.batch_size,
                note=f"throttled: {p.throttled}" if p.throttled else "",
            )

        options = configured_options(
            deadline=deadline,
            workers=workers,
            on_progress=show,
            max_batches=max_batches,
            environment=env.name,
        )
        if batch_size:
            options.initial_batch = options.min_batch = options.max_batch = batch_size
        result = engine.run(env.url, name, options)
        if result.status == "finished":
            done = result.rows_done + result.rows_quarantined
            bar.update(task, total=max(done, 1), completed=max(done, 1))
    return result
