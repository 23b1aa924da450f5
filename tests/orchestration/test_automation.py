"""Production safety through Dagster for real: the window gate in the run, its override, the backup before a
change, a deadline stop resumed by the next run, the staging rehearsal job and its sensor, the window schedule's
decisions from real rehearsal figures, the deployment plan, drift watch, and the alert sensors."""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from orchestration.automation.schedules import production_window_deploy
from orchestration.automation.sensors import alert_on_long_runs, alert_on_run_failure, staging_rehearsal
from orchestration.definitions import defs
from orchestration.rehearsal.assets import latest_rehearsal
from orchestration.resources import DEADLINE_TAG, OVERRIDE_TAG
from tests.conftest import run_cli
from tests.helpers import current, execute, seeded
from tradedb import schema
from tradedb.core import alerts
from tradedb.core.db import connect_checked
from tradedb.ops.plan import build_plan
from tradedb.schema import ledger

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def url_of(env) -> str:
    return env.url.render_as_string(hide_password=False)


@pytest.fixture
def site(make_database, monkeypatch, tmp_path):
    """Three fresh databases as dev/staging/production, our own windows file, backups folder and alert log."""
    envs = {name: make_database(name) for name in ("dev", "staging", "production")}
    for name, env in envs.items():
        monkeypatch.setenv(f"TRADEDB_{name.upper()}_URL", url_of(env))
    monkeypatch.setenv("TRADEDB_WINDOWS", str(tmp_path / "windows.toml"))
    write_windows(tmp_path, open_now=True)
    return envs


def write_windows(tmp_path, *, open_now: bool) -> None:
    """Production open all week (margin 0), or only on a day that is not today (so closed now)."""
    today = datetime.now(UTC).weekday()
    if open_now:
        slots = ", ".join(f'{{ days = ["{d}"], start = "00:00", end = "24:00" }}' for d in DAYS)
        margin = 0
    else:
        slots = f'{{ days = ["{DAYS[(today + 3) % 7]}"], start = "02:00", end = "03:00" }}'
        margin = 15
    (tmp_path / "windows.toml").write_text(
        f'[production]\ntimezone = "UTC"\nmargin_minutes = {margin}\nslots = [{slots}]\n'
    )


def deploy(instance, tags=None) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("deploy_production").execute_in_process(
        instance=instance, raise_on_error=False, tags=tags or {}
    )


def alert_kinds() -> list[str]:
    return [a["kind"] for a in alerts.recent(100)]


