"""The daemon drives the window schedule, as in production: ``dagster-daemon run -w workspace.yaml`` on an instance
stored in its own PostgreSQL, the schedules turned on with ``dagster schedule start``, a windows file whose
production window is open now, then closed.

The schedule ticks every minute here (``TRADEDB_WINDOW_TICK_MINUTES=1``, the operator's setting, not a test
hook). Its first tick comes at once because the test moves the schedule's recorded start back by a minute
(``backdate``: Dagster's own instigator state, written through its instance API), so the daemon's first pass
evaluates the minute just begun instead of waiting for the next one; the later ticks are real minute boundaries.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    ScheduleInstigatorData,
    TickStatus,
)

from tests.conftest import BIN, ROOT, cli_env, run_cli
from tests.helpers import current, seeded
from tradedb import schema

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SCHEDULES = ("production_window_deploy", "drift_watch_hourly")


def open_now(path) -> datetime:
    """A production window that opened ten minutes ago and lasts three hours (UTC, no margin); its start."""
    start = (datetime.now(UTC) - timedelta(minutes=10)).replace(second=0, microsecond=0)
    end = start + timedelta(hours=3)
    path.write_text(
        '[production]\ntimezone = "UTC"\nmargin_minutes = 0\n'
        f'slots = [{{ days = ["{DAYS[start.weekday()]}"], start = "{start:%H:%M}", end = "{end:%H:%M}" }}]\n'
    )
    return start


def closed_now(path) -> datetime:
    """Only 02:00-03:00 UTC three days from now, so closed now; the next opening."""
    opens = (datetime.now(UTC) + timedelta(days=3)).replace(hour=2, minute=0, second=0, microsecond=0)
    path.write_text(
        '[production]\ntimezone = "UTC"\nmargin_minutes = 0\n'
        f'slots = [{{ days = ["{DAYS[opens.weekday()]}"], start = "02:00", end = "03:00" }}]\n'
    )
    return opens


def backdate(instance: dg.DagsterInstance, state: InstigatorState) -> None:
    """Move the schedule's start a minute back, so the daemon's first pass evaluates the current minute."""
    data = state.instigator_data
    instance.update_instigator_state(
        state.with_data(ScheduleInstigatorData(data.cron_schedule, start_timestamp=data.start_timestamp - 61))
    )


def schedule_states(instance: dg.DagsterInstance) -> dict[str, InstigatorState]:
    return {s.name: s for s in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)}


def wait_for_tick(instance, state, daemon, after: float, timeout: float = 150):
    """The first finished tick scheduled after ``after`` (epoch seconds)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert daemon.poll() is None, f"dagster-daemon exited with {daemon.returncode}"
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=float(after))
        done = sorted(
            (t for t in ticks if t.status in (TickStatus.SUCCESS, TickStatus.SKIPPED, TickStatus.FAILURE)),
            key=lambda t: t.timestamp,
        )
        if done:
            return done[0]
        time.sleep(1)
    raise AssertionError(f"no tick of {state.name} after {datetime.fromtimestamp(after, UTC)}")


def wait_for_run(instance, run_id: str, timeout: float = 240) -> dg.DagsterRun:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish")


def stop(daemon: subprocess.Popen) -> None:
    """Stop the daemon by its pid (SIGTERM: Dagster shuts down cleanly), then whatever is left of its group."""
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
    end = time.monotonic() + 15
    while True:  # its code server and a run it launched are in the same group
        try:
            os.killpg(daemon.pid, signal.SIGTERM if time.monotonic() < end else signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.5)


@pytest.mark.slow
def test_the_daemon_launches_the_window_deploy_once_and_skips_with_the_reason(
    postgres_home, make_database, tmp_path
):
    envs = {name: make_database(name) for name in ("dev", "staging", "production")}
    production = seeded(envs["production"], rows=300)
    windows_file = tmp_path / "windows.toml"
    window_start = open_now(windows_file)
    env = cli_env(
        None,
        DAGSTER_HOME=str(postgres_home.home),
        TRADEDB_WINDOWS=str(windows_file),
        TRADEDB_WINDOW_TICK_MINUTES="1",
        **{
            f"TRADEDB_{name.upper()}_URL": e.url.render_as_string(hide_password=False)
            for name, e in envs.items()
        },
    )
    for name in SCHEDULES:  # as the README tells an operator to
        started = subprocess.run(
            [str(BIN / "dagster"), "schedule", "start", name, "-w", "workspace.yaml"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stderr[-2000:]

    with postgres_home.instance() as instance:
        states = schedule_states(instance)
        assert {states[n].status for n in SCHEDULES} == {InstigatorStatus.RUNNING}
        window = states["production_window_deploy"]
        backdate(instance, window)
        log = (tmp_path / "daemon.log").open("w")
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            # the window is open and everything is pending: the daemon launches the deploy, keyed by the window
            launched = wait_for_tick(instance, window, daemon, after=0.0)
            assert launched.status == TickStatus.SUCCESS, (
                launched.status,
                launched.skip_reason,
                launched.error,
            )
            assert list(launched.run_keys) == [f"window-{window_start:%Y%m%dT%H%M}Z"]
            (run_id,) = launched.run_ids
            run = wait_for_run(instance, run_id)
            assert run.status == dg.DagsterRunStatus.SUCCESS, (tmp_path / "daemon.log").read_text()[-3000:]
            assert run.job_name == "deploy_production" and run.tags["dagster/run_key"] == launched.run_keys[0]
            assert current(production) == schema.head()

            # the next tick skips, saying why: the run is still going, or nothing is left to do
            skipped = wait_for_tick(instance, window, daemon, after=launched.timestamp)
            assert skipped.status == TickStatus.SKIPPED
            assert skipped.skip_reason == "nothing pending" or skipped.skip_reason.startswith(
                f"deploy_production run {run_id[:8]} is still in progress"
            ), skipped.skip_reason

            # something pending again, but the window closed: a skipped tick naming the next opening
            schema.downgrade(production, "0016")
            opens = closed_now(windows_file)
            changed = time.time()
            closed = wait_for_tick(instance, window, daemon, after=max(changed, skipped.timestamp))
            assert closed.status == TickStatus.SKIPPED
            assert closed.skip_reason == (
                f"outside the maintenance window (next opens at {opens:%a %Y-%m-%d %H:%M} UTC)"
            )
            runs = instance.get_runs(dg.RunsFilter(job_name="deploy_production"))
            assert [r.run_id for r in runs] == [run_id]  # launched once
            assert schedule_states(instance)["drift_watch_hourly"].status == InstigatorStatus.RUNNING
        finally:
            stop(daemon)
            log.close()
    assert daemon.returncode is not None


def test_the_tick_is_every_15_minutes_unless_set_to_a_divisor_of_an_hour(monkeypatch):
    from orchestration.automation.schedules import tick_cron, tick_minutes

    assert tick_cron(tick_minutes()) == "*/15 * * * *"
    for value, cron in (("1", "*/1 * * * *"), ("5", "*/5 * * * *"), ("60", "0 * * * *")):
        monkeypatch.setenv("TRADEDB_WINDOW_TICK_MINUTES", value)
        assert tick_cron(tick_minutes()) == cron
    result = run_cli("plan", extra={"TRADEDB_WINDOW_TICK_MINUTES": "7"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: TRADEDB_WINDOW_TICK_MINUTES must be a whole number of minutes dividing 60 (1, 5, 15...), not '7'"
    ]
