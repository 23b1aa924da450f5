"""Data migrations side by side: several at once, never two on the same table.

Each migration keeps its own lock, checkpoints, throttle and workers; this only decides which may run together.
Migrations on different tables are independent work for the database. Two on one table would wait on each other's
row locks, count each other's dead tuples as their own and measure each other's batches, so a table has one
migration at a time, and the next one for it starts when the first is done. Migrations start in the order given,
skipping (not reordering around) only those whose table is busy.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence

from sqlalchemy.engine import URL

from data_migrations.base import DataMigration
from data_migrations.engine.coordinator import run
from data_migrations.engine.options import RunOptions, RunResult

Outcome = RunResult | BaseException
"""What became of one migration: its result, or the error that ended it (the others go on)."""


def run_side_by_side(
    url: URL,
    migrations: Sequence[DataMigration],
    parallel: int,
    options_for: Callable[[DataMigration], RunOptions],
) -> dict[str, Outcome]:
    """Run ``migrations`` with at most ``parallel`` at once and one per table; return each one's outcome by name.

    With several lanes, a migration's ``--workers auto`` means one worker: the lanes already share the cores.
    """
    queue = list(migrations)
    busy: set[str] = set()
    outcomes: dict[str, Outcome] = {}
    ready = threading.Condition()

    def next_free() -> DataMigration | None:
        """The first queued migration whose table is free (called holding ``ready``); None when the queue is empty."""
        while queue:
            for m in queue:
                if m.table not in busy:
                    queue.remove(m)
                    busy.add(m.table)
                    return m
            ready.wait()
        return None

    def lane() -> None:
        while True:
            with ready:
                m = next_free()
            if m is None:
                return
            options = options_for(m)
            if parallel > 1 and options.workers == "auto":
                options = dataclasses.replace(options, workers=1)
            try:
                outcomes[m.name] = run(url, m, options)
            except Exception as exc:  # reported with the others' results; one failure must not stop the rest
                outcomes[m.name] = exc
            finally:
                with ready:
                    busy.discard(m.table)
                    ready.notify_all()

    lanes = [
        threading.Thread(target=lane, name=f"data lane {i}", daemon=True) for i in range(max(1, parallel))
    ]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()
    return {m.name: outcomes[m.name] for m in migrations}
