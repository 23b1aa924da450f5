"""The batch engine's entry points: run one declared data migration to completion, safely; revert one; finish some
inline for a contract revision.

How a run goes:
1. take the migration's own advisory lock (a second run of the same migration is refused, naming the holder);
2. check the schema is between the migration's ``after`` revision and the contract that needs it;
3. plan key slices over ``[min(key), max(key)]`` once (kept in the state schema, reused by later runs);
4. workers claim slices (``FOR UPDATE SKIP LOCKED``) and walk each by keyset ranges ``(lo, hi]``; one transaction
   per batch holds the step, the quarantine inserts and the slice checkpoint, so a crash at any instant loses
   nothing and repeats nothing (``worker``);
5. between batches: honour pause/cancel written by other processes, stop before the deadline, back off while the
   database is unhealthy, resize the batch towards the target duration;
6. transient failures (lock timeout, statement timeout, serialization failure, deadlock, dropped connection) are
   retried with backoff, statement timeouts halve the batch, and after the limits the run fails naming the range;
7. at the end, verify no row still needs the migration except the quarantined ones.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL

from data_migrations import get
from data_migrations.base import DataMigration
from data_migrations.engine import batch_size, run_ledger, state
from data_migrations.engine.lock import APPLICATION_PREFIX, release_lock, take_lock
from data_migrations.engine.options import (
    LOCK_TIMEOUT_MS,
    DataMigrationFailed,
    RunOptions,
    RunResult,
)
from data_migrations.engine.parallel import run_workers
from data_migrations.engine.position import check_schema_position
from data_migrations.engine.retries import retry_transient
from data_migrations.engine.slices import extend_slices_in_txn, plan_slices
from data_migrations.engine.worker import Worker
from tradedb.core.errors import TradeDBError
from tradedb.schema.pending_rows import count_pending
from tradedb.schema.state_schema import STATE_SCHEMA

S = STATE_SCHEMA
log = logging.getLogger("tradedb.data")


def run(
    url_or_engine: URL | Engine, name: str | DataMigration, options: RunOptions | None = None
) -> RunResult:
    """Run data migration ``name`` until it is finished, paused past the deadline, cancelled or failed."""
    options = options or RunOptions()
    migration = name if isinstance(name, DataMigration) else get(name)
    engine, own = _engine(url_or_engine)
    try:
        with engine.connect() as lock_conn:
            options = dataclasses.replace(options, lock_pid=take_lock(lock_conn, migration))
            with run_ledger.recorded(engine, migration, "run", options) as entry:
                try:
                    result = _coordinate(engine, migration, options)
                    run_ledger.ended(entry, result)
                    return result
                finally:
                    release_lock(lock_conn, migration)
    finally:
        if own:
            engine.dispose()


def revert(
    url_or_engine: URL | Engine,
    name: str,
    batch: int = batch_size.INITIAL_BATCH * 5,
    options: RunOptions | None = None,
) -> int:
    """Undo data migration ``name`` range by range with its ``revert_sql``, then forget its state.

    Each range is one short transaction (the revert is idempotent, so no checkpoint is needed: a crash simply
    means running it again). Returns the number of ranges reverted.
    """
    migration = get(name)
    if migration.revert_sql is None:
        raise TradeDBError(f"data migration {name} declares no revert: it cannot be undone automatically")
    engine, own = _engine(url_or_engine)
    try:
        with engine.connect() as lock_conn, run_ledger.recorded(engine, migration, "revert", options) as _:
            take_lock(lock_conn, migration)
            ranges, lo = 0, None
            with engine.begin() as conn:
                check_schema_position(conn, migration)
                lo = conn.scalar(text(f"SELECT min({migration.key}) - 1 FROM {migration.table}"))
            while lo is not None:
                with engine.begin() as conn:
                    conn.execute(text(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}"))
                    hi = conn.scalar(
                        text(
                            f"""SELECT max(k) FROM (SELECT {migration.key} AS k FROM {migration.table}
                                WHERE {migration.key} > :lo ORDER BY {migration.key} LIMIT :n) s"""
                        ),
                        {"lo": lo, "n": batch},
                    )
                    if hi is None:
                        break
                    conn.execute(text(migration.revert_sql), {"lo": lo, "hi": hi})
                    ranges, lo = ranges + 1, hi
            with engine.begin() as conn:
                state.reset(conn, migration.name)
            release_lock(lock_conn, migration)
        return ranges
    finally:
        if own:
            engine.dispose()


def finalize_inline(
    conn: Connection,
    names: list[str],
    *,
    environment: str = "dev",
    launched_by: str | None = None,
    run_id: str | None = None,
) -> None:
    """Finish ``names`` now (alembic ``-x finalize_data=true``): the engine, on the migration's own server.

    The caller's identity goes to the ledger and alerts, so a production upgrade's inline runs are recorded as
    production's, launched by whoever launched the upgrade.
    """
    options = RunOptions(environment=environment, launched_by=launched_by, run_id=run_id)
    for name in names:
        result = run(conn.engine.url, name, options)
        if result.status != "finished":
            raise DataMigrationFailed(
                f"data migration {name} did not finish inline: {result.status} ({result.stop_reason})"
            )


def _engine(url_or_engine: URL | Engine) -> tuple[Engine, bool]:
    if isinstance(url_or_engine, Engine):
        return url_or_engine, False
    return create_engine(
        url_or_engine, pool_pre_ping=True, connect_args={"application_name": APPLICATION_PREFIX}
    ), True


def _coordinate(engine: Engine, m: DataMigration, options: RunOptions) -> RunResult:
    started = time.monotonic()
    with engine.begin() as conn:
        state.ensure_schema(conn)
        if check_schema_position(conn, m) == "contracted":
            return RunResult(m.name, "finished", stop_reason="schema already past its contract revision")
        current = state.status_of(conn, m.name, lock=True)
        if current == "paused":
            raise TradeDBError(f"data migration {m.name} is paused; `tradedb data resume {m.name}` first")
        if current == "running":  # we hold its lock, so whoever set it running is gone
            state.transition(conn, m.name, "interrupted", error="previous runner died")
        state.transition(conn, m.name, "running")
        workers = plan_slices(conn, m, options.workers, options.slice_keys)
    with engine.connect() as conn:
        source, throttled_before = conn.execute(
            text(f"SELECT source_rows, throttled_seconds FROM {S}.data_migration_state WHERE name = :n"),
            {"n": m.name},
        ).one()
    result = RunResult(
        m.name, "running", source_rows=source, throttled_seconds=-throttled_before, workers=workers
    )
    while True:
        if workers <= 1:
            outcome = Worker(engine, m, options, worker_id=f"{socket.gethostname()}:{os.getpid()}:0").run(
                result
            )
        else:
            outcome = run_workers(engine, m, options, result, workers)
        if outcome is not None:
            return retry_transient(lambda outcome=outcome: _finish(engine, m, result, outcome, started))
        if not retry_transient(lambda: extend_slices_in_txn(engine, m, options.slice_keys)):
            break  # every slice done and no rows written since the plan need it
    return retry_transient(lambda: _finish(engine, m, result, None, started))


def _finish(
    engine: Engine, m: DataMigration, result: RunResult, outcome: tuple | None, started: float
) -> RunResult:
    """Record how the run ended; on success verify nothing was left behind (done + quarantined = needed)."""
    result.seconds = time.monotonic() - started
    with engine.begin() as conn:
        row = (
            conn.execute(text(f"SELECT * FROM {S}.data_migration_state WHERE name = :n"), {"n": m.name})
            .mappings()
            .one()
        )
        result.source_rows, result.rows_done = row["source_rows"], row["rows_done"]
        result.rows_quarantined, result.retries = row["rows_quarantined"], row["retries"]
        result.throttled_seconds += row[
            "throttled_seconds"
        ]  # it started as minus the state's total before this run
        conn.execute(
            text(
                f"UPDATE {S}.data_migration_state SET seconds_running = seconds_running + :s WHERE name = :n"
            ),
            {"n": m.name, "s": result.seconds},
        )
        if outcome is not None:
            status, reason = outcome
            result.status, result.stop_reason = status, reason
            if status in ("interrupted", "failed"):
                state.transition(conn, m.name, status, error=reason)
            return result
        left = count_pending(conn, m)
        if left:
            reason = f"{left} rows still need it after every slice was walked (the step skips rows it should handle)"
            state.transition(conn, m.name, "failed", error=reason)
            raise DataMigrationFailed(f"data migration {m.name} failed its completeness check: {reason}")
        state.transition(conn, m.name, "finished")
        result.status = "finished"
        if row["source_estimated"]:  # now it is known: the rows done and set aside are what needed it
            result.source_rows = result.rows_done + result.rows_quarantined
            conn.execute(
                text(
                    f"""UPDATE {S}.data_migration_state SET source_rows = :src, source_estimated = false
                        WHERE name = :n"""
                ),
                {"n": m.name, "src": result.source_rows},
            )
    if result.rows_done + result.rows_quarantined != result.source_rows:
        log.warning(
            "%s: done %d + quarantined %d != %d rows that needed it at the start (rows changed meanwhile)",
            m.name,
            result.rows_done,
            result.rows_quarantined,
            result.source_rows,
        )
    return result
