"""The data-migration engine on real PostgreSQL: crashes, dropped connections, locks, operators, deadlines, workers."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from data_migrations import engine, get
from data_migrations.base import DataMigration, SqlStep
from data_migrations.engine import DataMigrationFailed, RunOptions, batch_size, state
from data_migrations.events.normalise_event_payload import normalise
from tests.conftest import BIN, ROOT, cli_env, run_cli
from tests.helpers import current, execute, scalar, seeded
from tradedb import schema
from tradedb.core.errors import TradeDBError

EVENTS = "events.normalise_event_payload"
TABLE_CHECKSUM = "SELECT md5(string_agg(ROW(id, payload, instrument_id)::text, ',' ORDER BY id)) FROM events"


def small_batches(size: int = 200, **kw) -> RunOptions:
    return RunOptions(initial_batch=size, min_batch=size, max_batch=size, **kw)


def at_events_expand(env, rows: int = 3_000):
    return seeded(env, rows=rows, to="0011")


def expected_quarantine(env) -> int:
    bad = 0
    with create_engine(env.url).connect() as conn:
        for raw in conn.scalars(text("SELECT payload_raw FROM events")):
            try:
                normalise(raw)
            except ValueError:
                bad += 1
    return bad


def ranges_never_overlap(env, name: str) -> list[tuple[int, int]]:
    with create_engine(env.url).connect() as conn:
        ranges = [
            (r.lo, r.hi)
            for r in conn.execute(
                text(
                    "SELECT lo, hi FROM tradedb_migrations.data_migration_batches WHERE name = :n ORDER BY lo"
                ),
                {"n": name},
            )
        ]
    for (_, hi), (lo, _) in zip(ranges, ranges[1:], strict=False):
        assert lo >= hi, f"ranges overlap: a committed batch was repeated ({ranges})"
    return ranges


# ------------------------------------------------------------------------------------------------ pure parts


def test_batch_size_moves_towards_the_target_within_bounds():
    def size(current, recent):
        return batch_size.next_batch_size(current, recent, target=0.5)

    assert size(1_000, []) == 1_000
    assert size(1_000, [(1_000, 0.5)]) == 1_000  # on target: keep
    assert size(1_000, [(1_000, 0.1)]) == int(1_000 * batch_size.MAX_GROWTH)  # far too fast: grow, capped
    assert size(1_000, [(1_000, 5.0)]) == 500  # far too slow: at most halve
    assert size(1_000, [(1_000, 0.7)]) == 714  # towards 0.5 s
    assert size(batch_size.MAX_BATCH, [(50_000, 0.01)]) == batch_size.MAX_BATCH
    assert size(batch_size.MIN_BATCH, [(100, 60)]) == batch_size.MIN_BATCH
    assert batch_size.next_batch_size(1_000, [(1_000, 0.1)], target=0.5, maximum=1_100) == 1_100
    assert batch_size.split(1_000) == 500 and batch_size.split(150) == batch_size.MIN_BATCH


def test_normalise_handles_every_producer_and_rejects_garbage():
    assert normalise('{"symbol": "aapl", "price": 1.5}') == {"symbol": "AAPL", "price": 1.5}
    assert normalise('{"Ticker": "msft", "px": "12.5", "qty": 10}') == {
        "symbol": "MSFT",
        "price": 12.5,
        "quantity": 10,
    }
    for bad in ('{"symbol": "AAPL", "price": 1', "[1, 2]", "null", '{"px": "12..5"}'):
        with pytest.raises(ValueError):
            normalise(bad)


def test_transitions_are_checked(env):
    schema.upgrade(env, "head")
    with create_engine(env.url).begin() as conn:
        state.ensure_schema(conn)
        with pytest.raises(TradeDBError, match="cannot become paused"):
            state.transition(conn, EVENTS, "paused")
        assert state.transition(conn, EVENTS, "running") == "pending"


# ------------------------------------------------------------------------------------------------ the happy path


def test_run_quarantines_malformed_rows_and_reconciles(env):
    at_events_expand(env)
    bad = expected_quarantine(env)
    snapshots = []
    result = engine.run(env.url, EVENTS, small_batches(500, on_progress=snapshots.append))
    assert result.status == "finished"
    assert bad > 0 and result.rows_quarantined == bad
    assert result.rows_done + result.rows_quarantined == result.source_rows == 3_000
    assert scalar(env, "SELECT count(*) FROM events WHERE payload IS NULL") == bad
    assert scalar(env, "SELECT count(*) FROM tradedb_migrations.quarantine WHERE reason = ''") == 0
    assert [s.rows_done for s in snapshots] == sorted(s.rows_done for s in snapshots)
    assert snapshots[-1].rows_done == 3_000 and snapshots[-1].batch_size == 500
    ranges_never_overlap(env, EVENTS)
    again = engine.run(env.url, EVENTS)
    assert again.status == "finished" and again.batches == 0  # nothing left: a rerun is a no-op
    assert again.rows_done + again.rows_quarantined == again.source_rows == 3_000


def test_sql_migrations_and_invariants(env):
    from data_migrations.checks import data_checks

    seeded(env, rows=1_000, to="0012")
    for name in (
        "execution.backfill_trade_notional",
        "setups.parse_ticker_setup_levels",
        "discord.split_alert_types",
    ):
        assert engine.run(env.url, name).status == "finished"
        with create_engine(env.url).connect() as conn:
            failing = [c for c in data_checks(conn, get(name)) if not c.passed]
        assert not failing, failing
    assert (
        scalar(
            env, "SELECT count(*) FROM ticker_setups WHERE levels LIKE 'ENTRY = %' AND entry_price IS NULL"
        )
        == 0
    )
    assert (
        scalar(env, "SELECT count(*) FROM alert_subscription_types WHERE alert_type <> lower(alert_type)")
        == 0
    )
    execute(env, "UPDATE trades SET notional = notional + 1 WHERE id = 7")  # break an invariant on purpose
    with create_engine(env.url).connect() as conn:
        broken = [c for c in data_checks(conn, get("execution.backfill_trade_notional")) if not c.passed]
    assert len(broken) == 1 and broken[0].violations == 1 and broken[0].sample[0]["id"] == 7


def test_downgrade_past_after_resets_state_so_it_runs_again(env):
    at_events_expand(env, rows=500)
    assert engine.run(env.url, EVENTS).status == "finished"
    schema.downgrade(env, "0010")
    assert (
        scalar(env, "SELECT count(*) FROM tradedb_migrations.data_migration_state WHERE name = :n", n=EVENTS)
        == 0
    )
    assert (
        scalar(env, "SELECT count(*) FROM tradedb_migrations.quarantine WHERE migration = :n", n=EVENTS) == 0
    )
    schema.upgrade(env, "0011")
    result = engine.run(env.url, EVENTS)
    assert result.status == "finished" and result.source_rows == 500


def test_revert_undoes_and_forgets(env):
    at_events_expand(env, rows=500)
    engine.run(env.url, EVENTS)
    assert engine.revert(env.url, EVENTS) >= 1
    assert scalar(env, "SELECT count(*) FROM events WHERE payload IS NOT NULL") == 0
    assert engine.run(env.url, EVENTS).source_rows == 500


def test_bad_row_stops_the_run_when_declared(env):
    at_events_expand(env, rows=300)
    strict = DataMigration(
        name="events.strict_copy",
        after="0011",
        table="events",
        description="test: refuses any payload that is not an object",
        pending_where="t.payload IS NULL",
        step=SqlStep(
            update_sql="UPDATE events SET payload = '{}' WHERE id > :lo AND id <= :hi AND payload_raw LIKE '{%'",
            reject_sql="SELECT id AS key, 'not an object' AS reason FROM events WHERE id > :lo AND id <= :hi "
            "AND payload_raw NOT LIKE '{%'",
        ),
        on_bad_row="stop",
    )
    with pytest.raises(DataMigrationFailed, match="cannot transform"):
        engine.run(env.url, strict)
    assert (
        scalar(
            env, "SELECT status FROM tradedb_migrations.data_migration_state WHERE name = :n", n=strict.name
        )
        == "failed"
    )


# ------------------------------------------------------------------------------------------------ failures


def test_sigkill_at_random_points_then_resume_matches_an_uninterrupted_run(make_database):
    reference, crashed = make_database(), make_database()
    for e in (reference, crashed):
        at_events_expand(e, rows=6_000)
    assert engine.run(reference.url, EVENTS).status == "finished"
    rng = random.Random(20261125)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [str(BIN / "tradedb"), "data", "run", EVENTS, "--batch-size", "150"],
            cwd=ROOT,
            env=cli_env(crashed),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        before = _progress(crashed)
        _wait_for(lambda before=before, proc=proc: _progress(crashed) > before or proc.poll() is not None)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1
    result = engine.run(crashed.url, EVENTS)
    assert result.status == "finished"
    assert scalar(crashed, TABLE_CHECKSUM) == scalar(reference, TABLE_CHECKSUM)
    assert result.rows_done + result.rows_quarantined == result.source_rows == 6_000
    ranges_never_overlap(crashed, EVENTS)


def test_terminated_connection_mid_batch_is_retried(env):
    at_events_expand(env, rows=4_000)
    killed = []

    def terminate_once():
        _wait_for(lambda: _progress(env) > 0)  # batches are under way
        admin = create_engine(env.url, isolation_level="AUTOCOMMIT")  # a fresh stats snapshot per poll
        with admin.connect() as conn:
            for _ in range(2_000):
                pid = conn.scalar(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = 'tradedb-data' "
                        "AND datname = current_database() AND query ILIKE '%FROM events%' "  # inside a batch
                        "AND state IN ('active', 'idle in transaction') "
                        "AND pid <> pg_backend_pid() LIMIT 1"
                    )
                )
                if pid and conn.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": pid}):
                    killed.append(pid)
                    return
                time.sleep(0.005)
        admin.dispose()

    killer = threading.Thread(target=terminate_once)
    killer.start()
    result = engine.run(env.url, EVENTS, small_batches(100))
    killer.join()
    assert killed, "the test never caught the runner inside a batch"
    assert result.status == "finished" and result.retries >= 1
    assert result.rows_done + result.rows_quarantined == 4_000
    ranges_never_overlap(env, EVENTS)


def test_conflicting_lock_times_out_retries_then_fails_clearly_and_resumes(env):
    seeded(env, rows=1_000, to="0008")
    name = "execution.backfill_trade_notional"
    holder = create_engine(env.url).connect()
    holder.execute(text("SELECT * FROM trades WHERE id = 5 FOR UPDATE"))  # an app transaction holding a row
    options = RunOptions(lock_timeout_ms=100, max_attempts=3, initial_batch=100, min_batch=100, max_batch=100)
    with pytest.raises(DataMigrationFailed) as failure:
        engine.run(env.url, name, options)
    message = str(failure.value)
    assert name in message and "after 0" in message and "3 attempt" in message and "lock timeout" in message
    assert (
        scalar(env, "SELECT retries FROM tradedb_migrations.data_migration_state WHERE name = :n", n=name)
        == 2
    )
    assert (
        scalar(env, "SELECT count(*) FROM trades WHERE id <= 100 AND notional IS NOT NULL") == 0
    )  # rolled back
    holder.rollback()
    holder.close()
    result = engine.run(env.url, name)
    assert result.status == "finished"
    assert scalar(env, "SELECT count(*) FROM trades WHERE notional IS NULL") == 0


def test_statement_timeouts_split_the_batch_then_fail_clearly(env):
    seeded(env, rows=2_000, to="0008")
    options = RunOptions(
        statement_timeout_ms=1, max_attempts=3, initial_batch=1_000, min_batch=100, throttle=False
    )
    with pytest.raises(DataMigrationFailed) as failure:
        engine.run(env.url, "execution.backfill_trade_notional", options)
    assert "batch of 250" in str(failure.value)  # 1000 -> 500 -> 250 as the timeouts repeat
    assert "statement timeout" in str(failure.value)
    assert scalar(env, "SELECT count(*) FROM trades WHERE notional IS NOT NULL") == 0


def test_lock_waits_of_the_app_make_the_engine_back_off(env):
    from data_migrations.engine.health import throttle_reasons

    seeded(env, rows=200, to="0008")
    holder = create_engine(env.url).connect()
    holder.execute(text("SELECT * FROM trades WHERE id = 1 FOR UPDATE"))
    waiter_engine = create_engine(env.url, connect_args={"application_name": "trading-app"})

    def app_write():
        with waiter_engine.begin() as conn:
            conn.execute(text("UPDATE trades SET fee = fee + 1 WHERE id = 1"))

    waiter = threading.Thread(target=app_write)
    waiter.start()
    try:
        time.sleep(1.5)
        with create_engine(env.url).connect() as conn:
            reasons = throttle_reasons(conn, "trades")
        assert any("waited" in r and "trades" in r for r in reasons), reasons
    finally:
        holder.rollback()
        holder.close()
        waiter.join()
        waiter_engine.dispose()
    with create_engine(env.url).connect() as conn:
        assert throttle_reasons(conn, "trades") == []


def test_second_run_of_the_same_migration_is_refused(env):
    at_events_expand(env, rows=300)
    from data_migrations.engine import DATA_LOCK_CLASS

    with create_engine(env.url).connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:c, hashtext(:n))"), {"c": DATA_LOCK_CLASS, "n": EVENTS})
        result = run_cli("data", "run", EVENTS, env=env)
        assert result.returncode == 1
        assert f"data migration {EVENTS} is already running" in result.stderr
    assert scalar(env, "SELECT count(*) FROM events WHERE payload IS NOT NULL") == 0


def test_a_lost_lock_stops_the_run_and_no_second_runner_overlaps_it(make_database):
    """Kill the connection holding the migration's lock mid-run; a second runner takes the lock at once."""
    from data_migrations.engine import DATA_LOCK_CLASS
    from data_migrations.engine.lock import LostLock

    reference, victim = make_database(), make_database()
    for e in (reference, victim):
        at_events_expand(e, rows=8_000)
    assert engine.run(reference.url, EVENTS).status == "finished"
    stopped: list[BaseException] = []

    def first_runner() -> None:
        try:
            engine.run(victim.url, EVENTS, small_batches(100))
        except DataMigrationFailed as exc:
            stopped.append(exc)

    runner = threading.Thread(target=first_runner)
    runner.start()
    _wait_for(lambda: _progress(victim) > 500)
    lock_pid = scalar(
        victim,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :c",
        c=DATA_LOCK_CLASS,
    )
    execute(victim, "SELECT pg_terminate_backend(:p)", p=lock_pid)
    second = run_cli(
        "data", "run", EVENTS, "--batch-size", "100", env=victim
    )  # takes the lock that was freed
    runner.join(60)
    assert second.returncode == 0, second.stderr
    assert len(stopped) == 1 and isinstance(stopped[0], LostLock), stopped
    assert "lost its lock" in str(stopped[0]) and f"backend pid {lock_pid}" in str(stopped[0])
    assert scalar(victim, TABLE_CHECKSUM) == scalar(reference, TABLE_CHECKSUM)
    ranges_never_overlap(victim, EVENTS)  # no committed range ran twice, whichever runner ran it
    assert scalar(
        victim, "SELECT status FROM tradedb_migrations.data_migration_state WHERE name = :n", n=EVENTS
    ) == ("finished")


