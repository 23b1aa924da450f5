"""A maintenance window that closes while a data migration runs: the production deploy (through
``orchestration.launch.run_job``, as ``tradedb deploy`` runs it) stops at a batch boundary, alerts a
``deadline_stop`` (info), starts no schema step after the deadline, and the next window's run resumes and ends
with exactly the data of a deploy that was never interrupted.

The window closes a few seconds into the run (slot times to the second). ``[data_migrations] max_batch = 1``
makes the backfill walk a few thousand trades one row per batch, so it takes many seconds and many batches
without seeding millions of rows; the next window's run uses the engine's normal batches.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import create_engine, text

from orchestration.launch import run_job
from tests.helpers import current, seeded
from tradedb import schema
from tradedb.core import alerts
from tradedb.core.db import connect_checked
from tradedb.core.settings import Environment
from tradedb.ops.checksums import database_checksums
from tradedb.ops.pipeline import configured_options
from tradedb.schema import ledger

ROWS = 8_000  # trades: at one row per batch the backfill takes well over the seconds the window leaves it
WINDOW_LEFT_S = 8  # the window closes this long after the run is launched
BACKFILL = "execution.backfill_trade_notional"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def window(path, start: datetime, end: datetime) -> None:
    """One production window, UTC, no margin, to the second."""
    path.write_text(
        '[production]\ntimezone = "UTC"\nmargin_minutes = 0\n'
        f'slots = [{{ days = ["{DAYS[start.weekday()]}"], start = "{start:%H:%M:%S}", end = "{end:%H:%M:%S}" }}]\n'
    )


def batches(env) -> list[dict]:
    with connect_checked(env) as conn:
        rows = conn.execute(
            text(
                "SELECT lo, hi, rows, finished_at FROM tradedb_migrations.data_migration_batches "
                "WHERE name = :n ORDER BY lo"
            ),
            {"n": BACKFILL},
        )
        return [dict(r) for r in rows.mappings()]


def schema_steps(run_id: str) -> dict[str, tuple[float, str]]:
    """Each schema step of the run: when it started and how it ended (``succeeded`` or its failure message)."""
    started, ended = {}, {}
    with dg.DagsterInstance.get() as instance:
        for record in instance.all_logs(run_id):
            event, step = record.dagster_event, record.step_key or ""
            if event is None or "__rev_" not in step:
                continue
            if event.event_type_value == "STEP_START":
                started[step] = record.timestamp
            elif event.event_type_value == "STEP_FAILURE":
                ended[step] = event.step_failure_data.user_failure_data.description
            elif event.event_type_value == "STEP_SUCCESS":
                ended[step] = "succeeded"
    return {step: (at, ended.get(step, "never ended")) for step, at in started.items()}


def checksums(env) -> dict[str, str]:
    with connect_checked(env) as conn:
        return database_checksums(conn)


def test_max_batch_caps_the_batches_of_deploys_rehearsals_and_data_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEDB_CONFIG", str(tmp_path / "tradedb.toml"))
    (tmp_path / "tradedb.toml").write_text("")
    default = configured_options()
    assert (default.min_batch, default.initial_batch, default.max_batch) == (100, 2_000, 50_000)
    (tmp_path / "tradedb.toml").write_text("[data_migrations]\nmax_batch = 500\n")
    capped = configured_options(environment="production")
    assert (capped.min_batch, capped.initial_batch, capped.max_batch) == (100, 500, 500)
    assert capped.environment == "production"
    (tmp_path / "tradedb.toml").write_text("[data_migrations]\nmax_batch = 1\n")
    assert (configured_options().min_batch, configured_options().max_batch) == (1, 1)


@pytest.fixture
def copy_database(server_url):
    """Copies of a database (``CREATE DATABASE ... TEMPLATE``), dropped at the end of the test."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def copy(env: Environment) -> Environment:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                {"d": env.url.database},
            )
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{env.url.database}"')
        made.append(name)
        return Environment(env.name, env.url.set(database=name), embedded=False)

    yield copy
    with admin.connect() as conn:
        for name in made:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.mark.slow
