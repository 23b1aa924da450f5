"""Throttling that paces instead of stalling, on real PostgreSQL: the run's own dead tuples are vacuumed by the
engine, dead tuples from elsewhere still hold it back (bounded), a vacuum on the table shrinks the batches, an
anti-wraparound vacuum pauses it, a role that may not vacuum paces, and the ETA counts the time held back."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from data_migrations import engine
from data_migrations.engine import RunOptions, state
from data_migrations.engine.health import GO, Health, VacuumActivity, decide
from data_migrations.engine.progress import RateWindow
from tests.conftest import run_cli
from tests.helpers import execute, scalar, seeded
from tradedb.schema import ledger

BACKFILL = "execution.backfill_trade_notional"
ROWS = 20_000
WRAPAROUND = "autovacuum: VACUUM public.trades (to prevent wraparound)"


def sensitive(**kw) -> RunOptions:
    """Options whose dead-tuple limits a small table crosses: 500 dead tuples and 10 % of the live rows."""
    kw.setdefault("initial_batch", 200)
    kw.setdefault("min_batch", 200)
    kw.setdefault("max_batch", 200)
    return RunOptions(min_dead_tuples=500, dead_tuple_ratio=0.1, **kw)


def vacuum_stats(env) -> tuple:
    e = create_engine(env.url, poolclass=NullPool)
    with e.connect() as conn:
        row = conn.execute(
            text("SELECT vacuum_count, last_vacuum FROM pg_stat_user_tables WHERE relname = 'trades'")
        )
        stats = tuple(row.one())
    e.dispose()
    return stats


def foreign_dead_tuples(env, times: int = 2) -> None:
    """Dead tuples the run did not leave: the app rewrote every trade ``times`` times (and its session ended, so
    the statistics know)."""
    e = create_engine(env.url, poolclass=NullPool)
    with e.begin() as conn:
        for _ in range(times):
            conn.execute(text("UPDATE trades SET fee = fee"))
    e.dispose()


# ------------------------------------------------------------------------------------------------ the rule


def test_the_rule_waits_for_wraparound_shrinks_for_vacuum_and_vacuums_its_own_dead_tuples():
    t = "trades"
    assert decide(Health(t, dead=10, live=1_000_000), own_dead=0) == GO
    waited = decide(Health(t, vacuums=(VacuumActivity(41, WRAPAROUND),)), own_dead=0)
    assert waited.action == "wait" and "anti-wraparound vacuum running on trades (pid 41)" in waited.reason
    unreadable = VacuumActivity(42, "<insufficient privilege>", freeze_due=True)  # the table is due a freeze
    assert decide(Health(t, vacuums=(unreadable,)), own_dead=0).action == "wait"
    assert (
        decide(Health(t, vacuums=(VacuumActivity(43, "autovacuum: VACUUM public.trades"),)), 0).action
        == "shrink"
    )
    assert decide(Health(t, vacuums=(VacuumActivity(44, "VACUUM trades", ours=True),)), 0) == GO
    own = decide(Health(t, dead=600_000, live=1_000_000), own_dead=600_000)
    assert own.action == "vacuum" and "left by this run" in own.reason
    before_the_run = decide(Health(t, dead=900_000, live=1_000_000), own_dead=100_000)
    assert before_the_run.action == "wait" and "more than this run left" in before_the_run.reason
    assert decide(Health(t, lock_wait="session 7 has waited 2.0s for a lock on trades"), 0).action == "wait"


def test_the_rate_and_eta_count_time_held_back():
    rate = RateWindow(seconds=120)
    rate.add(0, now=0.0)
    rate.add(1_000, now=1.0)  # one second of batches: 1,000 rows/s by batch time
    assert rate.rate() == 1_000
    assert rate.add(1_000, now=10.0) == 100  # then nine seconds throttled: 100 rows/s is the truth
    rate.add(20_000, now=200.0)
    assert rate.samples[0][0] >= 10.0  # the window forgets what is older than two minutes


# ------------------------------------------------------------------------------------------------ on the server


def test_the_runs_own_dead_tuples_are_vacuumed_by_the_engine_not_waited_for(env, caplog):
    """Long enough (400 batches) for the statistics, which backends flush about once a second, to see them."""
    seeded(env, rows=2 * ROWS, to="0008")
    execute(env, "ALTER TABLE trades SET (autovacuum_enabled = false)")  # only the engine can clean up here
    assert vacuum_stats(env)[0] == 0
    started = time.monotonic()
    with caplog.at_level("INFO", logger="tradedb.data"):
        result = engine.run(env.url, BACKFILL, sensitive(initial_batch=100, min_batch=100, max_batch=100))
    assert result.status == "finished"
    assert result.throttled_seconds == 0  # never waited
    assert time.monotonic() - started < 60
    vacuums, last = vacuum_stats(env)
    assert vacuums >= 1 and last is not None  # a plain VACUUM by us (autovacuum is off for this table)
    assert any("left by this run: vacuuming" in r.getMessage() for r in caplog.records)


def test_dead_tuples_from_elsewhere_still_hold_the_run_back_within_its_bound(env):
    seeded(env, rows=ROWS, to="0008")
    execute(env, "ALTER TABLE trades SET (autovacuum_enabled = false)")
    foreign_dead_tuples(env)
    seen = []
    result = engine.run(
        env.url, BACKFILL, sensitive(max_pause_seconds=2.0, max_batches=12, on_progress=seen.append)
    )
    assert result.status == "interrupted"  # stopped after 12 batches as asked, having waited once
    assert 1.5 <= result.throttled_seconds <= 4.0
    held = [p for p in seen if p.throttled]
    assert held and "more than this run left; waiting for vacuum" in held[0].throttled
    assert "throttled for" in held[-1].describe() and held[-1].throttled_for >= 1.0
    assert vacuum_stats(env)[1] is None  # not ours to clean: the engine did not vacuum them
    status = json.loads(run_cli("data", "status", "--json", env=env).stdout)
    (row,) = [r for r in status if r["name"] == BACKFILL]
    assert row["throttled_seconds"] == pytest.approx(result.throttled_seconds, abs=0.01)
    with create_engine(env.url).connect() as conn:
        (entry,) = [e for e in ledger.entries(conn) if e["kind"] == "data"]
    assert entry["detail"]["throttled_seconds"] == pytest.approx(result.throttled_seconds, abs=0.01)


def test_a_vacuum_running_on_the_table_shrinks_the_batches(env):
    seeded(env, rows=ROWS, to="0008")
    foreign_dead_tuples(env, times=1)
    slow = create_engine(env.url, poolclass=NullPool, isolation_level="AUTOCOMMIT").connect()
    slow.execute(text("SET vacuum_cost_delay = 100; SET vacuum_cost_limit = 1"))  # a vacuum that crawls
    pid = slow.scalar(text("SELECT pg_backend_pid()"))

    def crawl() -> None:
        with contextlib.suppress(DBAPIError):  # cancelled once the test has seen what it needs
            slow.execute(text("VACUUM trades"))

    vacuum = threading.Thread(target=crawl, daemon=True)
    vacuum.start()
    try:
        deadline = time.monotonic() + 20
        while not scalar(env, "SELECT count(*) FROM pg_stat_progress_vacuum WHERE pid = :p", p=pid):
            assert time.monotonic() < deadline, "the slow VACUUM never started"
            time.sleep(0.05)
        options = sensitive(
            initial_batch=1_000, min_batch=100, max_batch=1_000, target_seconds=60, max_batches=12
        )
        result = engine.run(env.url, BACKFILL, options)
    finally:
        execute(env, "SELECT pg_cancel_backend(:p)", p=pid)
        vacuum.join(10)
        slow.close()
    assert result.throttled_seconds == 0
    assert result.batch_rows[:10] == [1_000] * 10 and result.batch_rows[10] == 500  # halved at the 10th batch


def test_a_role_that_may_not_vacuum_paces_instead(env, server_url):
    seeded(env, rows=2 * ROWS, to="0008")  # 400 batches: the statistics see the dead tuples in time
    execute(env, "ALTER TABLE trades SET (autovacuum_enabled = false)")
    role = f"migrator_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        with create_engine(env.url).begin() as conn:
            state.ensure_schema(conn)  # created by the owner, as a deploy would have done before
        for grant in (
            "ALL ON ALL TABLES IN SCHEMA public",
            "ALL ON ALL TABLES IN SCHEMA tradedb_migrations",
            "ALL ON ALL SEQUENCES IN SCHEMA tradedb_migrations",
            "USAGE ON SCHEMA tradedb_migrations",
        ):
            execute(env, f'GRANT {grant} TO "{role}"')
        options = sensitive(initial_batch=100, min_batch=100, max_batch=100, max_pause_seconds=0.5)
        result = engine.run(env.url.set(username=role), BACKFILL, options)
        assert result.status == "finished"
        assert result.throttled_seconds > 0  # paced
        assert vacuum_stats(env)[1] is None  # and never tried to VACUUM a table it may not
    finally:
        execute(env, f'DROP OWNED BY "{role}"')  # its grants live in the test database
        with admin.connect() as conn:
            conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()
