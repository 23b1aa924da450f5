"""requires_data: contract revisions refuse while rows still need their data migration, from plain alembic too."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.conftest import run_cli
from tests.helpers import current, scalar, seeded
from tradedb import schema
from tradedb.core.db import connect_checked
from tradedb.core.errors import DataMigrationPending
from tradedb.schema import ledger


def test_empty_database_is_never_blocked(env):
    schema.upgrade(env, "head")
    assert current(env) == schema.head()


def test_plain_alembic_refuses_the_contract_and_keeps_the_expand_steps(env):
    seeded(env)
    result = run_cli("upgrade", "head", env=env, tool="alembic")
    assert result.returncode != 0
    failed = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1 and "execution.backfill_trade_notional" in failed[0]
    assert "tradedb data run execution.backfill_trade_notional" in failed[0]
    assert "Traceback" not in result.stderr
    assert current(env) == "0012"  # every revision before the contract committed; the contract did not start
    assert scalar(env, "SELECT count(*) FROM trades WHERE notional IS NULL") > 0


def test_the_guard_raises_from_code_too(env):
    seeded(env, to="0012")
    with pytest.raises(DataMigrationPending, match="execution.backfill_trade_notional"):
        schema.upgrade(env, "0013")
    assert current(env) == "0012"


def test_finalize_data_runs_pending_migrations_inline(env):
    seeded(env)
    result = run_cli("-x", "finalize_data=true", "upgrade", "head", env=env, tool="alembic")
    assert result.returncode == 0, result.stderr
    assert current(env) == schema.head()
    assert scalar(env, "SELECT count(*) FROM trades WHERE notional IS NULL") == 0
    assert (
        scalar(
            env,
            "SELECT count(*) FROM tradedb_migrations.quarantine WHERE migration = 'setups.parse_ticker_setup_levels'",
        )
        > 0
    )
    with connect_checked(env) as conn:
        inline = [e for e in ledger.entries(conn) if e["kind"] == "data"]
    assert inline and {(e["environment"], e["launched_by"].split(":")[0]) for e in inline} == {
        (env.name, "alembic")
    }


def test_a_rollback_gives_quarantined_rows_their_original_text_back(env):
    """Downgrading a contract rebuilds the legacy column from typed data; quarantined rows have none, so their
    original comes back from the quarantine before a further downgrade resets it (found by the rehearsal)."""
    seeded(env, rows=300)
    with connect_checked(env) as conn:
        originals = dict(conn.execute(text("SELECT id, payload_raw FROM events")).all())
    assert run_cli("-x", "finalize_data=true", "upgrade", "head", env=env, tool="alembic").returncode == 0
    with connect_checked(env) as conn:
        quarantined = list(
            conn.scalars(
                text("SELECT row_key FROM tradedb_migrations.quarantine WHERE migration = :m"),
                {"m": "events.normalise_event_payload"},
            )
        )
    assert quarantined
    assert run_cli("downgrade", "0006", env=env, tool="alembic").returncode == 0
    with connect_checked(env) as conn:
        back = dict(conn.execute(text("SELECT id, payload_raw FROM events")).all())
    assert {k: back[k] for k in quarantined} == {k: originals[k] for k in quarantined}
