"""Integrity checks as Dagster asset checks, with a sample of offending rows in their metadata.

Per data migration (blocking, so a failing check stops the contract revision that depends on it): nothing left
unmigrated, quarantine reconciled, the declared invariants, row counts preserved. On each environment's head
revision: the schema is what its revision should contain (no drift; at head, the models), no foreign key points at
nothing, and no applied revision file was edited afterwards. Drift and edited revisions also raise alerts.
"""

import dagster as dg

import data_migrations
from data_migrations import checks as core_checks
from data_migrations.base import DataMigration
from orchestration.environments import ENVIRONMENTS, data_key, revision_key
from tradedb import schema
from tradedb.core import alerts
from tradedb.core.db import connect_checked
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import resolve_environment
from tradedb.ops import drift_watch
from tradedb.schema import ledger


def as_result(results: list[core_checks.CheckResult]) -> dg.AssetCheckResult:
    """Fold core check results into one Dagster result (all must pass)."""
    failing = [r for r in results if not r.passed]
    return dg.AssetCheckResult(
        passed=not failing,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "violations": sum(r.violations for r in results),
            "checked": ", ".join(r.name for r in results if not r.skipped) or "-",
            "skipped": "; ".join(f"{r.name}: {r.skipped}" for r in results if r.skipped) or "-",
            "sample": dg.MetadataValue.json([{"check": r.name, "rows": r.sample} for r in failing][:5]),
        },
    )


def data_checks(env_name: str, m: DataMigration) -> list[dg.AssetChecksDefinition]:
    key = data_key(env_name, m)

    def evaluate(fn) -> dg.AssetCheckResult:
        with connect_checked(resolve_environment(env_name)) as conn:
            out = fn(conn)
        return as_result(out if isinstance(out, list) else [out])

    @dg.asset_check(asset=key, name="complete", blocking=True, description="done + quarantined = source rows")
    def complete() -> dg.AssetCheckResult:
        return evaluate(lambda conn: core_checks.completeness(conn, m))

    @dg.asset_check(
        asset=key,
        name="quarantine_reconciled",
        blocking=True,
        description="every quarantined row has a reason and its original, and matches the run's tally",
    )
    def quarantine() -> dg.AssetCheckResult:
        return evaluate(lambda conn: core_checks.quarantine_reconciled(conn, m))

    @dg.asset_check(
        asset=key, name="invariants", blocking=True, description="the migration's declared invariants"
    )
    def invariants() -> dg.AssetCheckResult:
        return evaluate(lambda conn: core_checks.invariant_results(conn, m))

    @dg.asset_check(
        asset=key,
        name="row_count_preserved",
        blocking=True,
        description="the migrated table has no fewer rows than before the run",
    )
    def row_count(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        event = context.instance.get_latest_materialization_event(key)
        meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
        if "table_rows_before" not in meta:
            return dg.AssetCheckResult(passed=True, metadata={"note": "no materialisation recorded yet"})
        before, after = meta["table_rows_before"].value, meta["table_rows_after"].value
        return dg.AssetCheckResult(
            passed=after >= before, metadata={"rows_before": before, "rows_after": after}
        )

    return [complete, quarantine, invariants, row_count]


def head_checks(env_name: str) -> list[dg.AssetChecksDefinition]:
    head = schema.revisions()[-1]
    key = revision_key(env_name, head)

    @dg.asset_check(
        asset=key,
        name="schema_matches_models",
        description="no drift: the schema is what its revision should contain (the models at head)",
    )
    def no_drift() -> dg.AssetCheckResult:
        try:
            report = drift_watch.watch(resolve_environment(env_name))
        except TradeDBError as exc:  # a watch that cannot run must page this environment's on-call, not dev's
            alerts.send(env_name, alerts.DRIFT, f"drift watch could not run on {env_name}", str(exc))
            return dg.AssetCheckResult(passed=False, metadata={"error": str(exc)})
        if not report.ok:
            alerts.send(env_name, alerts.DRIFT, f"schema drift on {env_name}", report.summary())
        return dg.AssetCheckResult(
            passed=report.ok,
            metadata={
                "revision": report.revision or "base",
                "compared_with": report.against,
                "differences": len(report.differences),
                "diff": dg.MetadataValue.md("\n".join(f"- {x}" for x in report.differences) or "none"),
            },
        )

    @dg.asset_check(asset=key, name="no_foreign_key_orphans", description="every foreign key points at a row")
    def no_orphans() -> dg.AssetCheckResult:
        with connect_checked(resolve_environment(env_name)) as conn:
            return as_result([core_checks.foreign_key_orphans(conn)])

    @dg.asset_check(
        asset=key,
        name="revision_files_unchanged",
        description="no applied revision's file was edited after the ledger recorded it",
    )
    def unchanged() -> dg.AssetCheckResult:
        with connect_checked(resolve_environment(env_name)) as conn:
            edited = ledger.edited_revisions(conn)
        for e in edited:
            alerts.send(
                env_name, alerts.EDITED_REVISION, f"revision {e.revision} edited after applying", e.describe()
            )
        return dg.AssetCheckResult(
            passed=not edited,
            metadata={
                "edited": len(edited),
                "detail": dg.MetadataValue.md("\n".join(f"- {e.describe()}" for e in edited) or "none"),
            },
        )

    return [no_drift, no_orphans, unchanged]


def build() -> list[dg.AssetChecksDefinition]:
    out: list[dg.AssetChecksDefinition] = []
    for env_name in ENVIRONMENTS:
        out += head_checks(env_name)
        for m in data_migrations.registry().values():
            out += data_checks(env_name, m)
    return out


defs = dg.Definitions(asset_checks=build())
