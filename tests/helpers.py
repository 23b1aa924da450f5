"""Small helpers shared by tests (no fixtures here)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from tradedb import schema
from tradedb.core.db import connect_checked
from tradedb.core.settings import Environment
from tradedb.ops.sample_data import seed
from tradedb.schema.ledger import LedgerEntry, now


def seeded(env: Environment, rows: int = 300, to: str | None = None) -> Environment:
    """Seed ``env`` at the first release, then optionally upgrade to ``to``."""
    seed(env, rows=rows)
    if to:
        schema.upgrade(env, to)
    return env


def current(env: Environment) -> str | None:
    return schema.current_revision(env)


def scalar(env: Environment, sql: str, **params):
    with connect_checked(env) as conn:
        return conn.scalar(text(sql), params)


def execute(env: Environment, sql: str, **params) -> None:
    with connect_checked(env) as conn:
        conn.execute(text(sql), params)


DIRECTION_OF_KIND = {
    "schema": "upgrade",
    "data": "run",
    "backup": "backup",
    "restore": "restore",
    "rehearsal": "rehearse",
    "override": "override",
}


def ledger_entry(
    kind: str = "schema",
    name: str = "0001",
    *,
    direction: str | None = None,
    environment: str = "dev",
    launched_by: str = "cli:test@host",
    started_at: datetime | None = None,
    seconds: float = 0.0,
    outcome: str = "success",
    **fields: Any,
) -> LedgerEntry:
    """A ledger row as a test writes it by hand: the kind's usual direction, finished ``seconds`` after it started."""
    started = started_at or now()
    return LedgerEntry(
        kind=kind,
        name=name,
        direction=direction or DIRECTION_OF_KIND[kind],
        environment=environment,
        launched_by=launched_by,
        started_at=started,
        finished_at=started + timedelta(seconds=seconds),
        outcome=outcome,
        **fields,
    )


def deployed_to(env: Environment, revision: str, rows: int = 300) -> Environment:
    """Seed ``env`` at the first release, then deploy up to ``revision`` as the deploy job would.

    Each data migration runs right after its ``after`` revision (``deploy_order``), so the contract revisions on
    the way find nothing pending. A scaffolded data migration's test starts here, at its own ``after``.
    """
    from data_migrations import engine
    from tradedb.ops.deploy_order import deploy_order

    seed(env, rows=rows)
    order = [r.revision for r in schema.revisions()]
    target, start = schema.resolve_revision(revision), schema.current_revision(env)
    if order.index(target) <= order.index(start):
        return env  # the sample data starts at the first release: already there, or past it
    for step in deploy_order(start):
        if step.kind == "schema":
            schema.upgrade(env, step.name)
            if step.name == target:
                return env
        else:
            result = engine.run(env.url, step.name, engine.RunOptions(environment=env.name))
            assert result.status == "finished", f"{step.name}: {result.stop_reason}"
    return env
