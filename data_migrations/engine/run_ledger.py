"""Writing data-migration runs into the ledger, and raising the alerts a run deserves.

Every run and revert, from the CLI, Dagster or the contract guard's inline finalisation, passes through
``recorded``, so the ledger has one row per run with the rows it touched in that run (not the running total) and
alerts fire for failures outside Dagster and for rows newly quarantined.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, text

from tradedb.core import alerts
from tradedb.core.db import database_size
from tradedb.core.launchers import cli_user
from tradedb.schema import STATE_SCHEMA, has_state_table, ledger

OUTCOMES = {"finished": "success", "failed": "failure"}  # anything else (interrupted, paused...) stopped


@dataclass
class RunRecord:
    entry: ledger.LedgerEntry
    done_before: int
    quarantined_before: int
    result: object | None = None


def _counts(engine: Engine, name: str) -> tuple[int, int, int]:
    with engine.connect() as conn:
        size = database_size(conn)
        if not has_state_table(conn, "data_migration_state"):
            return size, 0, 0
        row = conn.execute(
            text(
                f"SELECT rows_done, rows_quarantined FROM {STATE_SCHEMA}.data_migration_state WHERE name = :n"
            ),
            {"n": name},
        ).first()
    return size, (row[0] if row else 0), (row[1] if row else 0)


@contextmanager
def recorded(engine: Engine, migration, direction: str, options) -> Iterator[RunRecord]:
    """Record the block as one ledger row; exceptions are recorded as failures and re-raised."""
    size, done, quarantined = _counts(engine, migration.name)
    entry = ledger.LedgerEntry(
        kind="data",
        name=migration.name,
        direction=direction,
        environment=getattr(options, "environment", "dev"),
        launched_by=getattr(options, "launched_by", None) or cli_user("cli"),
        run_id=getattr(options, "run_id", None),
        started_at=ledger.now(),
        finished_at=ledger.now(),
        outcome="success",
        db_size_before=size,
    )
    record = RunRecord(entry, done, quarantined)
    try:
        yield record
    except BaseException as exc:
        entry.outcome, entry.error = (
            "failure",
            str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc),
        )
        _close(engine, record)
        raise
    _close(engine, record)


def ended(record: RunRecord, result) -> None:
    """Attach the engine's result to the record (its status decides the outcome)."""
    record.result = result
    record.entry.outcome = OUTCOMES.get(result.status, "stopped")
    record.entry.error = result.stop_reason if result.status != "finished" else None


def _close(engine: Engine, record: RunRecord) -> None:
    entry = record.entry
    entry.finished_at = ledger.now()
    try:
        size, done, quarantined = _counts(engine, entry.name)
    except Exception:  # the database went away: record what we know
        size, done, quarantined = None, record.done_before, record.quarantined_before
    entry.db_size_after = size
    entry.rows_touched = max(0, done - record.done_before) if entry.direction == "run" else None
    new_quarantined = max(0, quarantined - record.quarantined_before)
    entry.detail = {"rows_quarantined": new_quarantined, "status": getattr(record.result, "status", "error")}
    if record.result is not None:
        entry.detail.update(
            batches=record.result.batches,
            retries=record.result.retries,
            seconds=round(record.result.seconds, 3),
            throttled_seconds=round(record.result.throttled_seconds, 3),
        )
    ledger.record_apart(engine, entry)
    if new_quarantined:
        alerts.send(
            entry.environment,
            alerts.QUARANTINE,
            f"{entry.name} quarantined {new_quarantined} row(s) on {entry.environment}",
            f"see `tradedb data quarantine {entry.name} --env {entry.environment}`",
            {"launched_by": entry.launched_by},
        )
    if entry.outcome == "failure" and entry.run_id is None:
        alerts.send(
            entry.environment,
            alerts.RUN_FAILED,
            f"data migration {entry.name} failed on {entry.environment}",
            entry.error or "",
            {"launched_by": entry.launched_by},
        )
