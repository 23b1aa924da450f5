"""Throttling a run on database health: look every few batches, act on ``health.decide``, count the time it costs.

What each action does here:
- ``go``: nothing;
- ``shrink``: halve the batch (an ordinary vacuum is working on the table; smaller batches keep out of its way);
- ``vacuum``: start a plain ``VACUUM`` of the table on a connection of its own, in a background thread, and go on
  batching (plain VACUUM takes no lock that blocks reads or writes); for a role that may not vacuum, or with the
  engine's vacuum turned off (``RunOptions.vacuum``, ``TRADEDB_DATA_VACUUM=0``), pause once instead, longer the
  further the dead tuples are past the limit;
- ``wait``: sleep a second and look again, at most ``max_pause_seconds`` per wait; then a warning and the run goes
  on (the app is still protected by the batch's lock and statement timeouts).

The time spent paused is the run's ``throttled_seconds``: it goes into the state row (so every worker's adds up),
the progress line, the result, the ledger and ``tradedb data status``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from data_migrations.base import DataMigration, SqlStep
from data_migrations.engine import batch_size
from data_migrations.engine.health import (
    VACUUM_APPLICATION,
    Decision,
    Health,
    Thresholds,
    decide,
    may_vacuum,
    observe,
)
from data_migrations.engine.options import RunOptions

log = logging.getLogger("tradedb.data")

THROTTLE_EVERY = 10  # look at the table's health every this many batches
THROTTLE_SLEEP = 1.0  # one step of a wait
# our VACUUM never queues long behind DDL (it would then hold up the DDL's followers)
VACUUM_LOCK_TIMEOUT = "2s"
# at the end of a run, how long to let our VACUUM finish before leaving it to itself
VACUUM_JOIN_SECONDS = 5.0

WaitNote = Callable[[str, float], None]
"""Told while a wait lasts: the reason and how long the run has been held back so far."""


class Throttle:
    """One worker's throttle: when to look, what to do, and how long it held the run back."""

    def __init__(
        self, engine: Engine, m: DataMigration, options: RunOptions, on_wait: WaitNote | None
    ) -> None:
        self.engine = engine
        self.m = m
        self.options = options
        self.on_wait = on_wait
        self.thresholds = Thresholds(options.dead_tuple_ratio, options.min_dead_tuples)
        self.own_dead = 0  # dead tuples this run's updates left on the table since its last VACUUM began
        self.seconds = 0.0  # time this throttle held the run back
        self.batches = 0
        self.vacuums = 0
        self._vacuum: threading.Thread | None = None
        self._may_vacuum: bool | None = None
        # a step that inserts into other tables (rowcount_is_rows=False) leaves no dead tuples on the walked table
        self._updates_table = not (isinstance(m.step, SqlStep) and not m.step.rowcount_is_rows)

    def count(self, rows: int) -> None:
        """Note one batch and the rows it wrote."""
        self.batches += 1
        self.left_dead(rows)

    def left_dead(self, tuples: int) -> None:
        """Note dead tuples this run left on the table: a batch's updates, or a rolled-back batch's writes."""
        if self._updates_table:
            self.own_dead += tuples

    def due(self) -> bool:
        return self.options.throttle and self.batches > 0 and self.batches % THROTTLE_EVERY == 0

    def check(self, size: int, time_left: Callable[[], float]) -> int:
        """Act on the table's health now; return the batch size to go on with. ``time_left()``: seconds to the
        deadline (infinite without one), so a wait never eats the end of the window."""
        waited_since = None
        while True:
            with self.engine.connect() as conn:
                health = observe(conn, self.m.table)
            decision = decide(health, self.own_dead, self.thresholds)
            if decision.action == "go":
                return size
            if decision.action == "shrink":
                log.info("%s: %s", self.m.name, decision.reason)
                return batch_size.split(size, self.options.min_batch)
            if decision.action == "vacuum":
                self._vacuum_or_pace(decision, health, time_left)
                return size
            now = time.monotonic()
            waited_since = waited_since or now
            held = now - waited_since
            if held >= self.options.max_pause_seconds or time_left() <= THROTTLE_SLEEP:
                log.warning(
                    "%s: held back %.0fs (%s); going on: the batch's lock and statement timeouts still protect the app",
                    self.m.name,
                    held,
                    decision.reason,
                )
                return size
            log.info("%s: throttled for %.0fs: %s", self.m.name, held, decision.reason)
            self._pause(THROTTLE_SLEEP, decision.reason, held)

    def _vacuum_or_pace(self, decision: Decision, h: Health, time_left: Callable[[], float]) -> None:
        if self._vacuum is not None and self._vacuum.is_alive():
            return
        if self.options.vacuum and self._allowed_to_vacuum():
            log.info("%s: %s (in the background; batches go on)", self.m.name, decision.reason)
            self.own_dead = 0
            self.vacuums += 1
            self._vacuum = threading.Thread(
                target=self._run_vacuum, name=f"vacuum {self.m.table}", daemon=True
            )
            self._vacuum.start()
            return
        # no vacuum of ours: give autovacuum room, longer the further past the limit, within one wait's bound
        limit = max(self.thresholds.min_dead_tuples, self.thresholds.dead_tuple_ratio * max(h.live, 1))
        pause = min(self.options.max_pause_seconds, THROTTLE_SLEEP * h.dead / limit, max(time_left() - 1, 0))
        reason = f"{decision.reason.replace(': vacuuming', '')}; pacing (this role may not vacuum it)"
        log.info("%s: %s for %.1fs", self.m.name, reason, pause)
        self._pause(pause, reason, 0.0)

    def _allowed_to_vacuum(self) -> bool:
        if self._may_vacuum is None:
            with self.engine.connect() as conn:
                self._may_vacuum = may_vacuum(conn, self.m.table)
            if not self._may_vacuum:
                log.info("%s: this role may not VACUUM %s; pacing instead", self.m.name, self.m.table)
        return self._may_vacuum

    def _run_vacuum(self) -> None:
        vacuum_engine = create_engine(
            self.engine.url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": VACUUM_APPLICATION},
        )
        started = time.monotonic()
        try:
            with vacuum_engine.connect() as conn:
                conn.execute(text(f"SET lock_timeout = '{VACUUM_LOCK_TIMEOUT}'"))
                conn.execute(text(f"VACUUM {self.m.table}"))
            log.info("%s: VACUUM %s done in %.1fs", self.m.name, self.m.table, time.monotonic() - started)
        except Exception as exc:  # a failed vacuum leaves the table as it was; the next check decides again
            log.warning("%s: VACUUM %s failed: %s", self.m.name, self.m.table, str(exc).splitlines()[0])
        finally:
            vacuum_engine.dispose()

    def _pause(self, seconds: float, reason: str, held: float) -> None:
        if self.on_wait:
            self.on_wait(reason, held)
        time.sleep(seconds)
        self.seconds += seconds

    def close(self) -> None:
        """At the end of the run: give our VACUUM a moment to finish; a longer one finishes on its own."""
        if self._vacuum is not None and self._vacuum.is_alive():
            self._vacuum.join(VACUUM_JOIN_SECONDS)
            if self._vacuum.is_alive():
                log.info("%s: VACUUM %s still running; it finishes on its own", self.m.name, self.m.table)
