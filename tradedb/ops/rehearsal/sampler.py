"""The lock sampler: polls ``pg_locks`` while a rehearsal step runs and keeps the longest ACCESS EXCLUSIVE lock.

A sampling thread on its own connection, every ``SAMPLE_SECONDS``; a lock held for less than that may be seen
once or not at all, which the report says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, text

from tradedb.core.db import make_engine
from tradedb.core.errors import cause_line
from tradedb.core.settings import Environment

log = logging.getLogger("tradedb.rehearsal")


SAMPLE_SECONDS = 0.02
"""How often the lock sampler polls ``pg_locks``. A lock held for less than this may be seen once or not at all."""

SAMPLE_MS = round(SAMPLE_SECONDS * 1000)

SAMPLER_APPLICATION = "tradedb-lock-sampler"

# a sampling query that hangs is cancelled instead of hanging the sampler
SAMPLER_STATEMENT_TIMEOUT_MS = 1_000

SAMPLER_JOIN_SECONDS = 2.0  # how long stopping waits for the sampling thread (it is a daemon either way)

LOCKS_SQL = text(
    """SELECT l.pid, l.relation::bigint AS relid, l.relation::regclass::text AS relation,
              coalesce(a.application_name, '') AS holder
       FROM pg_locks l
       JOIN pg_class c ON c.oid = l.relation
       LEFT JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.granted
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND l.pid <> pg_backend_pid()"""
)
"""Granted ACCESS EXCLUSIVE locks on relations others can see (joining ``pg_class`` leaves out tables created by the
uncommitted transaction itself: nobody can wait for those), held by any backend but ours."""


@dataclass
class LockInterval:
    """One lock seen in consecutive samples: held at least ``last - first`` (at most about two periods more)."""

    step: str | None
    relation: str
    holder: str
    first: float
    last: float

    @property
    def ms(self) -> float:
        return (self.last - self.first) * 1000


class LockSampler:
    """Watches ``pg_locks`` from its own connection while the rehearsal runs, and attributes locks to steps.

    Use as a context manager around the steps, and ``with sampler.step(name):`` around each. A lock is attributed
    to the step current when it was first seen. Sampling failures are recorded in ``error``, never raised: the
    rehearsal matters more than its lock figures.
    """

    def __init__(self, env: Environment, *, period: float = SAMPLE_SECONDS) -> None:
        self.env = env
        self.period = period
        self.error: str | None = None
        self.samples = 0
        self._intervals: list[LockInterval] = []
        self._open: dict[tuple[int, int], LockInterval] = {}
        self._step: str | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None

    def __enter__(self) -> LockSampler:
        try:
            self._engine = make_engine(
                self.env,
                isolation_level="AUTOCOMMIT",
                connect_args={
                    "application_name": SAMPLER_APPLICATION,
                    "options": f"-c statement_timeout={SAMPLER_STATEMENT_TIMEOUT_MS}",
                },
            )
            conn = self._engine.connect()
        except Exception as exc:  # no figures, but the rehearsal goes on
            self._failed(exc)
            return self
        self._thread = threading.Thread(target=self._run, args=(conn,), name="lock-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(SAMPLER_JOIN_SECONDS)
        if self._engine is not None and (self._thread is None or not self._thread.is_alive()):
            self._engine.dispose()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Attribute locks first seen inside the block to step ``name``."""
        with self._mutex:
            self._step = name
        try:
            yield
        finally:
            with self._mutex:
                self._step = None

    def longest(self, name: str) -> tuple[float, str | None]:
        """(milliseconds, relation) of the longest lock of step ``name``; (0, None) when none was seen.

        0 ms with a relation means the lock was seen in one sample only: held for less than the sampling period.
        """
        with self._mutex:
            mine = [i for i in self._intervals if i.step == name]
        if not mine:
            return 0.0, None
        top = max(mine, key=lambda i: i.ms)
        return round(top.ms, 1), top.relation

    def _run(self, conn) -> None:
        try:
            with conn:
                while not self._stop.is_set():
                    rows = conn.execute(LOCKS_SQL).all()
                    self._record(rows, time.monotonic())
                    self._stop.wait(self.period)
        except Exception as exc:
            self._failed(exc)

    def _record(self, rows, now: float) -> None:
        with self._mutex:
            seen = set()
            for row in rows:
                key = (row.pid, row.relid)
                seen.add(key)
                interval = self._open.get(key)
                if interval is None:
                    interval = LockInterval(self._step, row.relation, row.holder, now, now)
                    self._open[key] = interval
                    self._intervals.append(interval)
                else:
                    interval.last = now
            for key in set(self._open) - seen:  # released: the next sighting is a new lock
                del self._open[key]
            self.samples += 1

    def _failed(self, exc: Exception) -> None:
        self.error = f"lock sampling stopped: {cause_line(exc)}"
        log.warning(self.error)
