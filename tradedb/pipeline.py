"""The deploy pipeline's steps: apply one revision, run one data migration.

The Dagster assets call these, one per asset, in the order of the asset graph; the CLI reaches them only through
the Dagster job (``tradedb deploy``), so a deploy has one code path whichever way it is launched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from tradedb import schema
from tradedb.db import connect_checked
from tradedb.settings import Environment


@dataclass
class StepOutcome:
    revision: str
    applied: bool
    seconds: float
    detail: str


def apply_revision(env: Environment, revision: str) -> StepOutcome:
    """Upgrade to ``revision``; an already-applied revision is a recorded no-op. The caller holds the lock."""
    started = time.monotonic()
    with connect_checked(env) as conn:
        current = schema.current_revision(env, conn)
    order = [r.revision for r in schema.revisions()]
    if current is not None and current in order and order.index(current) >= order.index(revision):
        return StepOutcome(revision, False, 0.0, f"already applied (database at {current})")
    schema.upgrade(env, revision, lock_held=True)
    return StepOutcome(revision, True, time.monotonic() - started, f"upgraded from {current or 'empty'}")


def run_data_migration(env: Environment, name: str, *, deadline: datetime | None = None, on_progress=None):
    """Run one data migration to completion (or to the deadline); returns the engine's ``RunResult``."""
    from data_migrations import engine

    return engine.run(env.url, name, engine.RunOptions(deadline=deadline, on_progress=on_progress))
