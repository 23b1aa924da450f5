"""The worker: claims slices and walks each batch by batch, one transaction per batch.

Between batches it honours pause/cancel written by other processes, stops before the deadline, backs off while the
database is unhealthy and resizes the batch towards the target duration. A batch's step, quarantine inserts,
checkpoint and history row commit together, so a crash at any instant loses nothing and repeats nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from data_migrations.base import DataMigration, SqlStep
from data_migrations.engine import batch_size, state
from data_migrations.engine.isolation import PoisonSearch, database_reason, is_data_error
from data_migrations.engine.lock import status_and_lock
from data_migrations.engine.options import BadRow, DataMigrationFailed, RunOptions, RunResult
from data_migrations.engine.pinpoint import REFUSAL_PIECES, apply_isolating
from data_migrations.engine.progress import Progress, RateWindow
from data_migrations.engine.quarantine import quarantine, require_within_allowance
from data_migrations.engine.retries import backoff_seconds, retry_transient, transient_cause
from data_migrations.engine.steps import Applied
from data_migrations.engine.throttle import Throttle, WaitNote
from tradedb.core.errors import cause_line
from tradedb.schema.pending_rows import pending_rows_sql
from tradedb.schema.state_schema import STATE_SCHEMA

S = STATE_SCHEMA
log = logging.getLogger("tradedb.data")

PAUSE_POLL_SECONDS = 0.5  # how often a paused runner looks for resume/cancel


class Worker:
    """Walks claimed slices batch by batch. Several may run on one migration: threads, processes or other hosts.

    ``stop``: set by a sibling worker that failed, so this one stops at its next batch boundary too. ``on_wait``:
    who hears about a throttle wait (by default this worker's own progress reporter).
    """

    def __init__(
        self,
        engine: Engine,
        migration: DataMigration,
        options: RunOptions,
        worker_id: str,
        *,
        stop: threading.Event | None = None,
        on_wait: WaitNote | None = None,
    ) -> None:
        self.engine = engine
        self.m = migration
        self.options = options
        self.worker_id = worker_id
        self.size = options.initial_batch
        self.recent: list[tuple[int, float]] = []
        self.batches = 0
        self.started = time.monotonic()
        self.rows_this_run = 0
        self.rate = RateWindow()
        self.rate.add(0)
        self.search = PoisonSearch()
        self._range: tuple[int, int, int] | None = None  # the batch under way: lo, hi and the rows between
        self._step: Applied | None = None  # what the step of the last batch did (None: it did not run)
        self.pieces = 1  # statements per batch of a SQL step (``pinpoint``)
        self.stop = stop or threading.Event()
        self.throttle = Throttle(engine, migration, options, on_wait=on_wait or self._report_wait)
        self._recorded_throttle = 0.0  # of throttle.seconds, the part already added to the state row

    def run(self, result: RunResult) -> tuple | None:
        """Process slices until none are left (None) or the run must stop: ``(status, reason)``."""
        try:
            return self._walk(result)
        finally:
            self.throttle.close()

    def _walk(self, result: RunResult) -> tuple | None:
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
            # the rows written, and the rows refused statements wrote before the database refused them
            self.throttle.count(rows + (self._step.wasted if self._step else 0))
            result.add_batch(seconds, rows + quarantined, attempts)
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
        if self.stop.is_set():
            return ("interrupted", "another worker of this run stopped")
        while True:
            with self.engine.connect() as conn:
                status = status_and_lock(conn, self.m, self.options.lock_pid)
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
        if self.throttle.due():
            self.size = self.throttle.check(self.size, self._time_left)
            self._record_throttled()
        return None

    def _past_deadline(self, margin_seconds: float) -> bool:
        return self._time_left() <= margin_seconds

    def _time_left(self) -> float:
        d = self.options.deadline
        return float("inf") if d is None else d.timestamp() - datetime.now(UTC).timestamp()

    def _record_throttled(self) -> None:
        """Add new held-back time to the state row, where every worker's adds up for the result and the ledger."""
        seconds = self.throttle.seconds - self._recorded_throttle
        if seconds <= 0:
            return
        self._recorded_throttle = self.throttle.seconds
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    f"UPDATE {S}.data_migration_state SET throttled_seconds = throttled_seconds + :s WHERE name = :n"
                ),
                {"s": seconds, "n": self.m.name},
            )

    def _report_wait(self, reason: str, held: float) -> None:
        if self.options.on_progress:
            self.options.on_progress(self._progress(throttled=reason, throttled_for=held))

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
        refused: tuple[int, str] | None = None
        while True:
            attempt += 1
            t0 = time.monotonic()
            try:
                done, rows, quarantined, span = self._batch(slice_, attempt, t0, refused)
            except BadRow as exc:
                self._fail(str(exc))
            except DBAPIError as exc:
                if is_data_error(exc) and self._range is not None:
                    refused = self._narrow(exc)
                    attempt -= 1  # a refused row is not a failed attempt: the search goes on at once
                    continue
                cause = transient_cause(exc)
                if cause is None or attempt >= self.options.max_attempts:
                    self._fail(
                        f"data migration {self.m.name} failed on key range after {slice_.get('last_key', '?')} "
                        f"(batch of {self.size}) after {attempt} attempt(s): {cause_line(exc)}"
                    )
                if cause == "timeout":
                    self.size = batch_size.split(self.size, self.options.min_batch)
                self._count_retry()
                delay = backoff_seconds(attempt)
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
            set_aside_refused = self._step is not None and bool(self._step.refused)
            if refused is not None or set_aside_refused or (self.search.until is not None and done):
                # the row is set aside, or the slice ended; a batch that set rows aside took longer than its
                # rows say, so it does not size the next one either
                self.size = self.search.finish(self.size)
            elif self.search.until is None:  # sizes while searching say nothing about the table's rows
                self.recent.append((span, seconds))
                self.size = batch_size.next_batch_size(
                    self.size,
                    self.recent,
                    self.options.target_seconds,
                    self.options.min_batch,
                    self.options.max_batch,
                )
            return done, rows, quarantined, seconds, attempt

    def _narrow(self, exc: DBAPIError) -> tuple[int, str] | None:
        """The database refused the batch's range: search within it, or, for one row, return it to set aside."""
        lo, hi, keys = self._range
        self.pieces = REFUSAL_PIECES
        self.throttle.left_dead(getattr(exc, "dead_tuples", 0))  # the rolled-back batch's writes
        if self.search.refused(hi, keys, self.size):
            log.info(
                "%s: the database refused a row in (%s, %s]: narrowing the batches around it",
                self.m.name,
                lo,
                hi,
            )
            return None
        log.warning("%s: quarantining row %s: %s", self.m.name, hi, database_reason(exc))
        return (hi, database_reason(exc))

    def _batch(
        self, slice_: dict, attempt: int, started: float, refused: tuple[int, str] | None = None
    ) -> tuple[bool, int, int, int]:
        """One batch in one transaction: step, quarantine, checkpoint and history commit together.

        ``refused``: the one row the database refused, found by the poison search; this batch sets it aside
        (with its original values) instead of running the step on it.
        """
        m = self.m
        self._range = None  # set once the step is about to run: only its refusals are searched
        self._step = None
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
            if refused is not None:
                hi, upper, keys = refused[0], refused[0], 1
                applied = Applied(0, refused=[refused])
            else:
                size = self._search_size(conn, lo)
                upper, keys = conn.execute(
                    text(
                        f"""SELECT max(k), count(*) FROM (SELECT {m.key} AS k FROM {m.table}
                            WHERE {m.key} > :lo AND {m.key} <= :hi ORDER BY {m.key} LIMIT :size) s"""
                    ),
                    {"lo": lo, "hi": row.hi, "size": size},
                ).one()
                hi = row.hi if upper is None else upper
                self._range = (lo, hi, keys)
            params = {"lo": lo, "hi": hi}
            needing = None
            if refused is None and isinstance(m.step, SqlStep) and not m.step.rowcount_is_rows:
                needing = conn.scalar(
                    text(
                        pending_rows_sql(m, with_quarantine=True)
                        + f" AND t.{m.key} > :lo AND t.{m.key} <= :hi"
                    ),
                    params,
                )
            if refused is None:
                applied = self._step = apply_isolating(conn, m, lo, hi, self.pieces)
                if applied.refused:  # where one row was refused, more are likely: make the next refusal cheap
                    self.pieces = REFUSAL_PIECES
            quarantined = quarantine(conn, m, applied.set_aside)
            done = hi >= row.hi
            conn.execute(
                text(
                    f"""UPDATE {S}.data_migration_slices SET last_key = :hi, done = :done, claimed_at = now()
                        WHERE name = :n AND slice_no = :no"""
                ),
                {"hi": hi, "done": done, "n": m.name, "no": slice_["slice_no"]},
            )
            rows = applied.written if needing is None else max(int(needing) - quarantined, 0)
            conn.execute(
                text(
                    f"""UPDATE {S}.data_migration_state SET rows_done = rows_done + :rows,
                          rows_quarantined = rows_quarantined + :q, batches = batches + 1, batch_size = :size,
                          updated_at = now() WHERE name = :n"""
                ),
                {"rows": rows, "q": quarantined, "size": self.size, "n": m.name},
            )
            if quarantined:
                require_within_allowance(conn, m)
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
        self._range = None
        return done, rows, quarantined, max(hi - lo, 1) if upper is None else min(self.size, hi - lo)

    def _search_size(self, conn: Connection, lo: int) -> int:
        """The batch size now: the adaptive one, or, while searching for a refused row, half the rows left before it."""
        until = self.search.until
        if until is None:
            return self.size
        if lo >= until:  # the refused range went through after all (its refusal was not about this data)
            self.size = self.search.finish(self.size)
            return self.size
        left = conn.scalar(
            text(f"SELECT count(*) FROM {self.m.table} WHERE {self.m.key} > :lo AND {self.m.key} <= :until"),
            {"lo": lo, "until": until},
        )
        return self.search.size_for(int(left))

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

    def _progress(self, throttled: str | None = None, throttled_for: float = 0.0) -> Progress:
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    f"""SELECT source_rows, rows_done, rows_quarantined, retries, throttled_seconds
                        FROM {S}.data_migration_state WHERE name = :n"""
                ),
                {"n": self.m.name},
            ).one()
        return Progress(
            self.m.name,
            row.rows_done + row.rows_quarantined,
            row.source_rows,
            self.rate.add(self.rows_this_run),
            self.size,
            self.batches,
            row.retries,
            throttled,
            throttled_for,
            row.throttled_seconds + self.throttle.seconds - self._recorded_throttle,
        )

    def _report(self, result: RunResult) -> None:
        if self.options.on_progress:
            self.options.on_progress(self._progress())