def test_schema_not_ready_is_a_clear_error(env):
    seeded(env, rows=100)
    result = run_cli("data", "run", EVENTS, env=env)
    assert result.returncode == 1 and "alembic upgrade 0011" in result.stderr


# ------------------------------------------------------------------------------------------------ operators


def _progress(env) -> int:
    """Rows handled so far (0 before the state schema exists)."""
    if not scalar(env, "SELECT to_regclass('tradedb_migrations.data_migration_state') IS NOT NULL"):
        return 0
    return scalar(
        env,
        "SELECT coalesce(sum(rows_done + rows_quarantined), 0) FROM tradedb_migrations.data_migration_state",
    )


def _rows_done(env) -> int:
    return scalar(
        env,
        "SELECT rows_done + rows_quarantined FROM tradedb_migrations.data_migration_state WHERE name = :n",
        n=EVENTS,
    )


def _wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_pause_resume_and_cancel_from_another_process(env):
    at_events_expand(env, rows=20_000)
    runner = subprocess.Popen(
        [str(BIN / "tradedb"), "data", "run", EVENTS, "--batch-size", "100"],
        cwd=ROOT,
        env=cli_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: _progress(env) > 0)
        assert run_cli("data", "pause", EVENTS, env=env).returncode == 0
        time.sleep(0.5)  # the batch in flight finishes
        paused_at = _rows_done(env)
        time.sleep(1.0)
        assert _rows_done(env) == paused_at, "a paused migration kept working"
        assert runner.poll() is None, "the runner should wait while paused"
        assert run_cli("data", "resume", EVENTS, env=env).returncode == 0
        _wait_for(lambda: _rows_done(env) > paused_at)
        assert run_cli("data", "cancel", EVENTS, env=env).returncode == 0
        out, err = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 3 and "cancelled" in out
    cancelled_at = _rows_done(env)
    assert 0 < cancelled_at < 20_000
    status = json.loads(run_cli("data", "status", "--json", env=env).stdout)
    assert next(s for s in status if s["name"] == EVENTS)["status"] == "cancelled"
    result = engine.run(env.url, EVENTS)  # an explicit new run resumes from the checkpoints
    assert result.status == "finished" and result.rows_done + result.rows_quarantined == 20_000
    ranges_never_overlap(env, EVENTS)


