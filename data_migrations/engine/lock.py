"""The per-migration advisory lock: one runner (with its workers) per data migration, from any process or host.

The lock is session-level, on a connection the runner keeps for the whole run. If that connection dies (a
restarted pooler, ``pg_terminate_backend``), PostgreSQL releases the lock and a second runner could take it while
this run's workers go on. So every worker looks, at each batch boundary and in the same round trip as its status
check, whether the backend that took the lock still holds it (``status_and_lock``); when it does not, the run
stops there with ``LostLock``, without writing any state (another runner may own it by now). The batch in flight
is safe either way: it holds its slice row locked until it commits, so a second runner waits for it and resumes
from its checkpoint.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from data_migrations.base import DataMigration
from data_migrations.engine.options import DataMigrationFailed
from tradedb.core.errors import TradeDBError
from tradedb.schema.state_schema import STATE_SCHEMA

log = logging.getLogger("tradedb.data")

APPLICATION_PREFIX = "tradedb-data"  # application_name of every engine connection (health checks skip them)
DATA_LOCK_CLASS = 0x7464  # first key of the per-migration advisory lock ("td")


class LostLock(DataMigrationFailed):
    """The connection holding the migration's lock is gone, so this run no longer owns the migration."""


def lock_args(m: DataMigration) -> dict:
    return {"c": DATA_LOCK_CLASS, "n": m.name}


def take_lock(conn: Connection, m: DataMigration) -> int:
    """Take ``m``'s lock on ``conn`` or refuse naming the holder; return the backend pid that holds it now."""
    got, pid = conn.execute(
        text("SELECT pg_try_advisory_lock(:c, hashtext(:n)), pg_backend_pid()"), lock_args(m)
    ).one()
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
    return pid


def release_lock(conn: Connection, m: DataMigration) -> None:
    """Give the lock back; on a connection that died meanwhile there is nothing left to give back."""
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:c, hashtext(:n))"), lock_args(m))
        conn.commit()
    except DBAPIError as exc:
        log.warning(
            "%s: the lock connection was already gone: %s", m.name, str(exc.orig).strip().splitlines()[0]
        )


def status_and_lock(conn: Connection, m: DataMigration, lock_pid: int | None) -> str:
    """The migration's status as other processes set it; ``LostLock`` when ``lock_pid`` no longer holds its lock."""
    row = conn.execute(
        text(
            f"""SELECT (SELECT status FROM {STATE_SCHEMA}.data_migration_state WHERE name = :n) AS status,
                       :pid IS NULL OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
                           AND l.classid = :c AND l.objid = hashtext(:n)::oid AND l.pid = :pid) AS held"""
        ),
        {**lock_args(m), "pid": lock_pid},
    ).one()
    if not row.held:
        raise LostLock(
            f"data migration {m.name} lost its lock (the connection holding it, backend pid {lock_pid}, is gone); "
            "it stopped at a batch boundary so no second runner overlaps it. Run it again to resume from the "
            "checkpoints."
        )
    return row.status or "pending"
