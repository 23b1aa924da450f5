"""The per-migration advisory lock: one runner (with its workers) per data migration, from any process or host."""

from __future__ import annotations

from sqlalchemy import Connection, text

from data_migrations.base import DataMigration
from tradedb.core.errors import TradeDBError

APPLICATION_PREFIX = "tradedb-data"  # application_name of every engine connection (health checks skip them)
DATA_LOCK_CLASS = 0x7464  # first key of the per-migration advisory lock ("td")


def lock_args(m: DataMigration) -> dict:
    return {"c": DATA_LOCK_CLASS, "n": m.name}


def take_lock(conn: Connection, m: DataMigration) -> None:
    got = conn.scalar(text("SELECT pg_try_advisory_lock(:c, hashtext(:n))"), lock_args(m))
    conn.commit()
    if not got:
        holder = conn.execute(
            text(
                """SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                   WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :c AND l.objid = hashtext(:n)::oid"""
            ),
            lock_args(m),
        ).first()
        who = f"backend pid {holder.pid} ({holder.application_name})" if holder else "another session"
        raise TradeDBError(f"data migration {m.name} is already running ({who}); nothing was changed")


def release_lock(conn: Connection, m: DataMigration) -> None:
    conn.execute(text("SELECT pg_advisory_unlock(:c, hashtext(:n))"), lock_args(m))
    conn.commit()
