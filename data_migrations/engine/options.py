"""How a data-migration run is asked for (``RunOptions``) and what it reports back (``RunResult``).

The limits are named constants, each doubling as its option's default, so an operator reading one knows what a run
does unless told otherwise.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from data_migrations.engine import batch_size, health
from data_migrations.engine.progress import Reporter
from tradedb.core.errors import TradeDBError

LOCK_TIMEOUT_MS = 2_000  # a batch waits at most this long for a row/table lock, then retries later
STATEMENT_TIMEOUT_MS = 30_000  # a batch statement running longer than this is cancelled and the batch halved
MAX_ATTEMPTS = 5  # attempts per batch before the run fails
SLICE_KEYS = (
    250_000  # key span of one slice: the unit workers claim (fewer keys when several workers share a run)
)
AUTO_PARALLEL_MIN_ROWS = (
    100_000  # --workers auto runs one worker below this many pending rows (nothing to gain)
)
MAX_AUTO_WORKERS = 4  # --workers auto never runs more workers than this, nor more than the machine's cores
MAX_PAUSE_SECONDS = 30.0  # one throttle wait lasts at most this long; then a warning, and the run goes on
VACUUM_VARIABLE = (
    "TRADEDB_DATA_VACUUM"  # "0" stops the engine from vacuuming a table itself (it paces instead)
)


def vacuum_by_default() -> bool:
    return os.environ.get(VACUUM_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off")


class DataMigrationFailed(TradeDBError):
    """A data migration stopped with an error after its retry limits (or on a bad row, when so declared)."""


class BadRow(Exception):
    """The run must stop because of the data: a bad row in a migration declared ``on_bad_row="stop"``, or more
    quarantined rows than ``max_quarantined`` allows. Never retried."""


@dataclass
class RunOptions:
    """How to run: limits, deadline, workers and where progress goes."""

    deadline: datetime | None = None
    workers: int | Literal["auto"] = "auto"
    """Workers walking slices at once: threads for SQL steps (the database does the work), processes for pandas
    steps (the transform needs a core of its own). ``auto``: one below ``AUTO_PARALLEL_MIN_ROWS`` pending rows,
    else one per core up to ``MAX_AUTO_WORKERS``."""
    lock_timeout_ms: int = LOCK_TIMEOUT_MS
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS
    max_attempts: int = MAX_ATTEMPTS
    target_seconds: float = batch_size.TARGET_SECONDS
    initial_batch: int = batch_size.INITIAL_BATCH
    min_batch: int = batch_size.MIN_BATCH
    max_batch: int = batch_size.MAX_BATCH
    slice_keys: int = SLICE_KEYS
    throttle: bool = True
    vacuum: bool = field(default_factory=vacuum_by_default)
    """Vacuum the table itself when its dead tuples are this run's own (else pace); see ``engine.throttle``."""
    max_pause_seconds: float = MAX_PAUSE_SECONDS
    dead_tuple_ratio: float = health.DEAD_TUPLE_RATIO
    min_dead_tuples: int = health.MIN_DEAD_TUPLES
    on_progress: Reporter | None = None
    max_batches: int | None = None  # stop (interrupted) after this many batches: for tests and dry rehearsals
    environment: str = "dev"  # for the ledger and alerts
    launched_by: str | None = None  # ledger: "dagster:<run id>"; None means the CLI user
    run_id: str | None = None
    lock_pid: int | None = None
    """Backend pid holding the migration's advisory lock (set by the engine): workers stop when it is gone."""


def resolve_workers(requested: int | str, pending_rows: int) -> int:
    """How many workers a run gets: ``requested``, or for ``auto`` what the rows and the machine make worth it."""
    if requested != "auto":
        return max(1, int(requested))
    if pending_rows < AUTO_PARALLEL_MIN_ROWS:
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))


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
    throttled_seconds: float = 0.0
    stop_reason: str | None = None
    batch_seconds: list[float] = field(default_factory=list)
    batch_rows: list[int] = field(default_factory=list)
    workers: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_batch(self, seconds: float, rows: int, attempts: int) -> None:
        """Count one batch (worker threads share one result)."""
        with self._lock:
            self.batches += 1
            self.retries += attempts - 1
            self.batch_seconds.append(seconds)
            self.batch_rows.append(rows)

    @property
    def outside_batch_seconds(self) -> float:
        """Wall time not spent in a batch: planning, counts, state writes, checkpoints, throttling, waiting.

        With several workers, the batch time is shared out: wall time minus batch time over the workers.
        """
        return max(0.0, self.seconds - sum(self.batch_seconds) / max(self.workers, 1))

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
            "throttled_seconds": round(self.throttled_seconds, 3),
            "outside_batch_seconds": round(self.outside_batch_seconds, 3),
            "workers": self.workers,
            "rows_per_s": round(self.rows_per_s, 1),
            "stop_reason": self.stop_reason or "",
        }
