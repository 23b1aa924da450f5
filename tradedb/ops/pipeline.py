"""The deploy pipeline's steps: apply one revision, run one data migration.

The Dagster assets call these, one per asset, in the order of the asset graph; the CLI reaches them only through
the Dagster job (``tradedb deploy``), so a deploy has one code path whichever way it is launched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from data_migrations import engine
from tradedb import schema
from tradedb.core.db import connect_checked
from tradedb.core.launchers import dagster_launcher
from tradedb.core.settings import Environment, max_batch_setting


@dataclass
class StepOutcome:
    revision: str
    applied: bool
    seconds: float
    detail: str


def apply_revision(
    env: Environment,
    revision: str,
    *,
    run_id: str | None = None,
    before_change: Callable[[], None] | None = None,
) -> StepOutcome:
    """Upgrade to ``revision``; an already-applied revision is a recorded no-op. The caller holds the lock.

    ``run_id`` is the Dagster run's, so the ledger names the run that applied it; ``before_change`` runs only when
    something will change (the production run's window check and backup), never for a no-op.
    """
    started = time.monotonic()
    with connect_checked(env) as conn:
        current = schema.current_revision(env, conn)
    order = [r.revision for r in schema.revisions()]
    if current is not None and current in order and order.index(current) >= order.index(revision):
        return StepOutcome(revision, False, 0.0, f"already applied (database at {current})")
    if before_change is not None:
        before_change()
    launcher = {"launched_by": dagster_launcher(run_id), "run_id": run_id} if run_id else {}
    schema.upgrade(env, revision, lock_held=True, **launcher)
    return StepOutcome(revision, True, time.monotonic() - started, f"upgraded from {current or 'empty'}")


def run_data_migration(
    env: Environment,
    name: str,
    *,
    deadline: datetime | None = None,
    on_progress=None,
    run_id: str | None = None,
):
    """Run one data migration to completion (or to the deadline); returns the engine's ``RunResult``."""

    options = configured_options(
        deadline=deadline,
        on_progress=on_progress,
        environment=env.name,
        launched_by=dagster_launcher(run_id) if run_id else None,
        run_id=run_id,
    )
    return engine.run(env.url, name, options)


def configured_options(**given) -> engine.RunOptions:
    """The engine's options with the operator's ``[data_migrations] max_batch`` cap applied.

    A deploy, its rehearsal and ``tradedb data run`` batch alike, so a rehearsal measures what a deploy will do.
    """
    options = engine.RunOptions(**given)
    cap = max_batch_setting()
    if cap is not None:
        options.max_batch = min(options.max_batch, cap)
        options.initial_batch = min(options.initial_batch, cap)
        options.min_batch = min(options.min_batch, cap)
    return options
