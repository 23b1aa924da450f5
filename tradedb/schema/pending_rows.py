"""Which rows still need a data migration: the one SQL both the contract guard and the data engine ask.

It sits below both on purpose. The guard (a contract revision refusing to run) and the engine (planning slices,
proving completeness) must agree to the row on what "pending" means, so neither owns the definition: a
declaration's ``pending_where`` over alias ``t``, minus the rows already in quarantine.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import Connection, text

from tradedb.schema.state_schema import STATE_SCHEMA, has_state_table

EXACT_COUNT_MAX_ROWS = 200_000  # below this many rows in the table a pending count is exact (a scan is cheap)
SAMPLE_ROWS = 20_000  # an estimate reads a page sample of about this many rows


class PendingRows(Protocol):
    """What the pending count needs of a data migration's declaration (``DataMigration`` has all four)."""

    name: str
    table: str
    key: str
    pending_where: str


def pending_rows_sql(
    migration: PendingRows, *, with_quarantine: bool, sample_percent: float | None = None
) -> str:
    """SQL counting the rows that still need ``migration``; quarantined rows count as handled.

    ``sample_percent`` counts in a page sample of the table instead (``TABLESAMPLE SYSTEM``), for an estimate.
    """
    sample = f" TABLESAMPLE SYSTEM ({float(sample_percent)})" if sample_percent is not None else ""
    sql = f"SELECT count(*) FROM {migration.table} t{sample} WHERE ({migration.pending_where})"
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


def estimate_pending(conn: Connection, migration: PendingRows) -> tuple[int, bool]:
    """Rows still needing ``migration``, and whether that is exact: cheap on a big table, exact on a small one.

    A run only needs the number to size its workers and show progress (the completeness proof at its end counts
    exactly), so a table past ``EXACT_COUNT_MAX_ROWS`` is estimated from a page sample instead of scanned whole. An
    estimate of zero is checked exactly: a few pending rows must never be skipped because a sample missed them.
    """
    rows = conn.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": migration.table}
    )
    if rows is None or rows < EXACT_COUNT_MAX_ROWS:
        return count_pending(conn, migration), True
    percent = min(100.0, 100.0 * SAMPLE_ROWS / rows)
    quarantine = has_state_table(conn, "quarantine")
    sampled = int(
        conn.scalar(text(pending_rows_sql(migration, with_quarantine=quarantine, sample_percent=percent)))
    )
    if sampled == 0:
        return count_pending(conn, migration), True
    return round(sampled * 100.0 / percent), False


def table_rows(conn: Connection, table: str) -> int:
    """Rows of ``table`` (0 while it does not exist yet): counted on a small table, the planner's estimate on a big one."""
    rows = conn.scalar(text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table})
    if rows is None:
        return 0
    if rows < EXACT_COUNT_MAX_ROWS:
        return int(conn.scalar(text(f'SELECT count(*) FROM "{table}"')))
    return int(rows)
