"""Our own schema in the target database (checkpoints, quarantine, ledger, backups): never the app's tables."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, text

STATE_SCHEMA = "tradedb_migrations"
"""Our own schema (checkpoints, quarantine, ledger): never compared against the app's models."""


def has_state_table(conn: Connection, table: str) -> bool:
    """Whether ``tradedb_migrations.<table>`` exists yet (it is created by the first data-migration run)."""
    # from the catalog, not to_regclass(): a role without USAGE on our schema may still ask whether a table exists
    return bool(
        conn.scalar(
            text(
                """SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = :s AND c.relname = :t)"""
            ),
            {"s": STATE_SCHEMA, "t": table},
        )
    )


STATE_DDL_LOCK = 0x7464_6464_6C  # transaction advisory lock around creating our state tables ("tddl")


def ensure_state_tables(conn: Connection, ready: Callable[[], bool], ddl: str) -> None:
    """Run ``ddl`` (our own ``CREATE ... IF NOT EXISTS``) unless ``ready()``, one session at a time.

    ``IF NOT EXISTS`` does not make concurrent creation safe in PostgreSQL: two sessions creating the same table at
    once can both pass the check and one fails on the catalog's unique index. Two data migrations started side by
    side on a fresh database do exactly that, so the DDL waits for a transaction-level lock and looks again.
    """
    if ready():
        return
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": STATE_DDL_LOCK})
    if not ready():
        conn.execute(text(ddl))