def test_deadline_stops_cleanly_and_the_next_run_resumes(make_database):
    reference, windowed = make_database(), make_database()
    for e in (reference, windowed):
        at_events_expand(e, rows=8_000)
    engine.run(reference.url, EVENTS)
    deadline = datetime.now(UTC) + timedelta(seconds=1.0)
    # 400 batches of 20 rows take several seconds even on an idle machine, so the deadline always comes first
    first = engine.run(windowed.url, EVENTS, small_batches(20, deadline=deadline, target_seconds=0.05))
    assert first.status == "interrupted" and "deadline" in first.stop_reason
    assert datetime.now(UTC) < deadline + timedelta(seconds=1)
    part = _rows_done(windowed)
    assert 0 < part < 8_000
    second = engine.run(windowed.url, EVENTS)
    assert second.status == "finished"
    assert scalar(windowed, TABLE_CHECKSUM) == scalar(reference, TABLE_CHECKSUM)
    ranges_never_overlap(windowed, EVENTS)


# ------------------------------------------------------------------------------------------------ scale-out


def test_two_workers_cover_every_key_exactly_once(env):
    at_events_expand(env, rows=6_000)
    result = engine.run(
        env.url, EVENTS, RunOptions(workers=2, slice_keys=500, initial_batch=250, max_batch=250)
    )
    assert result.status == "finished"
    ranges = ranges_never_overlap(env, EVENTS)
    assert ranges[0][0] == 0 and ranges[-1][1] == 6_000
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False)), "a gap between ranges"
    workers = scalar(env, "SELECT count(DISTINCT worker) FROM tradedb_migrations.data_migration_batches")
    assert workers == 2
    # the worker processes' batch timings all reached the parent before it reported
    assert result.batches == len(ranges) == len(result.batch_seconds)
    assert scalar(env, "SELECT count(*) FROM events WHERE payload IS NULL") == expected_quarantine(env)
    assert current(env) == "0011"
