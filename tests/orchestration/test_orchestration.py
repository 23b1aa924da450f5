"""Dagster runs for real: definitions, the asset graph, deploy jobs, checks, locks, resumption, and the webserver."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import create_engine, text

from orchestration.definitions import defs
from tests.conftest import BIN, ROOT, cli_env
from tests.helpers import current, execute, scalar, seeded
from tradedb import schema
from tradedb.schema.locks import LOCK_KEY

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


@pytest.fixture
def dev(env, monkeypatch):
    """A fresh database as the dev environment of the code location."""
    monkeypatch.setenv("TRADEDB_DEV_URL", env.url.render_as_string(hide_password=False))
    return env


def deploy(instance, env_name: str = "dev") -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(f"deploy_{env_name}").execute_in_process(
        instance=instance, raise_on_error=False
    )


# ------------------------------------------------------------------------------------------------ the graph


def graph_snapshot() -> dict:
    graph = defs.resolve_asset_graph()
    specs = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        meta = {
            k: v
            for k, v in node.metadata.items()
            if k in ("ticket", "requires_data", "after_revision", "needed_by")
        }
        specs[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "group": node.group_name,
            "description": (node.description or "").splitlines()[0],
            "metadata": {k: str(getattr(v, "value", v)) for k, v in meta.items()},
            "checks": sorted(c.name for c in node.check_keys),
        }
    jobs = sorted(job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__"))
    schedules = sorted(s.name for s in defs.schedules)
    sensors = sorted(s.name for s in defs.sensors)
    return {"assets": specs, "jobs": jobs, "schedules": schedules, "sensors": sensors}


def test_definitions_load_and_match_the_snapshot():
    """An accidental change to the graph shows up here; regenerate with UPDATE_SNAPSHOTS=1 when intended."""
    snapshot = graph_snapshot()
    if os.environ.get("UPDATE_SNAPSHOTS") or not SNAPSHOT.exists():
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    assert snapshot == json.loads(SNAPSHOT.read_text())
    migration_assets = {
        k: v for k, v in snapshot["assets"].items() if k.split("/")[0] in ("dev", "staging", "production")
    }
    assert len(migration_assets) == 3 * (len(schema.revisions()) + 4)
    assert {"deploy_dev", "deploy_staging", "deploy_production", "verify_production"} <= set(snapshot["jobs"])
    assert {"rehearse_staging", "drift_watch"} <= set(snapshot["jobs"])
    assert {spec["group"] for spec in migration_assets.values()} == {
        "common",
        "events",
        "setups",
        "strategy",
        "execution",
        "discord",
    }
    assert set(snapshot["assets"]) - set(migration_assets) == {
        "reports/dev",
        "reports/staging",
        "reports/production",
        "rehearsal/staging",
    }
    assert snapshot["schedules"] == ["drift_watch_hourly", "production_window_deploy"]
    assert snapshot["sensors"] == ["alert_on_long_runs", "alert_on_run_failure", "staging_rehearsal"]


def test_graph_order_is_expand_then_data_then_contract():
    graph = defs.resolve_asset_graph()
    order = [k.to_user_string() for k in graph.toposorted_asset_keys if k.path[0] == "dev"]
    revisions = [o for o in order if "/rev_" in o]
    assert [r.rsplit("rev_", 1)[1] for r in revisions] == [r.revision for r in schema.revisions()]
    backfill = order.index("dev/execution/backfill_trade_notional")
    assert order.index("dev/execution/rev_0008") < backfill < order.index("dev/execution/rev_0013")
    staging_keys = [k for k in graph.get_all_asset_keys() if k.path[0] == "staging"]
    assert all(p.path[0] == "staging" for k in staging_keys for p in graph.get(k).parent_keys)


def test_definitions_validate_command():
    result = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------ deploys


def test_deploy_reaches_head_with_every_check_passing(dev):
    seeded(dev, rows=2_000)
    with dg.instance_for_test() as instance:
        result = deploy(instance)
        assert result.success
        assert current(dev) == schema.head()
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
        mats = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
        backfill = mats["dev/execution/backfill_trade_notional"].event_specific_data.materialization.metadata
        assert backfill["rows_done"].value == 2_000 and isinstance(backfill["rows_per_s"].value, float)
        assert "db_size_after_bytes" in backfill
        staging = instance.get_latest_materialization_event(dg.AssetKey(["staging", "execution", "rev_0017"]))
        assert staging is None  # deploying dev never makes staging look migrated
        again = deploy(instance)  # everything up to date: recorded no-ops, not errors
        assert again.success
        outcome = {
            e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata["outcome"].value
            for e in again.get_asset_materialization_events()
            if "/rev_" in e.asset_key.to_user_string()
        }
        assert all(v.startswith("already applied") for v in outcome.values())


def test_a_failing_invariant_blocks_the_contract(dev):
    seeded(dev, rows=500, to="0012")
    from data_migrations import engine

    engine.run(dev.url, "execution.backfill_trade_notional")
    execute(dev, "UPDATE trades SET notional = notional * 2 WHERE id IN (3, 4)")
    with dg.instance_for_test() as instance:
        result = deploy(instance)
    assert not result.success
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [c.check_name for c in failed] == ["invariants"]
    sample = failed[0].metadata["sample"].value
    assert {row["id"] for row in sample[0]["rows"]} == {3, 4}
    assert current(dev) == "0012"  # the contract revision did not run


def test_a_second_concurrent_deploy_is_refused_and_changes_nothing(dev):
    seeded(dev, rows=200)
    holder = create_engine(dev.url).connect()
    holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
    holder.commit()
    try:
        with dg.instance_for_test() as instance:
            result = deploy(instance)
        assert not result.success
        failures = [e for e in result.all_events if e.is_step_failure]
        message = failures[0].step_failure_data.user_failure_data.description
        assert "another migration is running on the dev database" in message
        assert current(dev) == "0006"
    finally:
        holder.close()


def test_no_password_in_the_event_log(env, server_url, monkeypatch):
    password = "Sekr3t-pw-for-leak-test"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            text(
                f"DO $$ BEGIN CREATE ROLE leak_tester LOGIN SUPERUSER PASSWORD '{password}'; "
                "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
            )
        )
    admin.dispose()
    url = env.url.set(username="leak_tester", password=password)
    monkeypatch.setenv("TRADEDB_DEV_URL", url.render_as_string(hide_password=False))
    seeded(env, rows=200)
    with dg.instance_for_test() as instance:
        result = deploy(instance)
        assert result.success
        logs = instance.all_logs(result.run_id)
        text_of_logs = "\n".join(str(record.dagster_event) + (record.user_message or "") for record in logs)
        assert len(logs) > 50 and "STEP_SUCCESS" in text_of_logs  # a whole deploy's log was searched
        assert password not in text_of_logs
    with create_engine(env.url).connect() as conn:
        dumped = conn.scalar(
            text(
                "SELECT (SELECT string_agg(t::text, '') FROM tradedb_migrations.data_migration_state t)"
                " || (SELECT string_agg(l::text, '') FROM tradedb_migrations.ledger l)"
            )
        )
    assert dumped and "dagster:" in dumped  # the ledger rows of this run were searched too
    assert password not in dumped


def test_killed_deploy_resumes_from_the_checkpoint(env, tmp_path):
    seeded(env, rows=40_000)
    home = tmp_path / "dagster_home"
    extra = {"DAGSTER_HOME": str(home)}
    proc = subprocess.Popen(
        [str(BIN / "tradedb"), "deploy"],
        cwd=ROOT,
        env=cli_env(env, **extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    progress = "SELECT coalesce(sum(batches), 0) FROM tradedb_migrations.data_migration_state WHERE name = :n"
    has_state = "SELECT to_regclass('tradedb_migrations.data_migration_state') IS NOT NULL"
    name = "events.normalise_event_payload"
    end = time.monotonic() + 180
    while time.monotonic() < end and not (scalar(env, has_state) and scalar(env, progress, n=name) >= 2):
        assert proc.poll() is None, "the deploy ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = scalar(
        env,
        "SELECT rows_done + rows_quarantined FROM tradedb_migrations.data_migration_state WHERE name = :n",
        n=name,
    )
    assert 0 < done_before < 40_000
    result = subprocess.run(
        [str(BIN / "tradedb"), "deploy"],
        cwd=ROOT,
        env=cli_env(env, **extra),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert current(env) == schema.head()
    ranges = list(
        create_engine(env.url)
        .connect()
        .execute(
            text("SELECT lo, hi FROM tradedb_migrations.data_migration_batches WHERE name = :n ORDER BY lo"),
            {"n": name},
        )
    )
    assert all(a.hi <= b.lo for a, b in zip(ranges, ranges[1:], strict=False)), "a committed batch ran twice"


# ------------------------------------------------------------------------------------------------ the webserver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_launch_through_the_webserver_graphql_api(env, postgres_home):
    """Start `tradedb ui` (dagster dev: webserver + daemon) on Dagster storage in its own PostgreSQL, launch
    deploy_dev as the UI does, wait for success, and find the run in that database."""
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    seeded(env, rows=1_000)
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "tradedb"), "ui", "--port", str(port)],
        cwd=ROOT,
        env=cli_env(env, DAGSTER_HOME=str(postgres_home.home)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        run_id = None
        end = time.monotonic() + 120
        while run_id is None:
            try:
                run_id = client.submit_job_execution("deploy_dev")
            except (DagsterGraphQLClientError, Exception):  # noqa: BLE001 - server still starting
                if time.monotonic() > end:
                    raise
                time.sleep(1)
        end = time.monotonic() + 300
        status = None
        while time.monotonic() < end:
            status = client.get_run_status(run_id)
            if status in (
                dg.DagsterRunStatus.SUCCESS,
                dg.DagsterRunStatus.FAILURE,
                dg.DagsterRunStatus.CANCELED,
            ):
                break
            time.sleep(1)
        assert status == dg.DagsterRunStatus.SUCCESS, status
        assert current(env) == schema.head()
        assert postgres_home.scalar("SELECT status FROM runs WHERE run_id = :r", r=run_id) == "SUCCESS"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