def ledger_rows(env, **where) -> list[dict]:
    with connect_checked(env) as conn:
        rows = ledger.entries(conn)
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def test_outside_the_window_the_run_is_refused_unless_overridden_with_a_reason(site, tmp_path):
    production = seeded(site["production"], rows=200)
    write_windows(tmp_path, open_now=False)
    with dg.instance_for_test() as instance:
        refused = deploy(instance)
        assert not refused.success
        assert current(production) == "0006"  # nothing changed
        assert not (tmp_path / "backups").exists() or not any((tmp_path / "backups").rglob("manifest.json"))
        messages = " ".join(
            e.step_failure_data.user_failure_data.description
            for e in refused.all_events
            if e.is_step_failure and e.step_failure_data.user_failure_data
        )
        assert "production run refused" in messages and "override" in messages

        # the run failure sensor turns it into one alert
        alert_on_run_failure(failure_sensor_context(instance, refused))
        assert alert_kinds() == [alerts.RUN_FAILED]

        blank = deploy(instance, {OVERRIDE_TAG: "   "})
        assert not blank.success and current(production) == "0006"

        # a webhook that is down never breaks the run; the alert stays in the log, marked failed
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            dead_webhook = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
        os.environ["TRADEDB_PRODUCTION_ALERT_WEBHOOK"] = dead_webhook
        try:
            done = deploy(instance, {OVERRIDE_TAG: "hotfix TRD-999 approved by the desk lead"})
        finally:
            del os.environ["TRADEDB_PRODUCTION_ALERT_WEBHOOK"]
        assert done.success, done.get_run_failure_event()
    assert current(production) == schema.head()
    (override,) = ledger_rows(production, kind="override")
    assert override["detail"]["reason"] == "hotfix TRD-999 approved by the desk lead"
    assert override["run_id"] == done.run_id
    (override_alert,) = [a for a in alerts.recent(50) if a["kind"] == alerts.WINDOW_OVERRIDE]
    assert override_alert["delivery"].startswith("failed")
    schema_rows = ledger_rows(production, kind="schema", direction="upgrade")
    assert {r["launched_by"] for r in schema_rows if r["name"] > "0006"} == {f"dagster:{done.run_id}"}
    # one verified backup, taken before the first schema change, named in the steps' metadata
    manifests = list((tmp_path / "backups").rglob("manifest.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    backup_id = manifest["id"]
    assert (
        manifest["revision"] == "0006"
    )  # taken before the first change, so it restores the pre-deploy state
    first = next(
        m
        for m in done.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey(["production", "execution", "rev_0007"])
        or m.asset_key.path[-1] == "rev_0007"
    )
    assert first.materialization.metadata["backup"].value == backup_id
    # the run's rollback plan is on its first step and names the backup the run took
    assert backup_id in first.materialization.metadata["deployment_plan"].value
    (contract,) = [m for m in done.get_asset_materialization_events() if m.asset_key.path[-1] == "rev_0014"]
    assert (
        f"tradedb restore {backup_id} --env production" in contract.materialization.metadata["rollback"].value
    )


def test_a_deadline_stops_the_run_cleanly_and_the_next_window_resumes(site):
    production = seeded(site["production"], rows=300, to="0008")
    with dg.instance_for_test() as instance:
        soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        first = deploy(instance, {DEADLINE_TAG: soon})
        assert not first.success
        alert_on_run_failure(failure_sensor_context(instance, first))
        assert alert_kinds() == [alerts.DEADLINE_STOP]  # a planned stop, not a failure
        assert current(production) == "0008"  # no schema step started past the deadline
        (stopped,) = ledger_rows(production, kind="data")
        assert stopped["name"] == "execution.backfill_trade_notional" and stopped["outcome"] == "stopped"
        assert "deadline" in stopped["error"]

        second = deploy(instance)
        assert second.success
    assert current(production) == schema.head()
    runs = ledger_rows(production, kind="data", name="execution.backfill_trade_notional")
    assert [r["outcome"] for r in runs] == ["stopped", "success"]


def test_rehearsal_job_sensor_schedule_and_plan(site, tmp_path):
    production = seeded(site["production"], rows=300)
    with dg.instance_for_test() as instance:
        # no rehearsal yet: the sensor asks for one, keyed by the code's fingerprint
        request = staging_rehearsal(dg.build_sensor_context(instance=instance))
        assert isinstance(request, dg.RunRequest) and request.run_key.startswith("rehearsal-")

        result = defs.resolve_job_def("rehearse_staging").execute_in_process(
            instance=instance, raise_on_error=False, tags=request.tags
        )
        assert result.success, result.get_run_failure_event()
        report = latest_rehearsal(instance)
        assert report is not None and report.ok and report.round_trip_ok
        assert report.start_revision == "0006" and report.head == schema.head()
        assert {s.name for s in report.steps} >= {"0007", "0017", "execution.backfill_trade_notional"}
        assert all(s.rows for s in report.steps if s.kind == "data")
        assert current(site["staging"]) == schema.head() and current(production) == "0006"

        # the same code again: the sensor skips, so one rehearsal per change
        again = staging_rehearsal(dg.build_sensor_context(instance=instance))
        assert isinstance(again, dg.SkipReason) and report.fingerprint in again.skip_message

        # the plan uses the rehearsal's figures
        plan = build_plan(production, report)
        assert plan.rehearsal_current and plan.backup_seconds > 0  # the refresh's production backup, timed
        assert plan.estimated_seconds == pytest.approx(report.deploy_seconds + plan.backup_seconds)
        dropping = next(s for s in plan.steps if s.name == "0014")
        assert dropping.rollback.endswith("comes back only with: tradedb restore latest --env production")
        assert [s.name for s in plan.steps][0] == "0007"
        step = next(s for s in plan.steps if s.name == "0013")
        assert step.needs_window and step.rollback == "alembic -x env=production downgrade 0012"
        data = next(s for s in plan.steps if s.name == "execution.backfill_trade_notional")
        assert not data.needs_window and data.rollback.startswith("tradedb data revert")

        # the schedule: inside with time to spare launches once per window; too close to the end skips
        write_windows_for_schedule(tmp_path)
        opened = datetime(2026, 11, 25, 10, 5, tzinfo=UTC)
        launch = production_window_deploy(
            dg.build_schedule_context(instance, scheduled_execution_time=opened)
        )
        assert isinstance(launch, dg.RunRequest) and launch.run_key == "window-20261125T1000Z"
        late = datetime(2026, 11, 25, 11, 44, 59, 500_000, tzinfo=UTC)
        skip = production_window_deploy(dg.build_schedule_context(instance, scheduled_execution_time=late))
        assert isinstance(skip, dg.SkipReason) and "does not fit" in skip.skip_message
        outside = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
        skip = production_window_deploy(dg.build_schedule_context(instance, scheduled_execution_time=outside))
        assert isinstance(skip, dg.SkipReason) and "outside" in skip.skip_message

        upgraded = run_cli("-x", "finalize_data=true", "upgrade", "head", env=production, tool="alembic")
        assert upgraded.returncode == 0, upgraded.stderr
        skip = production_window_deploy(dg.build_schedule_context(instance, scheduled_execution_time=opened))
        assert isinstance(skip, dg.SkipReason) and skip.skip_message == "nothing pending"


def test_an_always_open_production_launches_once_per_pending_state(site, tmp_path):
    production = seeded(site["production"], rows=50)
    (tmp_path / "windows.toml").write_text("[production]\nalways = true\n")
    now = datetime(2026, 11, 25, 10, 5, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        first = production_window_deploy(dg.build_schedule_context(instance, scheduled_execution_time=now))
        again = production_window_deploy(dg.build_schedule_context(instance, scheduled_execution_time=now))
        assert isinstance(first, dg.RunRequest) and first.run_key == again.run_key
        assert first.run_key.startswith("pending-0006-")

        running = instance.create_run_for_job(
            defs.resolve_job_def("deploy_production"), status=dg.DagsterRunStatus.STARTED
        )
        busy = production_window_deploy(dg.build_schedule_context(instance, scheduled_execution_time=now))
        assert isinstance(busy, dg.SkipReason) and running.run_id[:8] in busy.skip_message
        instance.report_run_failed(running)

        schema.upgrade(production, "0010")  # the database moved: a new pending state, a new key
        moved = production_window_deploy(dg.build_schedule_context(instance, scheduled_execution_time=now))
        assert isinstance(moved, dg.RunRequest) and moved.run_key.startswith("pending-0010-")


def write_windows_for_schedule(tmp_path) -> None:
    """Wednesdays 10:00-12:00 UTC with a 15 minute margin (2026-11-25 is a Wednesday)."""
    (tmp_path / "windows.toml").write_text(
        '[production]\ntimezone = "UTC"\nmargin_minutes = 15\n'
        'slots = [{ days = ["wed"], start = "10:00", end = "12:00" }]\n'
    )


def test_drift_watch_job_catches_a_manual_alter_table_and_alerts(site):
    for env in site.values():
        schema.upgrade(env, "head")
    schema.downgrade(site["staging"], "0010")  # behind head: compared with what 0010 should contain
    execute(site["production"], "ALTER TABLE trades ADD COLUMN hotfix_note text")
    # what the ledger sees when an applied revision's file is edited: its recorded checksum no longer matches
    execute(
        site["staging"],
        "UPDATE tradedb_migrations.ledger SET file_checksum = repeat('0', 64) WHERE name = '0003'",
    )
    result, verdicts = drift_watch_run()
    assert verdicts[("production", "schema_matches_models")] is False
    assert verdicts[("staging", "schema_matches_models")] is True
    assert verdicts[("dev", "schema_matches_models")] is True
    assert verdicts[("production", "revision_files_unchanged")] is True
    assert verdicts[("staging", "revision_files_unchanged")] is False
    reports = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert reports == {"dev", "staging", "production"}
    (drift,) = [a for a in alerts.recent(50) if a["kind"] == alerts.DRIFT]
    assert drift["environment"] == "production" and "hotfix_note" in drift["detail"]
    (edited,) = [a for a in alerts.recent(50) if a["kind"] == alerts.EDITED_REVISION]
    assert edited["environment"] == "staging" and "0003" in edited["title"]


def test_a_drift_watch_that_cannot_run_alerts_its_own_environment(site, monkeypatch):
    for env in site.values():
        schema.upgrade(env, "head")
    gone = site["production"].url.set(database="no_such_database")
    monkeypatch.setenv("TRADEDB_PRODUCTION_URL", gone.render_as_string(hide_password=False))
    _, verdicts = drift_watch_run()
    assert verdicts[("production", "schema_matches_models")] is False
    assert verdicts[("dev", "schema_matches_models")] is True
    (alert,) = [a for a in alerts.recent(50) if a["title"].startswith("drift watch could not run")]
    assert alert["environment"] == "production"


def drift_watch_run() -> tuple[dg.ExecuteInProcessResult, dict[tuple[str, str], bool]]:
    """Run the drift_watch job; its check verdicts by (environment, check)."""
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("drift_watch").execute_in_process(
            instance=instance, raise_on_error=False
        )
    verdicts = {(e.asset_key.path[0], e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    return result, verdicts


def test_long_running_runs_alert_once(site, monkeypatch):
    import orchestration.automation.sensors as sensors

    monkeypatch.setattr(sensors, "DEFAULT_EXPECTED_S", 0.05)
    with dg.instance_for_test() as instance:
        run = instance.create_run_for_job(
            job_def=defs.resolve_job_def("verify_dev"), tags={"environment": "dev"}
        )
        instance.handle_run_event(
            run.run_id,
            dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name),
        )
        time.sleep(0.3)
        context = dg.build_sensor_context(instance=instance)
        alert_on_long_runs(context)
        alert_on_long_runs(dg.build_sensor_context(instance=instance, cursor=context.cursor))
    long_runs = [a for a in alerts.recent(10) if a["kind"] == alerts.LONG_RUNNING]
    assert len(long_runs) == 1 and "verify_dev" in long_runs[0]["title"]


def test_a_production_downgrade_from_plain_alembic_alerts(site):
    production = site["production"]
    schema.upgrade(production, "0003")
    result = run_cli("-x", "env=production", "downgrade", "-1", env=production, tool="alembic")
    assert result.returncode == 0, result.stderr
    (alert,) = [a for a in alerts.recent(10) if a["kind"] == alerts.DOWNGRADE]
    assert alert["environment"] == "production" and "0003" in alert["title"]
    stamped = run_cli("-x", "env=production", "stamp", "0003", env=production, tool="alembic")
    assert stamped.returncode == 0, stamped.stderr
    (stamp,) = [a for a in alerts.recent(10) if a["kind"] == alerts.STAMP]
    assert stamp["environment"] == "production" and "0003" in stamp["title"]


def test_a_data_migration_quarantining_production_rows_alerts(site):
    production = seeded(site["production"], rows=2000, to="0011")
    result = run_cli("data", "run", "events.normalise_event_payload", "--env", "production", env=production)
    assert result.returncode == 0, result.stderr
    (alert,) = [a for a in alerts.recent(10) if a["kind"] == alerts.QUARANTINE]
    assert alert["environment"] == "production" and "events.normalise_event_payload" in alert["title"]
    (run,) = ledger_rows(production, kind="data")
    quarantined = run["detail"]["rows_quarantined"]
    assert quarantined > 0 and f"quarantined {quarantined} row(s) on production" in alert["title"]


def test_a_production_run_without_a_backup_changes_nothing(site, tmp_path, monkeypatch):
    """No pg_dump that can serve: the run fails before the first schema change and alerts."""
    production = seeded(site["production"], rows=100)
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("TRADEDB_PG_BIN", str(empty))
    monkeypatch.setenv("TRADEDB_PG_BUNDLED", "0")
    monkeypatch.setenv("PATH", str(empty))
    with dg.instance_for_test() as instance:
        result = deploy(instance, {OVERRIDE_TAG: "testing the backup rule"})
        assert not result.success
        alert_on_run_failure(failure_sensor_context(instance, result))
    assert current(production) == "0006"
    assert not ledger_rows(production, kind="schema", direction="upgrade", outcome="success")[6:]
    kinds = alert_kinds()  # one alert, of the kind that says why: not a second generic run_failed
    assert kinds.count(alerts.BACKUP_FAILED) == 1 and alerts.RUN_FAILED not in kinds


def failure_sensor_context(instance, result):
    return dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
    ).for_run_failure()


def test_the_window_end_is_the_runs_deadline(site, tmp_path):
    """Open all of today (UTC) with a 15 minute margin: data migrations must stop at 23:45 tonight."""
    from contextlib import ExitStack

    from orchestration.resources import RunGuard

    today = datetime.now(UTC)
    (tmp_path / "windows.toml").write_text(
        '[production]\ntimezone = "UTC"\nmargin_minutes = 15\n'
        f'slots = [{{ days = ["{DAYS[today.weekday()]}"], start = "00:00", end = "24:00" }}]\n'
    )
    if today.hour == 23 and today.minute >= 45:
        pytest.skip("inside the margin at the end of the UTC day")
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
    with ExitStack() as stack:
        assert RunGuard(stack, "run-1", {}).deadline("production") == midnight - timedelta(minutes=15)
    earlier = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    with ExitStack() as stack:  # an operator's earlier deadline wins; a later one could not extend the window
        assert RunGuard(stack, "run-2", {DEADLINE_TAG: earlier.isoformat()}).deadline("production") == earlier


def test_a_ddl_lock_timeout_is_recorded_and_retried_by_dagster(site, monkeypatch):
    """An app transaction holds instruments: 0007 gives up after lock_timeout, is recorded, retried, applied."""
    import threading

    from sqlalchemy import create_engine, text

    dev = seeded(site["dev"], rows=100)
    monkeypatch.setenv("TRADEDB_LOCK_TIMEOUT", "300ms")
    app = create_engine(dev.url)
    holding = threading.Event()

    def hold_the_table() -> None:
        """Hold the lock until 0007's first attempt has given up (the ledger says so), never past a minute."""
        with app.begin() as conn:
            conn.execute(text("LOCK TABLE instruments IN ACCESS EXCLUSIVE MODE"))
            holding.set()
            give_up = time.monotonic() + 60
            while time.monotonic() < give_up and not ledger_rows(dev, kind="schema", name="0007"):
                time.sleep(0.1)

    holder = threading.Thread(target=hold_the_table)
    holder.start()
    holding.wait(10)
    try:
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def("deploy_dev").execute_in_process(
                instance=instance, raise_on_error=False
            )
    finally:
        holder.join()
        app.dispose()
    assert result.success
    attempts = ledger_rows(dev, kind="schema", name="0007")
    assert [r["outcome"] for r in attempts] == ["failure", "success"]
    assert "lock timeout" in attempts[0]["error"]
    assert {r["launched_by"] for r in attempts} == {f"dagster:{result.run_id}"}
    assert all(r["run_id"] == result.run_id for r in attempts)


def test_rehearse_plan_and_deploy_from_the_cli(site, tmp_path):
    production = seeded(site["production"], rows=200)
    extra = {f"TRADEDB_{name.upper()}_URL": url_of(env) for name, env in site.items()}
    extra |= {
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "TRADEDB_WINDOWS": str(tmp_path / "windows.toml"),
    }

    before = json.loads(run_cli("plan", "--env", "production", "--json", extra=extra).stdout)
    assert before["estimated_seconds"] is None and "none yet" in before["rehearsal"]

    rehearsed = run_cli("rehearse", extra=extra, timeout=300)
    assert rehearsed.returncode == 0, rehearsed.stderr
    assert "round trip: ok" in rehearsed.stdout and "passed" in rehearsed.stdout

    plan = json.loads(run_cli("plan", "--env", "production", "--json", extra=extra).stdout)
    assert plan["current"] == "0006" and plan["rehearsal_current"] and plan["estimated_seconds"] > 0
    assert plan["steps"][0]["name"] == "0007" and all(s["estimated_s"] is not None for s in plan["steps"])
    assert "downgrade 0006" in plan["steps"][0]["rollback"]

    write_windows(tmp_path, open_now=False)
    refused = run_cli("deploy", "--env", "production", extra=extra)
    assert refused.returncode == 1 and refused.stderr.startswith("error: production run refused")
    blank = run_cli("deploy", "--env", "production", "--override-window", " ", extra=extra)
    assert blank.returncode == 1 and "needs a reason" in blank.stderr
    assert current(production) == "0006"

    # a cron'd CLI deploy alerts by itself, no daemon needed: here it cannot take its backup
    no_tools = tmp_path / "no-tools"
    no_tools.mkdir()
    extra |= {"TRADEDB_PG_BIN": str(no_tools), "TRADEDB_PG_BUNDLED": "0", "PATH": str(no_tools)}
    failed = run_cli("deploy", "--env", "production", "--override-window", "TRD-1 desk lead", extra=extra)
    assert failed.returncode == 1 and current(production) == "0006"
    (alert,) = [a for a in alerts.recent(20) if a["kind"] == alerts.BACKUP_FAILED]
    assert alert["environment"] == "production" and alert["title"].endswith("failed: no backup")
