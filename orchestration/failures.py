"""How a failed run is told: the one alert per failed run, and the operator's one line of what went wrong.

Used by the run-failure sensor and by a CLI run alike, so a cron'd ``tradedb deploy`` and a UI launch alert the
same way. ``ERROR_TYPE`` is the metadata key a step failure carries its core error class under
(``orchestration.steps.core_call``), which is how a deadline stop or a missing backup is told from a failure.
"""

from __future__ import annotations

from tradedb.core import alerts
from tradedb.core.errors import BackupRefused, DeadlinePassed
from tradedb.core.settings import ENVIRONMENTS

ERROR_TYPE = "error_type"  # step Failure metadata: the core error's class name
# core errors whose run failure is alerted as its own kind (a deadline stop is expected, not an error)
ALERT_KIND_BY_ERROR = {
    DeadlinePassed.__name__: (alerts.DEADLINE_STOP, "stopped at its deadline"),
    BackupRefused.__name__: (alerts.BACKUP_FAILED, "failed: no backup"),
}


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
