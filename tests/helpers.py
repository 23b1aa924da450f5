"""Small helpers shared by tests (no fixtures here)."""

from __future__ import annotations

from sqlalchemy import text

from tradedb import schema
from tradedb.core.db import connect_checked
from tradedb.core.settings import Environment
from tradedb.ops.sample_data import seed


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
