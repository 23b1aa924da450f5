"""The declaration of a data migration: what it walks and what one batch does. The engine owns the run.

A data migration never loops, commits, sleeps or logs by itself. It says:
- which table and integer key it walks, and which rows still need it (``pending_where``, over alias ``t``);
- what one batch over the key range ``(:lo, :hi]`` does, either as set-based SQL (``SqlStep``) or as a pandas
  transform of the batch written back set-based (``PandasStep``);
- which rows it cannot transform and why (they go to quarantine, never silently skipped; rows the database
  refuses on write are found by the engine and quarantined with the database's reason), and how many may be set
  aside before the run stops (``max_quarantined``);
- how to revert one range (optional) and which invariants hold when it is done.

Every step MUST be idempotent over its range: after a crash the engine may run a range again (its checkpoint is
committed with the batch, so a committed batch is never repeated, but an uncommitted one is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd


@dataclass(frozen=True)
class SqlStep:
    """Set-based SQL over one key range.

    ``update_sql`` transforms the good rows of ``(:lo, :hi]``; ``reject_sql`` (optional) selects ``key, reason``
    for rows of the same range that cannot be transformed. ``update_sql`` must leave those rows alone.
    ``rowcount_is_rows``: the statement's rowcount is the number of source rows it migrated (an UPDATE of the walked
    table). Set it False when the statement writes elsewhere (an INSERT into another table): the engine then counts
    the range's pending rows itself, which costs one more read per batch.
    """

    update_sql: str
    reject_sql: str | None = None
    rowcount_is_rows: bool = True


@dataclass(frozen=True)
class TransformResult:
    """What a pandas transform returns: rows to write back, and rejected rows with a reason each."""

    rows: pd.DataFrame
    rejected: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({"key": [], "reason": []}))


@dataclass(frozen=True)
class PandasStep:
    """A pandas transform of one batch, written back set-based.

    ``read_sql`` selects the batch (``:lo``, ``:hi``); ``transform`` turns it into ``TransformResult``; the engine
    COPYs ``rows`` into a temporary table ``batch_result`` with ``result_columns`` (name -> SQL type) and runs
    ``write_sql`` (one UPDATE ... FROM batch_result, or INSERT ... SELECT) in the same transaction, with the
    batch's ``:lo`` and ``:hi`` bound too. An UPDATE ... FROM should say ``AND t.id > :lo AND t.id <= :hi``: the
    planner otherwise merge-joins the batch with the table's key index read from its first key, a cost that grows
    with every batch (measured: 100 ms of 300 per 20,000-row batch half way through a million rows).
    """

    read_sql: str
    transform: Callable[[pd.DataFrame], TransformResult]
    result_columns: dict[str, str]
    write_sql: str


@dataclass(frozen=True)
class Invariant:
    """SQL selecting the rows that violate a rule; the rule holds when it returns nothing.

    The selection includes the migration's key column (``id``): rows the migration quarantined are left out of the
    count, since they never got the transformation the rule describes.
    """

    name: str
    violations_sql: str
    legacy: bool = False
    """True when the SQL reads legacy columns that the contract revision drops: checked only before it runs."""


@dataclass(frozen=True)
class DataMigration:
    """One declared data migration; see the module docstring for the contract."""

    name: str
    after: str
    table: str
    description: str
    pending_where: str
    step: SqlStep | PandasStep
    key: str = "id"
    revert_sql: str | None = None
    invariants: tuple[Invariant, ...] = ()
    on_bad_row: Literal["quarantine", "stop"] = "quarantine"
    max_quarantined: int | float | None = None
    """How many rows may be quarantined in all (a row count, or a share below 1.0 of the rows that needed it) before
    the run stops: a transform that rejects far more than expected is more likely wrong than the data. None inherits
    the engine's default (``data_migrations.engine.quarantine``)."""

    @property
    def feature(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def kind(self) -> str:
        return "pandas" if isinstance(self.step, PandasStep) else "sql"

    @property
    def reversible(self) -> bool:
        return self.revert_sql is not None
