"""Schedules: the production deploy at each maintenance window, and the drift watch.

The window schedule ticks every ``TICK_MINUTES`` (or ``TRADEDB_WINDOW_TICK_MINUTES``) and lets
``tradedb.ops.windows.decide_launch`` decide: it launches once per window (the run key is the window's start) and
otherwise skips with the reason the UI shows in the schedule's tick history: nothing pending, outside the window,
the estimated duration does not fit the time left, or a deploy is still running. An always-open production (``always = true``) launches once per pending
state. Both start stopped: an operator turns on automation for production deliberately (Automation tab, or
``dagster schedule start production_window_deploy``).
"""

import os

import dagster as dg

from orchestration.automation.jobs import DRIFT_WATCH_JOB
from orchestration.rehearsal.assets import latest_rehearsal
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import resolve_environment
from tradedb.ops import plan, windows

TICK_MINUTES = 15  # how late after a window opens the deploy may start
TICK_VARIABLE = "TRADEDB_WINDOW_TICK_MINUTES"  # another tick, read when the code location loads
DRIFT_WATCH_CRON = "7 * * * *"  # hourly, off the hour


def tick_minutes() -> int:
    """``TRADEDB_WINDOW_TICK_MINUTES`` or 15: a divisor of 60, so ticks fall at the same minutes every hour.

    A shorter tick starts a deploy sooner after a window opens (and lets the end-to-end test see three ticks in
    about two minutes); every tick is one evaluation: a plan built against production.
    """
    raw = os.environ.get(TICK_VARIABLE, "").strip()
    if not raw:
        return TICK_MINUTES
    if not raw.isdigit() or int(raw) < 1 or 60 % int(raw):
        raise TradeDBError(
            f"{TICK_VARIABLE} must be a whole number of minutes dividing 60 (1, 5, 15...), not {raw!r}"
        )
    return int(raw)


def tick_cron(minutes: int) -> str:
    return "0 * * * *" if minutes == 60 else f"*/{minutes} * * * *"


def window_decision(instance: dg.DagsterInstance, now) -> tuple[windows.Decision, plan.Plan]:
    """What the production schedule should do at ``now``: the plan of what is pending and the window verdict."""
    env = resolve_environment("production")
    deployment = plan.build_plan(env, latest_rehearsal(instance))
    decision = windows.decide_launch(
        windows.policy("production"),
        now,
        pending_steps=len(deployment.steps),
        estimated_seconds=deployment.estimated_seconds,
    )
    return decision, deployment


@dg.schedule(
    name="production_window_deploy",
    job_name="deploy_production",
    cron_schedule=tick_cron(tick_minutes()),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Deploy production at the start of each maintenance window when what is pending fits in it.",
)
def production_window_deploy(context: dg.ScheduleEvaluationContext):
    decision, deployment = window_decision(context.instance, context.scheduled_execution_time)
    if not decision.launch:
        return dg.SkipReason(decision.reason)
    active = active_runs(context.instance, "deploy_production")
    if active:
        return dg.SkipReason(f"deploy_production run {active[0][:8]} is still in progress")
    return dg.RunRequest(
        run_key=decision.run_key or pending_state_key(deployment),
        tags={
            "tradedb/window": f"{decision.window.start:%Y-%m-%dT%H:%MZ}/{decision.window.end:%Y-%m-%dT%H:%MZ}"
            if decision.window
            else "-",
            "tradedb/decision": decision.reason[:200],
            "tradedb/pending_steps": str(len(deployment.steps)),
        },
    )


def pending_state_key(deployment: plan.Plan) -> str:
    """Without windows (always open) launch once per pending state: the revision it starts from and the code.

    A failed run is then not relaunched every tick; it is relaunched once the database or the code has moved.
    """
    return f"pending-{deployment.current or 'empty'}-{deployment.fingerprint}"


def active_runs(instance: dg.DagsterInstance, job_name: str) -> list[str]:
    statuses = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
    return [r.run_id for r in instance.get_runs(dg.RunsFilter(job_name=job_name, statuses=statuses))]


drift_watch_schedule = dg.ScheduleDefinition(
    name="drift_watch_hourly",
    job_name=DRIFT_WATCH_JOB,
    cron_schedule=DRIFT_WATCH_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Compare every environment's schema with what its revision should contain; alert on drift.",
)

defs = dg.Definitions(schedules=[production_window_deploy, drift_watch_schedule])
