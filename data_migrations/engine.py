"""The batch engine: runs one declared data migration to completion, safely.

How a run goes:
1. take the migration's own advisory lock (a second run of the same migration is refused, naming the holder);
2. check the schema is between the migration's ``after`` revision and the contract that needs it;
3. plan key slices over ``[min(key), max(key)]`` once (kept in the state schema, reused by later runs);
4. workers claim slices (``FOR UPDATE SKIP LOCKED``) and walk each by keyset ranges ``(lo, hi]``; one transaction
   per batch holds the step, the quarantine inserts and the slice checkpoint, so a crash at any instant loses
   nothing and repeats nothing;
5. between batches: honour pause/cancel written by other processes, stop before the deadline, back off while the
   database is unhealthy, resize the batch towards the target duration;
6. transient failures (lock timeout, statement timeout, serialization failure, deadlock, dropped connection) are
   retried with backoff, statement timeouts halve the batch, and after the limits the run fails naming the range;
7. at the end, verify no row still needs the migration except the quarantined ones.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import multiprocessing
import os
import queue
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from psycopg2 import errors as pg_errors
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from data_migrations import batch_size, get, run_ledger, state
from data_migrations.base import DataMigration, PandasStep, SqlStep
from data_migrations.health import throttle_reasons
from data_migrations.progress import Progress, Reporter
from tradedb.errors import TradeDBError, cause_line
from tradedb.guards import count_pending, pending_rows_sql
from tradedb.schema import STATE_SCHEMA, revisions

S = STATE_SCHEMA
log = logging.getLogger("tradedb.data")

LOCK_TIMEOUT_MS = 2_000  # a batch waits at most this long for a row/table lock, then retries later
STATEMENT_TIMEOUT_MS = 30_000  # a batch statement running longer than this is cancelled and the batch halved
MAX_ATTEMPTS = 5  # attempts per batch before the run fails
BACKOFF_SECONDS = 0.2  # first retry delay; doubles per attempt
MAX_BACKOFF_SECONDS = 5.0
SLICE_KEYS = 250_000  # key span of one slice: the unit workers claim
THROTTLE_EVERY = 10  # ask the health indicators every this many batches
THROTTLE_SLEEP = 1.0  # back off this long per unhealthy check
PAUSE_POLL_SECONDS = 0.5  # how often a paused runner looks for resume/cancel
DATA_LOCK_CLASS = 0x7464  # first key of the per-migration advisory lock ("td")
APPLICATION_PREFIX = "tradedb-data"


class DataMigrationFailed(TradeDBError):
    """A data migration stopped with an error after its retry limits (or on a bad row, when so declared)."""


class BadRow(Exception):
    """A row the step cannot transform, in a migration declared ``on_bad_row="stop"``."""


@dataclass
class RunOptions:
    """How to run: limits, deadline, workers and where progress goes."""

    deadline: datetime | None = None
    workers: int = 1
    lock_timeout_ms: int = LOCK_TIMEOUT_MS
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS
    max_attempts: int = MAX_ATTEMPTS
    target_seconds: float = batch_size.TARGET_SECONDS
    initial_batch: int = batch_size.INITIAL_BATCH
    min_batch: int = batch_size.MIN_BATCH
    max_batch: int = batch_size.MAX_BATCH
    slice_keys: int = SLICE_KEYS
    throttle: bool = True
    on_progress: Reporter | None = None
    max_batches: int | None = None  # stop (interrupted) after this many batches: for tests and dry rehearsals
    environment: str = "dev"  # for the ledger and alerts
    launched_by: str | None = None  # ledger: "dagster:<run id>"; None means the CLI user
    run_id: str | None = None


@dataclass
class RunResult:
    """What a run did: the final status and the numbers the CLI, Dagster metadata and the benchmark show."""

    name: str
    status: str
    source_rows: int = 0
    rows_done: int = 0
    rows_quarantined: int = 0
    batches: int = 0
    retries: int = 0
    seconds: float = 0.0
    stop_reason: str | None = None
    batch_seconds: list[float] = field(default_factory=list)
    batch_rows: list[int] = field(default_factory=list)

    @property
    def stopped_at_deadline(self) -> bool:
        """Stopped on purpose before the deadline (both deadline stops in ``_between_batches`` say so)."""
        return self.status == "interrupted" and "deadline" in (self.stop_reason or "")

    @property
    def rows_per_s(self) -> float:
        return self.rows_done / self.seconds if self.seconds > 0 else 0.0

    def metadata(self) -> dict:
        return {
            "status": self.status,
            "source_rows": self.source_rows,
            "rows_done": self.rows_done,
            "rows_quarantined": self.rows_quarantined,
            "batches": self.batches,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "stop_reason": self.stop_reason or "",
        }


# ---------------------------------------------------------------------------------------------------------------
# Entry points


def run(
    url_or_engine: URL | Engine, name: str | DataMigration, options: RunOptions | None = None
) -> RunResult:
    """Run data migration ``name`` until it is finished, paused past the deadline, cancelled or failed."""
    options = options or RunOptions()
    migration = name if isinstance(name, DataMigration) else get(name)
    engine, own = _engine(url_or_engine)
    try:
        with engine.connect() as lock_conn:
            _take_lock(lock_conn, migration)
            with run_ledger.recorded(engine, migration, "run", options) as entry:
                try:
                    result = _coordinate(engine, migration, options)
                    run_ledger.ended(entry, result)
                    return result
                finally:
                    lock_conn.execute(
                        text("SELECT pg_advisory_unlock(:c, hashtext(:n))"), _lock_args(migration)
                    )
                    lock_conn.commit()
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
            _take_lock(lock_conn, migration)
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
            lock_conn.execute(text("SELECT pg_advisory_unlock(:c, hashtext(:n))"), _lock_args(migration))
            lock_conn.commit()
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


def _lock_args(m: DataMigration) -> dict:
    return {"c": DATA_LOCK_CLASS, "n": m.name}


def _take_lock(conn: Connection, m: DataMigration) -> None:
    got = conn.scalar(text("SELECT pg_try_advisory_lock(:c, hashtext(:n))"), _lock_args(m))
    conn.commit()
    if not got:
        holder = conn.execute(
            text(
                """SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                   WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :c AND l.objid = hashtext(:n)::oid"""
            ),
            _lock_args(m),
        ).first()
        who = f"backend pid {holder.pid} ({holder.application_name})" if holder else "another session"
        raise TradeDBError(f"data migration {m.name} is already running ({who}); nothing was changed")


# ---------------------------------------------------------------------------------------------------------------
# Coordinator: plan, start workers, verify


def check_schema_position(conn: Connection, m: DataMigration) -> str | None:
    """Return None when the schema is where ``m`` can run, 'contracted' when it is past its contract, else raise."""
    from alembic.migration import MigrationContext

    current = MigrationContext.configure(conn).get_current_revision()
    order = [r.revision for r in revisions()]
    if m.after not in order:
        raise TradeDBError(
            f"data migration {m.name} runs after revision {m.after}, which is not in the history"
        )
    contract = next((r.revision for r in revisions() if m.name in r.requires_data), None)
    if current is None or current not in order or order.index(current) < order.index(m.after):
        raise TradeDBError(
            f"data migration {m.name} needs the schema at revision {m.after} or later; the database is at "
            f"{current or 'an empty schema'}. Run `alembic upgrade {m.after}` first."
        )
    if contract and order.index(current) >= order.index(contract):
        return "contracted"
    return None


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
        _plan_slices(conn, m, options.slice_keys)
    with engine.connect() as conn:
        source = int(
            conn.scalar(
                text(f"SELECT source_rows FROM {S}.data_migration_state WHERE name = :n"), {"n": m.name}
            )
        )
    result = RunResult(m.name, "running", source_rows=source)
    while True:
        if options.workers <= 1:
            outcome = Worker(engine, m, options, worker_id=f"{socket.gethostname()}:{os.getpid()}:0").run(
                result
            )
        else:
            outcome = _run_worker_processes(engine, m, options, result)
        if outcome is not None:
            return retry_transient(lambda outcome=outcome: _finish(engine, m, result, outcome, started))
        if not retry_transient(lambda: _extend_slices_in_txn(engine, m, options.slice_keys)):
            break  # every slice done and no rows written since the plan need it
    return retry_transient(lambda: _finish(engine, m, result, None, started))


def _plan_slices(conn: Connection, m: DataMigration, slice_keys: int) -> None:
    """Cut the key space into slices unless undone slices already exist (then this run resumes them)."""
    conn.execute(
        text(f"UPDATE {S}.data_migration_slices SET claimed_by = NULL WHERE name = :n"), {"n": m.name}
    )
    undone = conn.scalar(
        text(f"SELECT count(*) FROM {S}.data_migration_slices WHERE name = :n AND NOT done"), {"n": m.name}
    )
    if undone:
        return
    lo, hi = conn.execute(text(f"SELECT min({m.key}), max({m.key}) FROM {m.table}")).one()
    source = count_pending(conn, m)
    if lo is None or source == 0:
        return  # nothing needs it: keep the tallies of the run that did the work
    conn.execute(text(f"DELETE FROM {S}.data_migration_slices WHERE name = :n"), {"n": m.name})
    conn.execute(
        text(
            f"""UPDATE {S}.data_migration_state SET rows_done = 0, batches = 0, retries = 0, max_key = :hi,
                  rows_quarantined = (SELECT count(*) FROM {S}.quarantine WHERE migration = :n),
                  source_rows = :src + (SELECT count(*) FROM {S}.quarantine WHERE migration = :n),
                  seconds_running = 0 WHERE name = :n"""
        ),
        {"n": m.name, "src": source, "hi": hi},
    )
    _insert_slices(conn, m, lo - 1, hi, first_no=0, slice_keys=slice_keys)


def _insert_slices(
    conn: Connection, m: DataMigration, start: int, end: int, first_no: int, slice_keys: int
) -> None:
    bounds = list(range(start, end, slice_keys)) + [end]
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
        conn.execute(
            text(
                f"""INSERT INTO {S}.data_migration_slices (name, slice_no, lo, hi, last_key)
                    VALUES (:n, :no, :lo, :hi, :lo)"""
            ),
            {"n": m.name, "no": first_no + i, "lo": lo, "hi": hi},
        )


def _extend_slices_in_txn(engine: Engine, m: DataMigration, slice_keys: int) -> bool:
    with engine.begin() as conn:
        return _extend_slices(conn, m, slice_keys)


def _extend_slices(conn: Connection, m: DataMigration, slice_keys: int) -> bool:
    """Add slices for keys above the planned maximum that still need the migration; True when any were added."""
    planned = conn.scalar(
        text(f"SELECT max_key FROM {S}.data_migration_state WHERE name = :n"), {"n": m.name}
    )
    newest = conn.scalar(text(f"SELECT max({m.key}) FROM {m.table}"))
    if newest is None or (planned is not None and newest <= planned):
        return False
    start = planned if planned is not None else 0
    more = conn.scalar(
        text(pending_rows_sql(m, with_quarantine=True) + f" AND t.{m.key} > :start"), {"start": start}
    )
    conn.execute(
        text(
            f"UPDATE {S}.data_migration_state SET max_key = :hi, source_rows = source_rows + :more WHERE name = :n"
        ),
        {"n": m.name, "hi": newest, "more": more},
    )
    if not more:
        return False
    first = conn.scalar(
        text(f"SELECT coalesce(max(slice_no) + 1, 0) FROM {S}.data_migration_slices WHERE name = :n"),
        {"n": m.name},
    )
    _insert_slices(conn, m, start, newest, first_no=first, slice_keys=slice_keys)
    return True


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
    if result.rows_done + result.rows_quarantined != result.source_rows:
        log.warning(
            "%s: done %d + quarantined %d != %d rows that needed it at the start (rows changed meanwhile)",
            m.name,
            result.rows_done,
            result.rows_quarantined,
            result.source_rows,
        )
    return result


def _run_worker_processes(
    engine: Engine, m: DataMigration, options: RunOptions, result: RunResult
) -> tuple | None:
    """Run ``options.workers`` worker processes on the same migration; the parent reports progress."""
    ctx = multiprocessing.get_context("spawn")
    outcomes = ctx.Queue()
    url = engine.url
    child_options = dataclasses.replace(options, on_progress=None, workers=1)
    procs = [
        ctx.Process(target=_worker_main, args=(url, m.name, child_options, i, outcomes), daemon=True)
        for i in range(options.workers)
    ]
    for p in procs:
        p.start()
    started = time.monotonic()
    while any(p.is_alive() for p in procs):
        time.sleep(0.5)
        if options.on_progress:
            options.on_progress(_progress_from_state(engine, m, time.monotonic() - started, result.rows_done))
    for p in procs:
        p.join()
    results = []
    for _ in procs:
        try:
            results.append(outcomes.get(timeout=5))
        except queue.Empty:
            break
    failures = [r for r in results if r and r[0] in ("failed", "interrupted", "cancelled")]
    if any(p.exitcode for p in procs) and not failures:
        failures = [("failed", "a worker process died")]
    return failures[0] if failures else None


def _worker_main(url: URL, name: str, options: RunOptions, index: int, outcomes) -> None:
    """Entry point of one worker process (spawned: it builds its own engine and reads the registry itself)."""
    engine = create_engine(
        url, pool_pre_ping=True, connect_args={"application_name": f"{APPLICATION_PREFIX}:{index}"}
    )
    try:
        worker = Worker(engine, get(name), options, worker_id=f"{socket.gethostname()}:{os.getpid()}:{index}")
        outcomes.put(worker.run(RunResult(name, "running")))
    except TradeDBError as exc:
        outcomes.put(("failed", str(exc)))
    finally:
        engine.dispose()


def _progress_from_state(engine: Engine, m: DataMigration, elapsed: float, done_before: int) -> Progress:
    with engine.connect() as conn:
        row = (
            conn.execute(text(f"SELECT * FROM {S}.data_migration_state WHERE name = :n"), {"n": m.name})
            .mappings()
            .one()
        )
    done = row["rows_done"] + row["rows_quarantined"]
    return Progress(
        m.name,
        done,
        row["source_rows"],
        (done - done_before) / elapsed if elapsed else 0.0,
        row["batch_size"] or 0,
        row["batches"],
        row["retries"],
    )


# ---------------------------------------------------------------------------------------------------------------
# Worker: claim slices, run batches


class Worker:
    """Walks claimed slices batch by batch. Several may run on one migration, in other processes or hosts."""

    def __init__(self, engine: Engine, migration: DataMigration, options: RunOptions, worker_id: str) -> None:
        self.engine = engine
        self.m = migration
        self.options = options
        self.worker_id = worker_id
        self.size = options.initial_batch
        self.recent: list[tuple[int, float]] = []
        self.batches = 0
        self.started = time.monotonic()
        self.rows_this_run = 0

    def run(self, result: RunResult) -> tuple | None:
        """Process slices until none are left (None) or the run must stop: ``(status, reason)``."""
        slice_ = None
        while True:
            stop = self._bookkeeping(self._between_batches)
            if stop:
                return stop
            if slice_ is None:
                slice_ = self._bookkeeping(self._claim)
                if slice_ is None:
                    return None
            done, rows, quarantined, seconds, attempts = self._batch_with_retries(slice_)
            self.batches += 1
            self.rows_this_run += rows + quarantined
            result.batches += 1
            result.retries += attempts - 1
            result.batch_seconds.append(seconds)
            result.batch_rows.append(rows + quarantined)
            self._bookkeeping(lambda: self._report(result))
            if done:
                slice_ = None

    def _bookkeeping(self, step):
        """Run a between-batches step, retrying dropped connections like batches are (nothing to undo there)."""
        return retry_transient(step, self.options.max_attempts, on_retry=self._count_retry)

    # -- between batches: operator requests, deadline, health, sizing

    def _between_batches(self) -> tuple | None:
        if self.options.max_batches is not None and self.batches >= self.options.max_batches:
            return ("interrupted", f"stopped after {self.batches} batches as asked")
        while True:
            with self.engine.connect() as conn:
                status = state.status_of(conn, self.m.name)
            if status == "cancelled":
                return ("cancelled", "cancelled by an operator")
            if status != "paused":
                break
            if self._past_deadline(0):
                return ("interrupted", "deadline reached while paused")
            time.sleep(PAUSE_POLL_SECONDS)
        expected = self.options.target_seconds * 2
        if self._past_deadline(expected):
            return (
                "interrupted",
                f"deadline {self.options.deadline:%Y-%m-%d %H:%M:%S %Z} reached; resumes from the checkpoint",
            )
        if self.options.throttle and self.batches and self.batches % THROTTLE_EVERY == 0:
            self._throttle()
        return None

    def _past_deadline(self, margin_seconds: float) -> bool:
        d = self.options.deadline
        return d is not None and datetime.now(UTC).timestamp() + margin_seconds >= d.timestamp()

    def _throttle(self) -> None:
        waited = 0.0
        while True:
            with self.engine.connect() as conn:
                reasons = throttle_reasons(conn, self.m.table)
            if not reasons or self._past_deadline(THROTTLE_SLEEP):
                return
            log.info("%s: throttled: %s", self.m.name, "; ".join(reasons))
            if self.options.on_progress:
                self.options.on_progress(self._progress(throttled="; ".join(reasons)))
            time.sleep(THROTTLE_SLEEP)
            waited += THROTTLE_SLEEP
            if waited >= 60:
                return  # do not starve forever; the lock and statement timeouts still protect the app

    # -- claiming

    def _claim(self) -> dict | None:
        with self.engine.begin() as conn:
            row = conn.execute(
                text(
                    f"""UPDATE {S}.data_migration_slices s SET claimed_by = :w, claimed_at = now()
                        FROM (SELECT name, slice_no FROM {S}.data_migration_slices
                              WHERE name = :n AND NOT done AND (claimed_by IS NULL OR claimed_by = :w)
                              ORDER BY slice_no LIMIT 1 FOR UPDATE SKIP LOCKED) pick
                        WHERE s.name = pick.name AND s.slice_no = pick.slice_no
                        RETURNING s.slice_no, s.hi"""
                ),
                {"n": self.m.name, "w": self.worker_id},
            ).first()
        return {"slice_no": row.slice_no, "hi": row.hi} if row else None

    # -- one batch

    def _batch_with_retries(self, slice_: dict) -> tuple[bool, int, int, float, int]:
        attempt = 0
        while True:
            attempt += 1
            t0 = time.monotonic()
            try:
                done, rows, quarantined, span = self._batch(slice_, attempt, t0)
            except BadRow as exc:
                self._fail(str(exc))
            except DBAPIError as exc:
                cause = _transient_cause(exc)
                if cause is None or attempt >= self.options.max_attempts:
                    self._fail(
                        f"data migration {self.m.name} failed on key range after {slice_.get('last_key', '?')} "
                        f"(batch of {self.size}) after {attempt} attempt(s): {cause_line(exc)}"
                    )
                if cause == "timeout":
                    self.size = batch_size.split(self.size, self.options.min_batch)
                self._count_retry()
                delay = min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** (attempt - 1))
                log.warning(
                    "%s: %s on batch; retry %d in %.1fs (batch %d)",
                    self.m.name,
                    cause,
                    attempt,
                    delay,
                    self.size,
                )
                time.sleep(delay)
                continue
            seconds = time.monotonic() - t0
            self.recent.append((span, seconds))
            self.size = batch_size.next_batch_size(
                self.size,
                self.recent,
                self.options.target_seconds,
                self.options.min_batch,
                self.options.max_batch,
            )
            return done, rows, quarantined, seconds, attempt

    def _batch(self, slice_: dict, attempt: int, started: float) -> tuple[bool, int, int, int]:
        """One batch in one transaction: step, quarantine, checkpoint and history commit together."""
        m = self.m
        with self.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = {int(self.options.lock_timeout_ms)}"))
            conn.execute(text(f"SET LOCAL statement_timeout = {int(self.options.statement_timeout_ms)}"))
            row = conn.execute(
                text(
                    f"""SELECT last_key, hi, claimed_by FROM {S}.data_migration_slices
                        WHERE name = :n AND slice_no = :no FOR UPDATE"""
                ),
                {"n": m.name, "no": slice_["slice_no"]},
            ).one()
            if row.claimed_by != self.worker_id:
                return True, 0, 0, 0  # reclaimed by someone else: let go of it
            lo = row.last_key
            slice_["last_key"] = lo
            upper = conn.scalar(
                text(
                    f"""SELECT max(k) FROM (SELECT {m.key} AS k FROM {m.table}
                        WHERE {m.key} > :lo AND {m.key} <= :hi ORDER BY {m.key} LIMIT :size) s"""
                ),
                {"lo": lo, "hi": row.hi, "size": self.size},
            )
            hi = row.hi if upper is None else upper
            params = {"lo": lo, "hi": hi}
            needing = None
            if isinstance(m.step, SqlStep) and not m.step.rowcount_is_rows:
                needing = conn.scalar(
                    text(
                        pending_rows_sql(m, with_quarantine=True)
                        + f" AND t.{m.key} > :lo AND t.{m.key} <= :hi"
                    ),
                    params,
                )
            written, quarantined = self._apply_step(conn, params)
            done = hi >= row.hi
            conn.execute(
                text(
                    f"""UPDATE {S}.data_migration_slices SET last_key = :hi, done = :done, claimed_at = now()
                        WHERE name = :n AND slice_no = :no"""
                ),
                {"hi": hi, "done": done, "n": m.name, "no": slice_["slice_no"]},
            )
            rows = written if needing is None else max(int(needing) - quarantined, 0)
            conn.execute(
                text(
                    f"""UPDATE {S}.data_migration_state SET rows_done = rows_done + :rows,
                          rows_quarantined = rows_quarantined + :q, batches = batches + 1, batch_size = :size,
                          updated_at = now() WHERE name = :n"""
                ),
                {"rows": rows, "q": quarantined, "size": self.size, "n": m.name},
            )
            conn.execute(
                text(
                    f"""INSERT INTO {S}.data_migration_batches (name, worker, lo, hi, rows, quarantined, attempts, seconds)
                        VALUES (:n, :w, :lo, :hi, :rows, :q, :attempts, :secs)"""
                ),
                {
                    "n": m.name,
                    "w": self.worker_id,
                    "lo": lo,
                    "hi": hi,
                    "rows": rows,
                    "q": quarantined,
                    "attempts": attempt,
                    "secs": time.monotonic() - started,  # up to the commit that follows
                },
            )
        return done, rows, quarantined, max(hi - lo, 1) if upper is None else min(self.size, hi - lo)

    def _apply_step(self, conn: Connection, params: dict) -> tuple[int, int]:
        """Run the declared step over ``(lo, hi]``; return (rows migrated, rows sent to quarantine)."""
        step = self.m.step
        if isinstance(step, SqlStep):
            rejected = []
            if step.reject_sql:
                rejected = [(r.key, r.reason) for r in conn.execute(text(step.reject_sql), params)]
            q = self._quarantine(conn, rejected)
            written = conn.execute(text(step.update_sql), params).rowcount
            return written, q
        assert isinstance(step, PandasStep)
        # not pd.read_sql: it wraps driver errors in pandas' DatabaseError, hiding a dropped connection from the retry
        rows = conn.execute(text(step.read_sql), params)
        batch = pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))
        out = step.transform(batch)
        q = self._quarantine(conn, list(zip(out.rejected["key"], out.rejected["reason"], strict=True)))
        if len(out.rows):
            _copy_into_temp(conn, out.rows, step.result_columns)
            conn.execute(text(step.write_sql))
        return len(out.rows), q

    def _quarantine(self, conn: Connection, rejected: list[tuple]) -> int:
        if not rejected:
            return 0
        if self.m.on_bad_row == "stop":
            keys = ", ".join(str(k) for k, _ in rejected[:5])
            raise BadRow(
                f"data migration {self.m.name} met {len(rejected)} row(s) it cannot transform "
                f"(keys {keys}): {rejected[0][1]}"
            )
        res = conn.execute(
            text(
                f"""INSERT INTO {S}.quarantine (migration, row_key, reason, row_data)
                    SELECT :n, r.k, r.reason, to_jsonb(t) FROM unnest(CAST(:keys AS bigint[]), CAST(:reasons AS text[]))
                        AS r(k, reason) JOIN {self.m.table} t ON t.{self.m.key} = r.k
                    ON CONFLICT (migration, row_key) DO NOTHING"""
            ),
            {
                "n": self.m.name,
                "keys": [int(k) for k, _ in rejected],
                "reasons": [str(r) for _, r in rejected],
            },
        )
        return res.rowcount

    # -- bookkeeping

    def _count_retry(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text(f"UPDATE {S}.data_migration_state SET retries = retries + 1 WHERE name = :n"),
                {"n": self.m.name},
            )

    def _fail(self, reason: str) -> None:
        with self.engine.begin() as conn:
            state.transition(conn, self.m.name, "failed", error=reason)
        raise DataMigrationFailed(reason)

    def _progress(self, throttled: str | None = None) -> Progress:
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    f"SELECT source_rows, rows_done, rows_quarantined, retries FROM {S}.data_migration_state WHERE name = :n"
                ),
                {"n": self.m.name},
            ).one()
        elapsed = time.monotonic() - self.started
        return Progress(
            self.m.name,
            row.rows_done + row.rows_quarantined,
            row.source_rows,
            self.rows_this_run / elapsed if elapsed else 0.0,
            self.size,
            self.batches,
            row.retries,
            throttled,
        )

    def _report(self, result: RunResult) -> None:
        if self.options.on_progress:
            self.options.on_progress(self._progress())


def _copy_into_temp(conn: Connection, frame: pd.DataFrame, columns: dict[str, str]) -> None:
    """COPY a batch's result into ``batch_result`` (dropped at commit), for one set-based write-back."""
    cols = ", ".join(f"{name} {sqltype}" for name, sqltype in columns.items())
    conn.execute(text(f"CREATE TEMP TABLE IF NOT EXISTS batch_result ({cols}) ON COMMIT DROP"))
    buffer = io.StringIO()
    frame[list(columns)].to_csv(buffer, index=False, header=False, na_rep="\\N")
    buffer.seek(0)
    cursor = conn.connection.dbapi_connection.cursor()
    cursor.copy_expert(
        f"COPY batch_result ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer
    )
    # without statistics the planner guesses the temp table's size and may join it by scanning the whole target
    # table once per batch; ANALYZE of a few thousand rows costs milliseconds and keeps the join on the key index
    cursor.execute("ANALYZE batch_result")


def retry_transient(step, attempts: int = MAX_ATTEMPTS, on_retry=None):
    """Call ``step()``; on a transient database failure back off and call it again, up to ``attempts`` times."""
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except DBAPIError as exc:
            if _transient_cause(exc) is None or attempt == attempts:
                raise
            time.sleep(min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** (attempt - 1)))
            if on_retry:
                on_retry()
    return None


def _transient_cause(exc: DBAPIError) -> str | None:
    """Name a failure worth retrying ('timeout', 'lock', 'conflict', 'connection'), or None."""
    orig = exc.orig
    if isinstance(orig, pg_errors.QueryCanceled):
        return "timeout"
    if isinstance(orig, pg_errors.LockNotAvailable):
        return "lock"
    if isinstance(orig, (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)):
        return "conflict"
    if exc.connection_invalidated or isinstance(orig, pg_errors.AdminShutdown):
        return "connection"
    return None
