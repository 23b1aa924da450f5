"""Database health signals that throttle a data migration, like GitLab's health indicators.

Each indicator looks at the migration's table and returns a reason to back off, or None. The engine asks them
every few batches and sleeps while any says so: a backfill must never be the reason the trading app's own writes
wait, nor outrun autovacuum so far that the table bloats.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, text

DEAD_TUPLE_RATIO = 0.5  # dead rows per live row on the table before we let autovacuum catch up
MIN_DEAD_TUPLES = 50_000  # below this the ratio does not matter
LOCK_WAIT_SECONDS = 1.0  # another session waiting this long for a lock on the table means we back off

Indicator = Callable[[Connection, str], str | None]


def dead_tuples(conn: Connection, table: str) -> str | None:
    row = conn.execute(
        text("SELECT n_dead_tup, n_live_tup FROM pg_stat_user_tables WHERE relname = :t"), {"t": table}
    ).first()
    if (
        row
        and row.n_dead_tup > MIN_DEAD_TUPLES
        and row.n_dead_tup > DEAD_TUPLE_RATIO * max(row.n_live_tup, 1)
    ):
        return f"{row.n_dead_tup} dead tuples on {table} (live {row.n_live_tup}); waiting for vacuum"
    return None


def autovacuum_running(conn: Connection, table: str) -> str | None:
    row = conn.execute(
        text(
            """SELECT p.pid FROM pg_stat_progress_vacuum p JOIN pg_class c ON c.oid = p.relid
               WHERE c.relname = :t LIMIT 1"""
        ),
        {"t": table},
    ).first()
    return f"vacuum running on {table} (pid {row.pid})" if row else None


def lock_waits(conn: Connection, table: str) -> str | None:
    """Another session (not ours) has waited on a lock while touching the table (row locks wait on a transaction
    id, not on the relation, so look for waiting sessions that hold any lock on the table)."""
    row = conn.execute(
        text(
            """SELECT a.pid, extract(epoch FROM now() - a.query_start) AS waited
               FROM pg_stat_activity a
               WHERE a.wait_event_type = 'Lock' AND a.application_name NOT LIKE 'tradedb-data%'
                 AND now() - a.query_start > make_interval(secs => :s)
                 AND EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                             WHERE l.pid = a.pid AND c.relname = :t)
               ORDER BY waited DESC LIMIT 1"""
        ),
        {"t": table, "s": LOCK_WAIT_SECONDS},
    ).first()
    return f"session {row.pid} has waited {row.waited:.1f}s for a lock on {table}" if row else None


INDICATORS: tuple[Indicator, ...] = (dead_tuples, autovacuum_running, lock_waits)


def throttle_reasons(
    conn: Connection, table: str, indicators: tuple[Indicator, ...] = INDICATORS
) -> list[str]:
    """Every reason to back off right now (empty when the database is healthy)."""
    return [reason for indicator in indicators if (reason := indicator(conn, table))]
