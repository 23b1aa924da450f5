"""Which rows still need a data migration: the one SQL both the contract guard and the data engine ask.

It sits below both on purpose. The guard (a contract revision refusing to run) and the engine (planning slices,
proving completeness) must agree to the row on what "pending" means, so neither owns the definition: a
declaration's ``pending_where`` over alias ``t``, minus the rows already in quarantine.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import Connection, text

from tradedb.schema.state_schema import STATE_SCHEMA, has_state_table


class PendingRows(Protocol):
    """What the pending count needs of a data migration's declaration (``DataMigration`` has all four)."""

    name: str
    table: str
    key: str
    pending_where: str


def pending_rows_sql(migration: PendingRows, *, with_quarantine: bool) -> str:
    """SQL counting the rows that still need ``migration``; quarantined rows count as handled."""
    sql = f"SELECT count(*) FROM {migration.table} t WHERE ({migration.pending_where})"
    if with_quarantine:
        sql += (
            f" AND NOT EXISTS (SELECT 1 FROM {STATE_SCHEMA}.quarantine q"
            f" WHERE q.migration = '{migration.name}' AND q.row_key = t.{migration.key})"
        )
    return sql


def count_pending(conn: Connection, migration: PendingRows) -> int:
    """Rows of ``migration``'s table that still need it, on this connection."""
    return int(
        conn.scalar(text(pending_rows_sql(migration, with_quarantine=has_state_table(conn, "quarantine"))))
    )
