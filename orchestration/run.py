"""Run a job of the code location from the command line, on the persistent Dagster instance.

``tradedb deploy`` and ``tradedb demo`` come through here, so a CLI run is the same job the UI launches, recorded
in the same ``DAGSTER_HOME`` (git-ignored ``.dagster_home`` by default) and visible in ``dagster dev`` afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tradedb.settings import project_root

DAGSTER_YAML = """\
# Dagster's own storage for local runs (SQLite in this folder). It is never the app database.
# Schema and data steps share the pool below, limited to one step at a time across runs.
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


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
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            tags=tags or {},
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
    failures = [e for e in result.all_events if e.is_step_failure]
    if failures:
        data = failures[0].step_failure_data
        summary.failure = (
            f"{failures[0].step_key}: {data.error.message.strip() if data and data.error else 'failed'}"
        )
    return summary
