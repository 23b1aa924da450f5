"""The migration lock: a PostgreSQL session-level advisory lock on its own connection.

Session-level because a transaction-level lock would be released at the first commit, and every revision and
every data-migration batch commits. Taken with ``pg_try_advisory_lock`` so a second launch, from Dagster, the CLI
or plain alembic, is refused at once with who holds it, instead of queueing behind a long migration.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg2 import errors as pg_errors
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from tradedb.core.db import unreachable
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import Environment

LOCK_KEY = 0x7472_6164_6564_62  # "tradedb" as a bigint: one lock per database, shared by every entry point


class MigrationLocked(TradeDBError):
    """Another process is migrating this database right now; ``holder`` describes its session (``lock_holder``)."""

    def __init__(self, message: str, *, holder: str = "another session") -> None:
        super().__init__(message)
        self.holder = holder


class DDLLockTimeout(TradeDBError):
    """A schema step gave up waiting for its table lock (``lock_timeout``); nothing of it was applied.

    Retryable, unlike other operator errors: the application transaction in the way usually ends within seconds.
    """


DDL_TARGET = re.compile(
    r"(?i)\b(?:ALTER|LOCK|DROP|TRUNCATE)\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?([\w.\"]+)|\bON\s+([\w.\"]+)"
)


def ddl_lock_timeout(exc: BaseException, step: str, timeout: str) -> DDLLockTimeout | None:
    """The one-line error for a DDL statement that hit ``lock_timeout`` (None for any other error)."""
    if not isinstance(getattr(exc, "orig", None), pg_errors.LockNotAvailable):
        return None
    statement = getattr(exc, "statement", "") or ""
    found = DDL_TARGET.search(statement)
    table = next((g for g in found.groups() if g), None) if found else None
    on = f" on {table}" if table else ""
    return DDLLockTimeout(
        f"{step} gave up after waiting lock_timeout {timeout} for its lock{on}: a long application transaction "
        "holds it. Nothing of this step was applied; retry (Dagster retries by itself), or wait longer with "
        "`-x lock_timeout=30s` / TRADEDB_LOCK_TIMEOUT"
    )


def holder_pids_sql(database: str) -> str:
    """SQL selecting the pid holding the migration lock on ``database`` (an SQL expression for its name).

    Advisory locks belong to one database but ``pg_locks`` shows the whole server's, so the database is part of
    the filter: the same key held on another database is not this one's lock. Bind ``:key`` to ``LOCK_KEY``.
    """
    return (
        "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
        f" AND l.database = (SELECT oid FROM pg_database WHERE datname = {database})"
        " AND ((l.classid::bigint << 32) | l.objid::bigint) = :key"
    )


def _holder_row(engine: Engine):
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT a.pid, a.application_name, a.backend_start FROM pg_stat_activity a "
                f"WHERE a.pid IN ({holder_pids_sql('current_database()')})"
            ),
            {"key": LOCK_KEY},
        ).first()


def lock_holder(engine: Engine) -> str:
    """Describe the session holding the migration lock (pid, application, since when) for the error message."""
    row = _holder_row(engine)
    if row is None:
        return "another session"
    return f"backend pid {row.pid} ({row.application_name or 'unknown application'}, connected {row.backend_start:%Y-%m-%d %H:%M:%S %Z})"


def run_lock_application(run_id: str) -> str:
    """The ``application_name`` of the session a Dagster run holds its environment's lock on for the whole run.

    A deploy that runs steps in processes of their own (data migrations side by side) takes the lock once, in the
    run's own process; its steps recognise their run's lock by this name and go on under it.
    """
    return f"tradedb-run:{run_id}"


@contextmanager
def migration_lock(
    engine: Engine, env: Environment, *, held: bool = False, owner: str | None = None
) -> Iterator[bool]:
    """Hold the migration lock for the block, or raise ``MigrationLocked`` naming the holder.

    ``held=True`` means the caller already holds it (an orchestrated run locks once for the whole run);
    ``owner``: the application name of a session that may hold it on the caller's behalf (``run_lock_application``),
    in which case the block runs under that session's lock. Yields whether that owner holds it (not this block).
    """
    if held:
        yield False
        return
    try:
        conn = engine.connect()
    except OperationalError as exc:
        raise unreachable(env, exc) from None
    try:
        got = conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY})
        conn.commit()
        if not got:
            row = _holder_row(engine)
            if owner is not None and row is not None and row.application_name == owner:
                yield True  # our run's own process holds it for us
                return
            holder = lock_holder(engine)
            raise MigrationLocked(
                f"another migration is running on the {env.name} database ({holder}); "
                "nothing was changed. Wait for it to finish, or check `tradedb status`.",
                holder=holder,
            )
        try:
            yield False
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
            conn.commit()
    finally:
        conn.close()
