"""The batch engine: runs one declared data migration to completion, safely (``coordinator`` says how a run goes).

Modules, from the entry points down: ``coordinator`` (run, revert, finish inline), ``side_by_side`` (several
migrations at once, never two on one table), ``parallel`` (worker threads and processes), ``worker`` (claim
slices, one batch per transaction), ``pinpoint`` (find a refused row inside its batch), ``isolation`` (what is a
data error; halving when pinpointing cannot name the row), ``steps`` (apply a declared step to a range),
``quarantine`` (rows set aside, and the bound), ``throttle`` and ``health`` (the table's state, what to do about
it), ``slices`` (the key-space plan), ``lock`` (one runner per migration), ``position`` (may it run at this
revision), ``retries``, ``batch_size`` (the pure sizing rule), ``progress``, ``state`` (run state and its
transitions), ``run_ledger`` (the ledger row and alerts of a run), ``options`` (what a run is asked and what it
reports).

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
