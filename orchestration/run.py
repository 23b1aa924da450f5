"""Run a job of the code location from the command line, on the persistent Dagster instance.

``tradedb deploy`` and ``tradedb demo`` come through here, so a CLI run is the same job the UI launches, recorded
in the same ``DAGSTER_HOME`` (git-ignored ``.dagster_home`` by default) and visible in ``dagster dev`` afterwards.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from tradedb import alerts
from tradedb.errors import BackupRefused, DeadlinePassed
from tradedb.settings import project_root

DAGSTER_YAML = """\
# Dagster's own storage for local runs (SQLite in this folder). It is never the app database.
# Schema and data steps share the pool below, limited to one step at a time across runs.
concurrency:
  pools:
    default_limit: 1
# The daemon (dagster dev) fails runs whose process died and frees their pool slots.
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 0
telemetry:
  enabled: false
"""

PID_TAG = "tradedb/pid"
HOST_TAG = "tradedb/host"
ERROR_TYPE = "error_type"  # step Failure metadata: the core error's class name
# core errors whose run failure is alerted as its own kind (a deadline stop is expected, not an error)
ALERT_KIND_BY_ERROR = {
    DeadlinePassed.__name__: (alerts.DEADLINE_STOP, "stopped at its deadline"),
    BackupRefused.__name__: (alerts.BACKUP_FAILED, "failed: no backup"),
}


def ensure_dagster_home() -> Path:
    """Use ``DAGSTER_HOME`` or the project's ``.dagster_home``, creating it with our ``dagster.yaml``."""
    home = Path(os.environ.get("DAGSTER_HOME") or project_root() / ".dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    return home


@dataclass
class JobSummary:
    run_id: str
    success: bool
    steps: list[tuple[str, str, dict]] = field(default_factory=list)  # (asset, outcome, key metadata)
    checks: list[tuple[str, bool]] = field(default_factory=list)
    failure: str | None = None


def run_job(job_name: str, *, tags: dict[str, str] | None = None) -> JobSummary:
    """Execute ``job_name`` in process on the persistent instance and summarise what it did."""
    ensure_dagster_home()
    import dagster as dg

    from orchestration.definitions import defs

    job = defs.resolve_job_def(job_name)
    with dg.DagsterInstance.get() as instance:
        reclaim_dead_cli_runs(instance)
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            tags={**(tags or {}), PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()},
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
    summary = JobSummary(result.run_id, result.success)
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        meta = {k: v.value for k, v in mat.metadata.items()}
        outcome = meta.get("outcome") or meta.get("status") or "materialized"
        summary.steps.append((mat.asset_key.to_user_string(), str(outcome), meta))
    for evaluation in result.get_asset_check_evaluations():
        summary.checks.append(
            (f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}", evaluation.passed)
        )
    if not result.success:
        summary.failure = first_error(result.all_events)
        run = result.dagster_run
        alert_failed_run(run.job_name, run.run_id, run.tags, result.all_events)
    return summary


def alert_failed_run(job_name: str, run_id: str, tags, events, fallback: str | None = None) -> None:
    """The one alert for a failed run, from the failure sensor and from a CLI run alike.

    A cron'd ``tradedb deploy`` alerts without a Dagster daemon; when the daemon's sensor sees the same run, the
    identical title makes the alert log's dedup post it once.
    """
    steps_failed = [e for e in events if e.is_step_failure]
    error_type = next(filter(None, map(failure_error_type, steps_failed)), None)
    kind, what = ALERT_KIND_BY_ERROR.get(error_type or "", (alerts.RUN_FAILED, "failed"))
    detail = first_error(steps_failed) if steps_failed else fallback or first_error(events)
    alerts.send(
        tags.get("environment") or environment_of(steps_failed),
        kind,
        f"{job_name} run {run_id[:8]} {what}",
        detail,
        {"run_id": run_id, "job": job_name},
    )


def environment_of(step_failures) -> str:
    """The environment a run without an ``environment`` tag failed in, from its step key (``production__...``)."""
    from tradedb.settings import ENVIRONMENTS

    for event in step_failures:
        prefix = (event.step_key or "").split("__", 1)[0]
        if prefix in ENVIRONMENTS:
            return prefix
    return "dev"


def failure_error_type(event) -> str | None:
    """The core error class a step failure event carried (``orchestration.steps.core_call``), if any."""
    if not (event.step_failure_data and event.step_failure_data.user_failure_data):
        return None
    value = event.step_failure_data.user_failure_data.metadata.get(ERROR_TYPE)
    return str(value.value) if value is not None else None


def reclaim_dead_cli_runs(instance) -> list[str]:
    """Fail CLI runs of this host whose process is gone and free their pool slots.

    A run killed mid-step (SIGKILL, a lost terminal) keeps its slot in the size-1 pool forever, and the next run
    would wait for it without end. Runs launched from the UI are the daemon's job (``run_monitoring``).
    """
    import dagster as dg

    reclaimed = []
    running = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    for run in instance.get_runs(running):
        if run.tags.get(HOST_TAG) != socket.gethostname() or not run.tags.get(PID_TAG, "").isdigit():
            continue
        if _alive(int(run.tags[PID_TAG])):
            continue
        instance.report_run_failed(run, "the process running it died; checkpoints are kept for the next run")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        reclaimed.append(run.run_id)
    return reclaimed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def first_error(events) -> str:
    """The first error a run recorded, as the operator's one line (step failures carry our Failure message)."""
    for event in events:
        if event.is_step_failure and event.step_failure_data:
            data = event.step_failure_data
            message = data.user_failure_data.description if data.user_failure_data else None
            message = message or (data.error.message.strip().splitlines()[-1] if data.error else "failed")
            return f"{event.step_key}: {message}"
    for event in events:
        error = getattr(event.event_specific_data, "error", None)
        if error is not None:
            return error.message.strip().splitlines()[-1]
    return "the run failed (see the Dagster event log)"


def latest_rehearsal_report():
    """The last rehearsal recorded on the persistent instance (for ``tradedb plan``), or None."""
    ensure_dagster_home()
    import dagster as dg

    from orchestration.rehearsal.assets import latest_rehearsal

    with dg.DagsterInstance.get() as instance:
        return latest_rehearsal(instance)
