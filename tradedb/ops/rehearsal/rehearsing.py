"""Running a rehearsal: run the production deploy on a copy of production and measure what it will cost.

What a rehearsal does, in order:
1. refresh staging (by default: restore the latest production backup into it, taking one when none exists);
2. under the migration lock, note the starting revision and checksum every app table, and check that staging is
   still what the refresh put there (see ``rehearse`` for why the lock cannot simply be held through the refresh);
3. run the deploy steps exactly as the Dagster deploy job does (``tradedb.ops.pipeline.apply_revision`` and
   ``run_data_migration``, in ``deploy_order``, each data migration gated by the checks Dagster gates it with),
   timing each step while a ``LockSampler`` watches ``pg_locks`` for ACCESS EXCLUSIVE locks;
4. run the head checks (foreign-key orphans, schema drift);
5. round trip: downgrade to the starting revision, upgrade again through the same steps, and judge the checksums
   with ``validate.round_trip_problems``, the one rule of what must survive a round trip (see ``round_trip``);
6. return a ``RehearsalReport``: the Dagster rehearsal asset stores it as metadata, and the plan and the
   production schedule's fit decision read the step durations back, each data migration's scaled by production's
   rows over the rows it was rehearsed on (``StepMeasurement.scaled_seconds``).

``fingerprint()`` names what was rehearsed (revision files and data-migration declarations), so the sensor can ask
for exactly one rehearsal per change in code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text

import data_migrations
from data_migrations import checks as core_checks
from data_migrations.base import DataMigration
from tradedb import schema
from tradedb.core.db import app_tables, connect_checked, make_engine
from tradedb.core.errors import TradeDBError, cause_line
from tradedb.core.launchers import cli_user, dagster_launcher
from tradedb.core.settings import Environment
from tradedb.ops.backup import Backup
from tradedb.ops.checksums import differing
from tradedb.ops.deploy_order import Step, deploy_order, fingerprint, pending_revisions
from tradedb.ops.pipeline import apply_revision, run_data_migration
from tradedb.ops.rehearsal.refresh import (
    Refreshed,
    as_refreshed,
    refresh_from_production,
    refuse_production,
    refuse_while_migrating,
    require_refreshed,
)
from tradedb.ops.rehearsal.report import CheckOutcome, RehearsalFailed, RehearsalReport, StepMeasurement
from tradedb.ops.rehearsal.round_trip import not_restorable_tables
from tradedb.ops.rehearsal.sampler import SAMPLE_MS, LockSampler
from tradedb.ops.validate import round_trip_problems, table_checksums
from tradedb.schema import ledger
from tradedb.schema.locks import migration_lock
from tradedb.schema.pending_rows import count_pending

log = logging.getLogger("tradedb.rehearsal")


def rehearse(
    staging: Environment,
    *,
    source: Backup | None = None,
    refresh: Callable[[], str | Refreshed] | None = None,
    on_step: Callable[[StepMeasurement], None] | None = None,
    run_id: str | None = None,
) -> RehearsalReport:
    """Refresh ``staging``, deploy it to head as production would, check, round-trip; return the measurements.

    ``refresh`` replaces the default refresh (restore ``source``, else production's latest backup, else a fresh
    one) and returns where staging came from, as text or as a ``Refreshed`` naming the state to expect.
    ``on_step`` is called after each measured deploy step. ``run_id`` is the Dagster run's, so the ledger names it.
    A failing step raises ``RehearsalFailed`` carrying the report.

    Staging's migration lock cannot be held through a restore: a swap restore terminates every session on the old
    database (the lock's included) and puts a new database in its place, whose advisory locks are its own; and a
    restore that takes the target's lock itself would find ours. So the lock guards each side of the restore:
    - before it, staging must not be locked, and the default refresh holds the lock while it picks or takes the
      production backup (the long part), releasing it just before the restore, which takes it itself;
    - after it, the rehearsal takes the lock and checks that staging is still exactly what the refresh put there
      (same revision, every table equal to the backup's checksums); a migration that ran in between fails the
      rehearsal clearly instead of being measured as if it were production.
    """
    refuse_production(staging)
    launched_by = dagster_launcher(run_id) if run_id else None
    if refresh is not None:
        refuse_while_migrating(staging)
        refreshed = as_refreshed(refresh())
    else:  # refuses a locked staging itself, under the lock it then holds while picking the backup
        refreshed = as_refreshed(refresh_from_production(staging, source, launched_by))
    report = RehearsalReport(fingerprint(), staging.name, refreshed.origin, datetime.now(UTC), schema.head())
    engine = make_engine(staging)
    try:
        with migration_lock(engine, staging):
            _Rehearsal(staging, report, run_id, on_step).all_phases(refreshed)
    except Exception as exc:
        report.error = report.error or cause_line(exc)
        raise
    finally:
        report.finished_at = datetime.now(UTC)
        _record_in_ledger(engine, report, run_id)
        engine.dispose()
    return report


def _record_in_ledger(engine: Engine, report: RehearsalReport, run_id: str | None) -> None:
    """One ``rehearsal`` row in staging's ledger (never raises: the report matters more than its record)."""
    entry = ledger.LedgerEntry(
        kind="rehearsal",
        name=report.fingerprint,
        direction="rehearse",
        environment=report.environment,
        launched_by=dagster_launcher(run_id) if run_id else cli_user("cli"),
        run_id=run_id,
        started_at=report.started_at,
        finished_at=report.finished_at or datetime.now(UTC),
        outcome="success" if report.ok else "failure",
        error=report.error,
        rows_touched=sum(s.rows or 0 for s in report.steps),
        detail={
            "start_revision": report.start_revision,
            "head": report.head,
            "source": report.source,
            "steps": len(report.steps),
            "deploy_seconds": round(report.deploy_seconds, 3),
            "round_trip_ok": report.round_trip_ok,
        },
    )
    ledger.record_apart(engine, entry)


class _Rehearsal:
    """One rehearsal's phases over a locked staging database, filling ``report`` as it goes."""

    def __init__(self, env: Environment, report: RehearsalReport, run_id: str | None, on_step) -> None:
        self.env = env
        self.report = report
        self.on_step = on_step
        self.launch = {"run_id": run_id} if run_id else {}
        self.downgrade_attrs = {"launched_by": dagster_launcher(run_id), "run_id": run_id} if run_id else {}

    def all_phases(self, refreshed: Refreshed) -> None:
        start = schema.current_revision(self.env)
        self.report.start_revision = start
        self.report.table_rows = self._table_rows()
        start_sums = table_checksums(self.env)
        self._guard(
            "checking staging is the refreshed copy",
            lambda: require_refreshed(refreshed, start, start_sums),
        )
        steps = deploy_order(start)
        self.deploy(steps)
        head_sums = table_checksums(self.env)
        self.report.checks += self._guard("head checks", self._head_checks)
        self.round_trip(start, steps, start_sums, head_sums)

    def deploy(self, steps: list[Step]) -> None:
        with LockSampler(self.env) as sampler:
            try:
                for step in steps:
                    self.run_step(step, sampler)
            finally:
                self.report.lock_sampling = (
                    sampler.error or f"every {SAMPLE_MS} ms, {sampler.samples} samples"
                )

    def run_step(self, step: Step, sampler: LockSampler | None) -> StepMeasurement:
        """Run one deploy step as the Dagster asset does: a data step is gated by the checks Dagster blocks on.

        With a ``sampler`` this is the measured deploy: the measurement goes into the report (before its checks,
        so a failing check leaves the step's figures in the partial report). Without one it is the round trip's
        second pass, whose timings and checks are not the deploy's.
        """
        what = (
            f"{step.kind} step {step.name}"
            if sampler
            else f"round trip: re-upgrade {step.kind} step {step.name}"
        )
        measurement, rows_before = self._guard(what, lambda: self._measure(step, sampler))
        if sampler:
            self.report.steps.append(measurement)
            if self.on_step:
                self.on_step(measurement)
        if rows_before is not None:
            results = self._guard(what, lambda: self._gate(data_migrations.get(step.name), rows_before))
            if sampler:
                self.report.checks += results
            self._guard(what, lambda: _raise_on_failing(step.name, results))
        return measurement

    def _measure(self, step: Step, sampler: LockSampler | None) -> tuple[StepMeasurement, int | None]:
        """Run the step, timed, its locks attributed to it; also the table's rows before a data step."""
        with sampler.step(step.name) if sampler else nullcontext():
            started = time.monotonic()
            if step.kind == "schema":
                measurement, rows_before = self._schema_step(step), None
            else:
                measurement, rows_before = self._data_step(step)
            measurement.seconds = round(time.monotonic() - started, 3)
        if sampler:
            measurement.longest_lock_ms, measurement.lock_relation = sampler.longest(step.name)
        return measurement, rows_before

    def _schema_step(self, step: Step) -> StepMeasurement:
        outcome = apply_revision(self.env, step.name, **self.launch)
        return StepMeasurement("schema", step.name, step.feature, 0.0, detail=outcome.detail)

    def _data_step(self, step: Step) -> tuple[StepMeasurement, int]:
        m = data_migrations.get(step.name)
        rows_before = self._count(m.table)
        with connect_checked(self.env) as conn:
            pending = count_pending(conn, m)
        result = run_data_migration(self.env, m.name, **self.launch)
        if result.status != "finished":
            raise TradeDBError(f"data migration {m.name} stopped ({result.status}): {result.stop_reason}")
        detail = f"{result.rows_done} rows, {result.rows_quarantined} quarantined, {result.batches} batches"
        measurement = StepMeasurement(
            "data",
            m.name,
            m.feature,
            0.0,
            rows=result.rows_done,
            quarantined=result.rows_quarantined,
            detail=detail,
            table_rows=rows_before,
            pending_rows=pending,
            batch_seconds=round(sum(result.batch_seconds), 3),
        )
        return measurement, rows_before

    def _gate(self, m: DataMigration, rows_before: int) -> list[CheckOutcome]:
        """The checks the deploy job runs after a data migration, blocking the contract that needs it."""
        with connect_checked(self.env) as conn:
            results = [_outcome(r) for r in core_checks.data_checks(conn, m)]
        rows_after = self._count(m.table)
        results.append(
            CheckOutcome(
                f"{m.name}:row_count_preserved",
                rows_after >= rows_before,
                max(0, rows_before - rows_after),
                f"{m.table}: {rows_before} rows before, {rows_after} after",
            )
        )
        return results

    def _head_checks(self) -> list[CheckOutcome]:
        """The deploy job's head checks: no orphans, no drift from the models, no applied revision edited since."""
        with connect_checked(self.env) as conn:
            orphans = _outcome(core_checks.foreign_key_orphans(conn))
            edited = ledger.edited_revisions(conn)
        unchanged = CheckOutcome(
            "revision_files_unchanged",
            not edited,
            len(edited),
            "no applied revision's file was edited after the ledger recorded it",
            sample=[{"edited": e.describe()} for e in edited[: core_checks.SAMPLE_ROWS]],
        )
        lines = schema.drift(self.env)
        drift = CheckOutcome(
            "schema_matches_models",
            not lines,
            len(lines),
            "no drift between models and database",
            sample=[{"difference": line} for line in lines[: core_checks.SAMPLE_ROWS]],
        )
        return [orphans, drift, unchanged]

    def round_trip(self, start: str | None, steps: list[Step], start_sums: dict, head_sums: dict) -> None:
        """Downgrade to ``start`` and upgrade again through the same steps; judge it as ``validate`` judges one.

        ``validate.round_trip_problems`` is the one rule of what must survive a round trip: after the downgrade
        every table equals its checksum at the start, except those written by a pending revision declaring
        ``preserves_data = False`` (its downgrade rebuilds a legacy column in canonical form); after the re-upgrade
        (data migrations re-run after their ``after`` revision, as in the deploy) every table, those included,
        equals its checksum after the first deploy. A change in an exempt table after the downgrade is reported
        in ``round_trip_expected`` with the declaring revision, without failing the round trip.
        """
        exempt = not_restorable_tables(pending_revisions(start))
        self.report.round_trip_exempt = exempt
        started = time.monotonic()
        self._guard(f"downgrade to {start or 'base'}", lambda: self._downgrade(start or "base"))
        self.report.downgrade_seconds = round(time.monotonic() - started, 3)
        down_sums = table_checksums(self.env)
        started = time.monotonic()
        for step in steps:
            self.run_step(step, None)
        self.report.reupgrade_seconds = round(time.monotonic() - started, 3)
        reup_sums = table_checksums(self.env)
        self.report.round_trip_differences = round_trip_problems(
            start_sums, head_sums, down_sums, reup_sums, not_restorable=exempt
        )
        self.report.round_trip_expected = [
            f"{t}: not restored by the downgrade ({exempt[t]})"
            for t in differing(start_sums, down_sums)
            if t in exempt
        ]
        self.report.round_trip_ok = not self.report.round_trip_differences

    def _downgrade(self, target: str) -> None:
        schema.downgrade(self.env, target, lock_held=True, **self.downgrade_attrs)

    def _guard(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; any failure becomes ``RehearsalFailed`` naming ``what``, with the report so far."""
        try:
            return fn()
        except Exception as exc:
            message = f"rehearsal on {self.env.name} failed at {what}: {cause_line(exc)}"
            self.report.error = message
            raise RehearsalFailed(self.report, message) from exc

    def _count(self, table: str) -> int:
        with connect_checked(self.env) as conn:
            return int(conn.scalar(text(f'SELECT count(*) FROM "{table}"')))

    def _table_rows(self) -> dict[str, int]:
        with connect_checked(self.env) as conn:
            return {t: int(conn.scalar(text(f'SELECT count(*) FROM "{t}"'))) for t in app_tables(conn)}


def _raise_on_failing(name: str, results: list[CheckOutcome]) -> None:
    """Stop as the deploy job would: a failing blocking check keeps the contract revision from running."""
    failing = [r for r in results if not r.passed]
    if failing:
        names = ", ".join(f"{r.name} ({r.violations} violation(s))" for r in failing)
        raise TradeDBError(f"check failed after data migration {name}: {names}")


def _outcome(r: core_checks.CheckResult) -> CheckOutcome:
    return CheckOutcome(r.name, r.passed, r.violations, r.description, r.skipped, r.sample)
