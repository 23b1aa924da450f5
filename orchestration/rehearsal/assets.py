"""The staging rehearsal as an asset: each materialisation is one rehearsal, its metadata what it measured.

The Dagster instance is where the production schedule, the long-run alert and ``tradedb plan`` read the last
rehearsal back (``latest_rehearsal``), so the UI's asset page and the fit decision show the same numbers.
"""

import dagster as dg

from tradedb.core.settings import resolve_environment
from tradedb.ops.rehearsal import RehearsalFailed, RehearsalReport, rehearse

REHEARSAL_KEY = dg.AssetKey(["rehearsal", "staging"])
REPORT_FIELD = "report"


def report_metadata(report: RehearsalReport) -> dict:
    table = ["| step | seconds | longest ACCESS EXCLUSIVE lock | rows |", "| --- | --- | --- | --- |"]
    for s in report.steps:
        table.append(
            f"| {s.kind} {s.name} | {s.seconds:.2f} | {s.lock_text} | {'-' if s.rows is None else s.rows} |"
        )
    longest = max(report.steps, key=lambda s: s.longest_lock_ms, default=None)
    return {
        "fingerprint": report.fingerprint,
        "ok": report.ok,
        "source": report.source,
        "from_revision": report.start_revision or "empty",
        "to_revision": report.head,
        "deploy_seconds": round(report.deploy_seconds, 3),
        "longest_lock_ms": round(longest.longest_lock_ms, 1) if longest else 0.0,
        "longest_lock_step": f"{longest.kind} {longest.name}" if longest else "-",
        "round_trip_ok": bool(report.round_trip_ok),
        "checks_failed": sum(not c.passed for c in report.checks),
        "steps": dg.MetadataValue.md("\n".join(table)),
        REPORT_FIELD: dg.MetadataValue.json(report.to_json()),
    }


@dg.asset(
    key=REHEARSAL_KEY,
    group_name="rehearsal",
    description="Refresh staging from production's latest backup, deploy as production would, check, round-trip.",
    kinds={"postgres"},
    tags={"environment": "staging", "step": "rehearsal"},
)
def staging_rehearsal(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    staging = resolve_environment("staging")
    try:
        report = rehearse(
            staging,
            run_id=context.run.run_id,
            on_step=lambda s: context.log.info(
                f"rehearsed {s.kind} {s.name}: {s.seconds:.2f} s, lock {s.lock_text}"
            ),
        )
    except RehearsalFailed as exc:
        raise dg.Failure(description=str(exc), metadata=report_metadata(exc.report)) from None
    for line in report.summary():
        context.log.info(line)
    if not report.ok:
        raise dg.Failure(description="; ".join(report.summary()[-2:]), metadata=report_metadata(report))
    return dg.MaterializeResult(metadata=report_metadata(report))


def latest_rehearsal(instance: dg.DagsterInstance) -> RehearsalReport | None:
    """The last successful rehearsal's report, from the instance (None before the first one)."""
    event = instance.get_latest_materialization_event(REHEARSAL_KEY)
    materialization = event.asset_materialization if event else None
    if materialization is None or REPORT_FIELD not in materialization.metadata:
        return None
    return RehearsalReport.from_json(materialization.metadata[REPORT_FIELD].value)


defs = dg.Definitions(assets=[staging_rehearsal])
