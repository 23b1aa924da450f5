"""Our own schema in the target database (checkpoints, quarantine, ledger, backups): never the app's tables."""

from __future__ import annotations

from sqlalchemy import Connection, text

STATE_SCHEMA = "tradedb_migrations"
"""Our own schema (checkpoints, quarantine, ledger): never compared against the app's models."""


def has_state_table(conn: Connection, table: str) -> bool:
    """Whether ``tradedb_migrations.<table>`` exists yet (it is created by the first data-migration run)."""
    return bool(conn.scalar(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{STATE_SCHEMA}.{table}"}))
