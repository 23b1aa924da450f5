"""A deploy with ``--parallel 2`` on real Dagster and PostgreSQL: data migrations on different tables run side by
side (their batch histories overlap), schema steps stay one at a time (their ledger rows never overlap), the run's
own process holds the migration lock for every step, and every migration finishes exactly (its checks pass)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import run_cli
from tests.helpers import current, seeded
from tradedb import schema

DATA = [
    "execution.backfill_trade_notional",
    "setups.parse_ticker_setup_levels",
    "events.normalise_event_payload",
    "discord.split_alert_types",
]


def intervals(env, sql: str) -> dict[str, tuple]:
    with create_engine(env.url).connect() as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(text(sql))}


def overlap(a: tuple, b: tuple) -> float:
    return (min(a[1], b[1]) - max(a[0], b[0])).total_seconds()


@pytest.mark.slow
def test_a_parallel_deploy_runs_data_migrations_side_by_side(env, tmp_path):
    """Big enough (60,000 rows) that a data migration outlasts the steps started after it."""
    seeded(env, rows=60_000, to="0012")  # every expand applied: the four data migrations are ready early
    result = run_cli(
        "deploy", "--parallel", "2", env=env, extra={"DAGSTER_HOME": str(tmp_path / "dh")}, timeout=900
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "migration lock held by the run for its steps" in out
    assert current(env) == schema.head()
    assert "checks: " in out and ", 0 failed" in out  # completeness, quarantine, invariants: each exact
    with create_engine(env.url).connect() as conn:
        states = conn.execute(
            text(
                "SELECT name, status, source_rows, rows_done, rows_quarantined FROM tradedb_migrations.data_migration_state"
            )
        ).all()
    assert {r.name: r.status for r in states} == dict.fromkeys(DATA, "finished")
    assert all(r.rows_done + r.rows_quarantined == r.source_rows for r in states)
    data = intervals(
        env,
        """SELECT name, min(finished_at - make_interval(secs => seconds)), max(finished_at)
           FROM tradedb_migrations.data_migration_batches GROUP BY name""",
    )
    pairs = [(x, y) for i, x in enumerate(DATA) for y in DATA[i + 1 :]]
    assert max(overlap(data[x], data[y]) for x, y in pairs) > 0, data  # at least two side by side
    steps = sorted(
        intervals(
            env,
            """SELECT name, started_at, finished_at FROM tradedb_migrations.ledger
               WHERE kind = 'schema' AND direction = 'upgrade' AND outcome = 'success'""",
        ).values()
    )
    assert all(later[0] >= earlier[1] for earlier, later in zip(steps, steps[1:], strict=False)), steps
