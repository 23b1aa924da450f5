"""Run a job of the code location from the command line, on the persistent Dagster instance.

``tradedb deploy``, ``tradedb rehearse`` and ``tradedb demo`` come through here, so a CLI run is the same job the UI
launches, recorded in the same ``DAGSTER_HOME`` and visible in ``dagster dev`` afterwards. This is the top of the
orchestration package: it imports the merged ``defs``, and nothing in ``orchestration`` imports it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.reconstruct import build_reconstructable_job

from orchestration.definitions import defs
from orchestration.executor import PARALLEL
from orchestration.failures import alert_failed_run, first_error
from orchestration.instance import HOST_TAG, PID_TAG, open_instance, reclaim_dead_cli_runs
from orchestration.rehearsal.assets import latest_rehearsal


@dataclass
class JobSummary:
    run_id: str
    success: bool
    steps: list[tuple[str, str, dict]] = field(default_factory=list)  # (asset, outcome, key metadata)
    checks: list[tuple[str, bool]] = field(default_factory=list)
    failure: str | None = None


def job_named(name: str) -> dg.JobDefinition:
    """The job ``name`` of the code location (how a step process rebuilds a ``parallel`` deploy's job)."""
    return defs.resolve_job_def(name)


def run_job(job_name: str, *, tags: dict[str, str] | None = None, parallel: int = 1) -> JobSummary:
    """Execute ``job_name`` on the persistent instance and summarise what it did.

    ``parallel`` > 1 runs a deploy's steps side by side (``orchestration.executor``), each in a process of its own,
    so the job is handed over as reconstructable; otherwise it runs in this process.
    """
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    tags = {**(tags or {}), PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    with open_instance() as instance:
        reclaim_dead_cli_runs(instance)
        if parallel > 1:
            run_config["execution"] = {"config": {PARALLEL: parallel}}
            job = build_reconstructable_job(__name__, job_named.__name__, (job_name,))
            with dg.execute_job(job, instance=instance, run_config=run_config, tags=tags) as result:
                return _summary(result)
        result = job_named(job_name).execute_in_process(
            instance=instance, raise_on_error=False, tags=tags, run_config=run_config
        )
        return _summary(result)


def _summary(result) -> JobSummary:
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


def latest_rehearsal_report():
    """The last rehearsal recorded on the persistent instance (for ``tradedb plan``), or None."""
    with open_instance() as instance:
        return latest_rehearsal(instance)
