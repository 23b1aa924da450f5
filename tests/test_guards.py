"""requires_data: contract revisions refuse while rows still need their data migration, from plain alembic too."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.helpers import current, scalar, seeded
from tradedb import schema
from tradedb.errors import DataMigrationPending


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
