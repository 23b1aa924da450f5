"""Data migrations side by side on real PostgreSQL: different tables overlap in time, one table never does, and
every migration still finishes exactly. The overlap is read back from the batch history, not assumed."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from data_migrations.base import DataMigration, SqlStep
from data_migrations.engine import RunOptions
from data_migrations.engine.side_by_side import run_side_by_side
from tests.conftest import run_cli
from tests.helpers import execute, seeded
from tradedb import schema

ROWS = 400
NAP = "WITH nap AS (SELECT pg_sleep(0.02))"  # each batch takes at least 20 ms: long enough to overlap


def lane_migration(name: str, table: str, column: str) -> DataMigration:
    return DataMigration(
        name=f"common.{name}",
        after="0001",
        table=table,
        description=f"test: fill {table}.{column}",
        pending_where=f"t.{column} IS NULL",
        step=SqlStep(
            update_sql=f"{NAP} UPDATE {table} SET {column} = id * 2 FROM nap "
            f"WHERE id > :lo AND id <= :hi AND {column} IS NULL"
        ),
    )


def spans(env, names: list[str]) -> dict[str, tuple]:
    """Each migration's first batch start and last batch end, from the batch history."""
    with create_engine(env.url).connect() as conn:
        rows = conn.execute(
            text(
                """SELECT name, min(finished_at - make_interval(secs => seconds)) AS began, max(finished_at) AS ended
                   FROM tradedb_migrations.data_migration_batches WHERE name = ANY(:names) GROUP BY name"""
            ),
            {"names": names},
        )
        return {r.name: (r.began, r.ended) for r in rows}


def overlap_seconds(a: tuple, b: tuple) -> float:
    return (min(a[1], b[1]) - max(a[0], b[0])).total_seconds()


def test_different_tables_overlap_and_one_table_never_does(env):
    schema.upgrade(env, "0001")
    for table in ("lane_a", "lane_b"):
        execute(env, f"CREATE TABLE {table} (id bigint PRIMARY KEY, first int, second int)")
        execute(env, f"INSERT INTO {table} (id) SELECT generate_series(1, {ROWS})")
    a_first = lane_migration("a_first", "lane_a", "first")
    a_second = lane_migration("a_second", "lane_a", "second")
    b_first = lane_migration("b_first", "lane_b", "first")

    outcomes = run_side_by_side(
        env.url,
        [a_first, a_second, b_first],
        parallel=2,
        options_for=lambda m: RunOptions(initial_batch=20, min_batch=20, max_batch=20, throttle=False),
    )

    assert {name: o.status for name, o in outcomes.items()} == dict.fromkeys(outcomes, "finished")
    assert all(o.rows_done == o.source_rows == ROWS and o.rows_quarantined == 0 for o in outcomes.values())
    s = spans(env, list(outcomes))
    print(
        f"overlap a_first/b_first {overlap_seconds(s[a_first.name], s[b_first.name]):.2f}s, "
        f"a_first/a_second {overlap_seconds(s[a_first.name], s[a_second.name]):.2f}s"
    )
    assert overlap_seconds(s[a_first.name], s[b_first.name]) > 0.1  # side by side
    assert overlap_seconds(s[a_first.name], s[a_second.name]) < 0  # one after the other on lane_a
    for table in ("lane_a", "lane_b"):
        with create_engine(env.url).connect() as conn:
            wrong = conn.scalar(
                text(
                    f"SELECT count(*) FROM {table} WHERE first IS DISTINCT FROM id * 2 "
                    f"OR (second IS DISTINCT FROM id * 2 AND '{table}' = 'lane_a')"
                )
            )
        assert wrong == 0


def test_tradedb_data_run_all_parallel_runs_the_apps_migrations_side_by_side(env):
    seeded(env, rows=4_000, to="0012")  # every expand applied: all four data migrations are pending at once
    result = run_cli("data", "run", "--all", "--parallel", "2", "--batch-size", "100", env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    names = [
        "execution.backfill_trade_notional",
        "setups.parse_ticker_setup_levels",
        "events.normalise_event_payload",
        "discord.split_alert_types",
    ]
    with create_engine(env.url).connect() as conn:
        states = {
            r.name: r
            for r in conn.execute(
                text(
                    "SELECT name, status, source_rows, rows_done, rows_quarantined FROM tradedb_migrations.data_migration_state"
                )
            )
        }
    assert {n: states[n].status for n in names} == dict.fromkeys(names, "finished")
    assert all(states[n].rows_done + states[n].rows_quarantined == states[n].source_rows for n in names)
    s = spans(env, names)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    print({f"{a} / {b}": round(overlap_seconds(s[a], s[b]), 2) for a, b in pairs})
    assert max(overlap_seconds(s[a], s[b]) for a, b in pairs) > 0  # at least two ran at the same time
    for name in names:
        assert f"finished {name}" in result.stdout.replace("\n", " ")
