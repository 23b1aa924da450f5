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
