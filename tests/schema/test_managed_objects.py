"""Managed views, functions and triggers: what they do on a real database, and that drift, drift watch, validation
and autogenerate all see them."""

from __future__ import annotations

from tests.conftest import run_cli
from tests.helpers import execute, scalar
from tests.repo_copy import copy_repository, run_in
from tradedb import schema
from tradedb.core.db import connect_checked
from tradedb.core.objects import describe, managed_objects
from tradedb.ops import drift_watch
from tradedb.ops.validate import round_trip_problems, round_trip_snapshot

VIEW = "view open_positions_latest_signal"
FUNCTION = "function touch_position_updated_at()"
TRIGGER = "trigger trg_positions_updated_at on positions"

TRADING_DAY = """
INSERT INTO accounts (id, name, broker) VALUES (1, 'desk', 'ibkr');
INSERT INTO instruments (id, symbol, exchange, asset_class, currency, tick_size) VALUES
    (1, 'AAPL', 'NASDAQ', 'equity', 'USD', 0.01), (2, 'MSFT', 'NASDAQ', 'equity', 'USD', 0.01),
    (3, 'ES', 'CME', 'future', 'USD', 0.25);
INSERT INTO positions (id, account_id, instrument_id, quantity, avg_price, updated_at) VALUES
    (10, 1, 1, 100, 190.5, '2026-01-02T10:00:00Z'),
    (11, 1, 2, 0, 410, '2026-01-02T10:00:00Z'),
    (12, 1, 3, -2, 5000, '2026-01-02T10:00:00Z');
INSERT INTO signals (id, instrument_id, generated_at, direction, strength) VALUES
    (100, 1, '2026-01-01T09:00:00Z', 'short', 0.2),
    (101, 1, '2026-01-02T09:00:00Z', 'long', 0.9),
    (102, 1, '2025-12-30T09:00:00Z', 'short', 0.5),
    (103, 2, '2026-01-02T09:00:00Z', 'long', 0.7);
"""


def test_every_declared_object_is_parsed_once_with_its_kind():
    assert sorted(describe(o.identity) for o in managed_objects()) == sorted([VIEW, FUNCTION, TRIGGER])


def test_the_view_lists_open_positions_with_their_latest_signal(env):
    schema.upgrade(env, "head")
    execute(env, TRADING_DAY)
    with connect_checked(env) as conn:
        rows = conn.exec_driver_sql(
            "SELECT position_id, symbol, quantity, signal_id, signal_direction "
            "FROM open_positions_latest_signal ORDER BY position_id"
        ).all()
    # the flat MSFT position is not open; AAPL's newest signal wins; ES has no signal yet
    assert [tuple(r) for r in rows] == [(10, "AAPL", 100, 101, "long"), (12, "ES", -2, None, None)]


def test_the_trigger_keeps_updated_at_current_and_ignores_no_op_updates(env):
    schema.upgrade(env, "head")
    execute(env, TRADING_DAY)
    stamp = "SELECT updated_at = '2026-01-02T10:00:00Z' FROM positions WHERE id = :id"
    execute(env, "UPDATE positions SET quantity = quantity WHERE id = 10")  # nothing changes
    assert scalar(env, stamp, id=10) is True
    execute(env, "UPDATE positions SET quantity = 150, avg_price = 191 WHERE id = 10")
    assert scalar(env, stamp, id=10) is False
    assert scalar(env, "SELECT now() - updated_at < interval '1 minute' FROM positions WHERE id = 10")
    # a writer cannot backdate a change: the trigger stamps the transaction's time
    execute(env, "UPDATE positions SET quantity = 1, updated_at = '2020-01-01T00:00:00Z' WHERE id = 12")
    assert scalar(env, "SELECT updated_at > '2026-01-01' FROM positions WHERE id = 12") is True
    assert scalar(env, stamp, id=11) is True  # untouched rows keep their time


def test_drift_notices_a_missing_changed_or_extra_object(env):
    schema.upgrade(env, "head")
    assert schema.drift(env) == []
    execute(env, "DROP TRIGGER trg_positions_updated_at ON positions")
    execute(
        env, "CREATE OR REPLACE VIEW open_positions_latest_signal AS " + _view_sql().replace("<> 0", "> 0")
    )
    execute(env, "CREATE FUNCTION stray() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    assert sorted(schema.drift(env)) == [
        "function stray() is in the database but not in the code",
        f"{TRIGGER} is in the code but not in the database",
        f"{VIEW} differs from its definition in the code",
    ]
    result = run_cli("drift", env=env)
    assert result.returncode == 1 and f"{VIEW} differs from its definition in the code" in result.stderr


def test_drift_watch_behind_head_compares_objects_with_the_environments_revision(env):
    schema.upgrade(env, "0018")  # the view exists, the trigger does not yet: no drift
    assert drift_watch.watch(env).ok
    execute(env, "DROP VIEW open_positions_latest_signal")
    report = drift_watch.watch(env)
    assert report.against == "revision 0018"
    assert report.differences == [f"{VIEW} is missing from the database"]


def test_a_round_trip_that_leaves_an_object_behind_is_caught(env):
    schema.upgrade(env, "0018")
    before = round_trip_snapshot(env)
    schema.upgrade(env, "0019")
    after_up = round_trip_snapshot(env)
    assert {FUNCTION, TRIGGER} <= set(after_up) and VIEW in before
    schema.downgrade(env, "0018")
    assert round_trip_problems(before, after_up, round_trip_snapshot(env), after_up) == []
    schema.upgrade(env, "0019")
    execute(env, "DROP TRIGGER trg_positions_updated_at ON positions")  # a downgrade that forgot the function
    half_down = round_trip_snapshot(env)
    assert round_trip_problems(before, after_up, half_down, after_up) == [
        f"downgrade did not restore: {FUNCTION}"
    ]


def test_a_new_object_file_makes_autogenerate_emit_a_revision_creating_it(env, tmp_path):
    copy = copy_repository(tmp_path / "repo")
    schema.upgrade(env, "head")
    (copy / "tradedb/core/objects/strategy/latest_bias.sql").write_text(
        "-- The newest bias per instrument and timeframe.\n"
        "CREATE VIEW public.latest_bias AS SELECT DISTINCT ON (instrument_id, timeframe) instrument_id, "
        "timeframe, bias, as_of FROM public.bias ORDER BY instrument_id, timeframe, as_of DESC\n"
    )
    check = run_in(copy, "check", tool="alembic", env=env)
    assert check.returncode != 0 and "New upgrade operations detected" in check.stdout + check.stderr
    made = run_in(
        copy,
        "new",
        "revision",
        "--autogenerate",
        "--feature",
        "strategy",
        "-m",
        "Latest bias view for the desk",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    written = next(copy.glob("migrations/strategy/*_0020_*.py")).read_text()
    assert (
        "op.create_entity(public_latest_bias)" in written and "op.drop_entity(public_latest_bias)" in written
    )
    assert 'signature="latest_bias"' in written
    upgraded = run_in(copy, "upgrade", "head", tool="alembic", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert run_in(copy, "check", tool="alembic", env=env).returncode == 0


def _view_sql() -> str:
    view = next(o for o in managed_objects() if describe(o.identity) == VIEW)
    return view.definition
