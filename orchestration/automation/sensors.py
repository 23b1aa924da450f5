"""Sensors: staging rehearsal on every change of the migrations in code, and the run alerts.

- ``staging_rehearsal``: when the fingerprint of the revisions and data migrations in code differs from the one
  staging last rehearsed, request a rehearsal; the run key is the fingerprint, so each change is rehearsed once.
  Starts stopped, like the production schedule: refreshing staging from production is an operator's decision.
- ``alert_on_run_failure``: every failed run of this location becomes one alert: ``run_failed``, or
  ``backup_failed`` / ``deadline_stop`` when that is why it stopped (``orchestration.failures.alert_failed_run``).
- ``alert_on_long_runs``: a run still going after ``LONG_RUN_FACTOR`` times what it should take (the rehearsal's
  estimate for a production deploy, else the median of the job's recent successful runs) alerts once.
"""

import json
import statistics
import time

import dagster as dg

from orchestration.automation.jobs import REHEARSE_JOB
from orchestration.failures import alert_failed_run
from orchestration.rehearsal.assets import latest_rehearsal
from tradedb.core import alerts
from tradedb.ops import deploy_order
from tradedb.ops.backup import latest_backup

LONG_RUN_FACTOR = 2.0  # alert when a run takes this many times longer than expected
DEFAULT_EXPECTED_S = 1800.0  # expectation for a job with no history and no rehearsal
HISTORY_RUNS = 10  # successful runs whose median duration is the expectation
LONG_RUN_INTERVAL_S = 60
REMEMBERED_ALERTS = 200  # run ids kept in the cursor so each long run alerts once


@dg.sensor(
    name="staging_rehearsal",
    job_name=REHEARSE_JOB,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Rehearse on staging whenever the revisions or data migrations in code change.",
)
def staging_rehearsal(context: dg.SensorEvaluationContext):
    fingerprint = deploy_order.fingerprint()
    last = latest_rehearsal(context.instance)
    if last is not None and last.fingerprint == fingerprint:
        return dg.SkipReason(f"staging already rehearsed this code ({fingerprint})")
    return dg.RunRequest(run_key=f"rehearsal-{fingerprint}", tags={"tradedb/fingerprint": fingerprint})


@dg.run_failure_sensor(name="alert_on_run_failure", default_status=dg.DefaultSensorStatus.RUNNING)
def alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    alert_failed_run(
        run.job_name,
        run.run_id,
        run.tags,
        context.get_step_failure_events(),
        fallback=context.failure_event.message or "see the Dagster event log",
    )


def expected_seconds(instance: dg.DagsterInstance, job_name: str) -> float:
    """How long ``job_name`` should take: the rehearsal's estimate for production, else its recent history.

    A production deploy starts with its own backup, which takes about as long as the last one did.
    """
    if job_name == "deploy_production":
        report = latest_rehearsal(instance)
        if report is not None and report.steps:
            backup = latest_backup("production")
            return sum(s.seconds for s in report.steps) + (backup.duration_s if backup else 0.0)
    records = instance.get_run_records(
        dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=HISTORY_RUNS
    )
    durations = [r.end_time - r.start_time for r in records if r.start_time and r.end_time]
    return statistics.median(durations) if durations else DEFAULT_EXPECTED_S


@dg.sensor(
    name="alert_on_long_runs",
    minimum_interval_seconds=LONG_RUN_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alert once when a migration run takes far longer than its rehearsal or history says.",
)
def alert_on_long_runs(context: dg.SensorEvaluationContext):
    alerted = json.loads(context.cursor) if context.cursor else []
    now = time.time()
    records = context.instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    raised = []
    expectations: dict[str, float] = {}  # per job, once per tick
    for record in records:
        run = record.dagster_run
        if run.run_id in alerted or not record.start_time:
            continue
        if run.job_name not in expectations:
            expectations[run.job_name] = expected_seconds(context.instance, run.job_name)
        expected = expectations[run.job_name]
        running = now - record.start_time
        if running > LONG_RUN_FACTOR * expected:
            alerts.send(
                run.tags.get("environment", "dev"),
                alerts.LONG_RUNNING,
                f"{run.job_name} run {run.run_id[:8]} running {running / 60:.0f} min",
                f"expected about {expected / 60:.1f} min; alert threshold x{LONG_RUN_FACTOR:g}",
                {"run_id": run.run_id, "job": run.job_name},
            )
            raised.append(run.run_id)
    context.update_cursor(json.dumps((alerted + raised)[-REMEMBERED_ALERTS:]))
    if not raised:
        return dg.SkipReason(f"{len(records)} run(s) in progress, none beyond its expected duration")
    return dg.SkipReason(f"alerted {len(raised)} long run(s): {', '.join(r[:8] for r in raised)}")


defs = dg.Definitions(sensors=[staging_rehearsal, alert_on_run_failure, alert_on_long_runs])