def test_a_window_closing_mid_run_stops_at_a_batch_boundary_and_the_next_window_finishes(
    make_database, copy_database, tmp_path, monkeypatch
):
    production = seeded(make_database("production"), rows=ROWS, to="0008")
    uninterrupted = copy_database(
        production
    )  # the same rows, byte for byte (seeding stamps created_at = now())
    windows_file, slow = tmp_path / "windows.toml", tmp_path / "slow.toml"
    slow.write_text("[data_migrations]\nmax_batch = 1\n")
    monkeypatch.setenv("TRADEDB_WINDOWS", str(windows_file))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))

    # the reference: the same data deployed in one go
    monkeypatch.setenv("TRADEDB_PRODUCTION_URL", uninterrupted.url.render_as_string(hide_password=False))
    now = datetime.now(UTC).replace(microsecond=0)
    window(windows_file, now - timedelta(minutes=1), now + timedelta(hours=2))
    assert run_job("deploy_production").success
    expected = checksums(uninterrupted)

    # the window closes a few seconds into the run, while the backfill walks one row per batch
    monkeypatch.setenv("TRADEDB_PRODUCTION_URL", production.url.render_as_string(hide_password=False))
    monkeypatch.setenv("TRADEDB_CONFIG", str(slow))
    now = datetime.now(UTC).replace(microsecond=0)
    deadline = now + timedelta(seconds=WINDOW_LEFT_S)
    window(windows_file, now - timedelta(minutes=1), deadline)
    earlier = len(alerts.recent(1_000))  # the reference run's quarantine alerts
    stopped = run_job("deploy_production")
    assert not stopped.success and "deadline" in stopped.failure
    raised = alerts.recent(1_000)[earlier:]
    assert [(a["kind"], a["severity"]) for a in raised] == [(alerts.DEADLINE_STOP, "info")]
    # no schema step started after the deadline: those that began before it are in the ledger; any later, or
    # reaching the deadline during its pre-change backup, was refused before touching the database
    with connect_checked(production) as conn:
        rows = ledger.entries(conn)
        state = (
            conn.execute(
                text("SELECT * FROM tradedb_migrations.data_migration_state WHERE name = :n"), {"n": BACKFILL}
            )
            .mappings()
            .one()
        )
        checkpoint = conn.scalar(
            text("SELECT max(last_key) FROM tradedb_migrations.data_migration_slices WHERE name = :n"),
            {"n": BACKFILL},
        )
    applied = [r for r in rows if r["kind"] == "schema" and r["run_id"] == stopped.run_id]
    steps = schema_steps(stopped.run_id)
    started = {step.rsplit("__rev_", 1)[1]: at for step, (at, _) in steps.items()}
    assert all(r["outcome"] == "success" and started[r["name"]] < deadline.timestamp() for r in applied)
    assert current(production) == (applied[-1]["name"] if applied else "0008")
    refused = {s: m for s, (_, m) in steps.items() if m != "succeeded"}
    assert all("has passed: no further schema step starts" in m for m in refused.values()), refused
    assert all(m != "succeeded" for at, m in steps.values() if at >= deadline.timestamp())
    assert refused or current(production) == "0012", "no schema step met the deadline"
    (backfill,) = [r for r in rows if r["kind"] == "data" and r["name"] == BACKFILL]
    assert backfill["outcome"] == "stopped" and "deadline" in backfill["error"]
    # it stopped between two batches: every committed batch is whole, the checkpoint is the last one's end,
    # and no batch began after the deadline
    done = batches(production)
    assert len(done) > 100 and state["status"] == "interrupted"
    assert 0 < state["rows_done"] == sum(b["rows"] for b in done) < ROWS
    assert checkpoint == done[-1]["hi"]
    assert all(a["hi"] <= b["lo"] for a, b in zip(done, done[1:], strict=False))
    assert max(b["finished_at"] for b in done) < deadline  # a batch's time is its transaction's start

    # the next window: the run resumes from the checkpoint and finishes, with the normal batch sizes
    monkeypatch.delenv("TRADEDB_CONFIG")
    now = datetime.now(UTC).replace(microsecond=0)
    window(windows_file, now - timedelta(seconds=5), now + timedelta(hours=2))
    resumed = run_job("deploy_production")
    assert resumed.success, resumed.failure
    assert current(production) == schema.head()
    with connect_checked(production) as conn:
        runs = [r for r in ledger.entries(conn) if r["kind"] == "data" and r["name"] == BACKFILL]
        total = conn.scalar(
            text("SELECT rows_done FROM tradedb_migrations.data_migration_state WHERE name = :n"),
            {"n": BACKFILL},
        )
    assert [r["outcome"] for r in runs] == ["stopped", "success"]
    assert runs[0]["rows_touched"] + runs[1]["rows_touched"] == total  # nothing walked twice, nothing skipped
    again = batches(production)
    assert all(a["hi"] <= b["lo"] for a, b in zip(again, again[1:], strict=False))
    assert checksums(production) == expected
