"""The batch engine: runs one declared data migration to completion, safely (``coordinator`` says how a run goes).

Modules, from the entry points down: ``coordinator`` (run, revert, finish inline), ``processes`` (worker
processes), ``worker`` (claim slices, one batch per transaction), ``slices`` (the key-space plan), ``lock`` (one
runner per migration), ``position`` (may it run at this revision), ``retries``, ``health`` (throttling signals),
``batch_size`` (the pure sizing rule), ``progress``, ``state`` (run state and its transitions), ``run_ledger``
(the ledger row and alerts of a run), ``options`` (what a run is asked and what it reports).

May import: ``data_migrations.base`` and the registry, ``tradedb.schema`` and ``tradedb.core``.
"""

from data_migrations.engine.coordinator import finalize_inline, revert, run
from data_migrations.engine.lock import DATA_LOCK_CLASS
from data_migrations.engine.options import BadRow, DataMigrationFailed, RunOptions, RunResult
from data_migrations.engine.position import check_schema_position, runnable
from data_migrations.engine.retries import retry_transient

__all__ = [
    "DATA_LOCK_CLASS",
    "BadRow",
    "DataMigrationFailed",
    "RunOptions",
    "RunResult",
    "check_schema_position",
    "finalize_inline",
    "retry_transient",
    "revert",
    "run",
    "runnable",
]
