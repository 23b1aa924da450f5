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


def side_by_side(a: tuple, b: tuple) -> float:
    """The share of the shorter of two spans that ran while the other did (1.0: wholly inside it)."""
    shorter = min((a[1] - a[0]).total_seconds(), (b[1] - b[0]).total_seconds())
    return round(max(0.0, overlap(a, b)) / shorter, 2) if shorter > 0 else 0.0


@pytest.mark.slow
def test_a_parallel_deploy_runs_data_migrations_side_by_side(env, tmp_path):
    """Batches capped at 50 rows, so a data migration of 20,000 rows outlasts the steps started after it."""
    seeded(env, rows=20_000, to="0012")  # every expand applied: the four data migrations are ready early
    config = tmp_path / "tradedb.toml"
    config.write_text("[data_migrations]\nmax_batch = 50\n")
    extra = {"DAGSTER_HOME": str(tmp_path / "dh"), "TRADEDB_CONFIG": str(config)}
    result = run_cli("deploy", "--parallel", "2", env=env, extra=extra, timeout=900)
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
    shared = {f"{x} / {y}": side_by_side(data[x], data[y]) for x, y in pairs}
    print(shared, {k: (str(a.time()), str(b.time())) for k, (a, b) in data.items()})
    assert max(shared.values()) >= 0.5, shared  # at least two ran side by side for most of the shorter one
    steps = sorted(
        intervals(
            env,
            """SELECT name, started_at, finished_at FROM tradedb_migrations.ledger
               WHERE kind = 'schema' AND direction = 'upgrade' AND outcome = 'success'""",
        ).values()
    )
    assert all(later[0] >= earlier[1] for earlier, later in zip(steps, steps[1:], strict=False)), steps
