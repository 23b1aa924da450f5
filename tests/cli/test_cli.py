"""The tradedb CLI and the strategy's scripts against real databases, including every kind of bad input."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import MetaData

from tests.conftest import run_cli
from tests.helpers import current, execute, scalar, seeded
from tradedb import schema
from tradedb.core.models import metadata


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_status_json_lists_pending_with_feature_ticket_and_impact(env):
    seeded(env, rows=100)
    result = run_cli("status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["current"] == "0006" and report["head"] == schema.head()
    first = report["pending"][0]
    assert first["revision"] == "0007" and first["feature"] == "common" and first["ticket"] == "TRD-131"
    assert first["data_impact"]
    assert {d["name"] for d in report["data_migrations"]} >= {"execution.backfill_trade_notional"}


def test_status_human_output(env):
    seeded(env, rows=100)
    result = run_cli("status", env=env)
    assert result.returncode == 0
    assert "pending revision" in result.stdout and "TRD-412" in result.stdout


def test_check_exit_codes_and_the_script(env):
    result = run_cli("check", env=env)
    assert result.returncode == 1 and "pending migrations" in result.stderr
    result = run_cli("scripts/check_migrations.py", env=env, tool="python")
    assert result.returncode == 1 and "Head: " + schema.head() in result.stderr
    schema.upgrade(env, "head")
    assert run_cli("check", env=env).returncode == 0
    result = run_cli("scripts/check_migrations.py", env=env, tool="python")
    assert result.returncode == 0 and "up to date" in result.stdout


def test_drift_catches_a_manual_alter_table(env):
    schema.upgrade(env, "head")
    assert run_cli("drift", env=env).returncode == 0
    execute(env, "ALTER TABLE trades ADD COLUMN hotfix_note text")
    result = run_cli("drift", env=env)
    assert result.returncode == 1
    assert "column trades.hotfix_note is in the database but not in the models" in result.stderr


def test_drift_catches_a_model_change_without_a_migration(env):
    schema.upgrade(env, "head")
    changed = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    from sqlalchemy import Column, Integer

    changed.tables["positions"].append_column(Column("realised_pnl", Integer, nullable=True))
    lines = schema.drift(env, metadata=changed)
    assert lines == ["column positions.realised_pnl is in the models but not in the database"]


def test_seed_is_deterministic_and_refuses_a_database_with_tables(make_database):
    a, b = make_database(), make_database()
    for e in (a, b):
        assert run_cli("seed", "--rows", "300", "--seed", "9", env=e).returncode == 0
    checksum = "SELECT md5(string_agg(({})::text, ',' ORDER BY id)) FROM {} t"
    for table, row in (
        ("trades", "t"),
        ("events", "t"),
        ("orders", "t"),
        ("ticker_setups", "t.id, t.levels"),
        ("alert_subscriptions", "t.id, t.alert_types"),
    ):  # created_at defaults to now()
        assert scalar(a, checksum.format(row, table)) == scalar(b, checksum.format(row, table)), table
    assert scalar(a, "SELECT count(*) FROM trades") == 300
    result = run_cli("seed", "--rows", "50", env=a)
    assert result.returncode == 1 and "--reset" in one_error_line(result)
    assert scalar(a, "SELECT count(*) FROM trades") == 300  # nothing changed
    assert run_cli("seed", "--rows", "50", "--reset", env=a).returncode == 0
    assert scalar(a, "SELECT count(*) FROM trades") == 50


def test_seed_holds_the_legacy_shapes_and_malformed_values(env):
    seeded(env, rows=500)
    assert scalar(env, "SELECT count(*) FROM ticker_setups WHERE levels !~* '^\\s*(entry|stop|target)'") > 0
    assert scalar(env, "SELECT count(*) FROM ticker_setups WHERE levels LIKE 'ENTRY = %'") > 0
    assert scalar(env, "SELECT count(*) FROM alert_subscriptions WHERE alert_types LIKE '%moon%'") > 0
    assert scalar(env, "SELECT count(*) FROM events WHERE payload_raw LIKE '%\"px\"%'") > 0


def test_environment_selection_by_variable_flag_and_config_file(make_database, tmp_path):
    dev, staging = make_database("dev"), make_database("staging")
    urls = {
        "TRADEDB_DEV_URL": dev.url.render_as_string(False),
        "TRADEDB_STAGING_URL": staging.url.render_as_string(False),
    }
    assert (
        run_cli("upgrade", "0003", tool="alembic", extra={**urls, "TRADEDB_ENV": "staging"}).returncode == 0
    )
    assert current(staging) == "0003" and current(dev) is None
    assert run_cli("-x", "env=dev", "upgrade", "0002", tool="alembic", extra=urls).returncode == 0
    assert current(dev) == "0002" and current(staging) == "0003"
    config = tmp_path / "tradedb.toml"
    config.write_text(f'[environments.production]\nurl = "{dev.url.render_as_string(False)}"\n')
    result = run_cli("status", "--env", "production", "--json", extra={"TRADEDB_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["current"] == "0002"


def test_unknown_environment(env):
    for result in (
        run_cli("status", "--env", "prod", env=env),
        run_cli("current", tool="alembic", extra={"TRADEDB_ENV": "prod"}),
    ):
        assert result.returncode != 0
        assert (
            "unknown environment 'prod'" in one_error_line(result)
            or "unknown environment 'prod'" in result.stderr
        )


def test_unknown_revision_changes_nothing(env):
    schema.upgrade(env, "0005")
    result = run_cli("upgrade", "nosuchrev", env=env, tool="alembic")
    assert result.returncode != 0 and "nosuchrev" in result.stderr and "Traceback" not in result.stderr
    assert current(env) == "0005"


def test_unreachable_database_never_shows_the_password():
    extra = {"TRADEDB_STAGING_URL": "postgresql://trader:hunter2secret@127.0.0.1:1/trading"}
    for args, tool in (
        (("status", "--env", "staging"), "tradedb"),
        (("-x", "env=staging", "upgrade", "head"), "alembic"),
    ):
        result = run_cli(*args, tool=tool, extra=extra)
        assert result.returncode != 0
        assert "cannot reach the staging database" in result.stderr
        assert "hunter2secret" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_malformed_config_and_url(tmp_path):
    bad = tmp_path / "tradedb.toml"
    bad.write_text("[environments.staging\nurl = ")
    result = run_cli("status", "--env", "staging", extra={"TRADEDB_CONFIG": str(bad)})
    assert result.returncode == 1 and "malformed config file" in one_error_line(result)
    bad.write_text('[environments.qa]\nurl = "postgresql://x@y/z"\n')
    result = run_cli("status", "--env", "staging", extra={"TRADEDB_CONFIG": str(bad)})
    assert "unknown environment [environments.qa]" in one_error_line(result)
    result = run_cli(
        "check", "--env", "staging", extra={"TRADEDB_STAGING_URL": "mysql://root:pw@localhost/x"}
    )
    assert result.returncode == 1 and "not PostgreSQL" in one_error_line(result)


def test_second_concurrent_migration_is_refused(env):
    from sqlalchemy import create_engine, text

    from tradedb.schema.locks import LOCK_KEY

    engine = create_engine(env.url)
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
        holder.commit()
        result = run_cli("upgrade", "head", env=env, tool="alembic")
        assert result.returncode != 0
        assert "another migration is running on the dev database" in result.stderr
        assert current(env) is None
    engine.dispose()


def test_embedded_server_is_the_default(tmp_path):
    """No URL configured: the embedded PostgreSQL starts on demand in the state folder, one database per env."""
    extra = {"TRADEDB_STATE_DIR": str(tmp_path / "state")}
    result = run_cli("upgrade", "0002", tool="alembic", extra={**extra, "TRADEDB_ENV": "staging"})
    assert result.returncode == 0, result.stderr
    result = run_cli("status", "--env", "staging", "--json", extra=extra)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["current"] == "0002" and "tradedb_staging" in report["url"]
    assert json.loads(run_cli("status", "--env", "dev", "--json", extra=extra).stdout)["current"] is None
    from tradedb.core.embedded import stop_server

    assert stop_server(tmp_path / "state" / "pgdata")


def test_a_duration_too_large_is_one_clear_error():
    from tradedb.cli.base import parse_time
    from tradedb.core.errors import TradeDBError

    with pytest.raises(TradeDBError, match="--since '9999999999d' is too far away"):
        parse_time("9999999999d", option="--since", ago=True)
    result = run_cli("report", "--since", "9999999999d")
    assert result.returncode == 1 and "too far away" in result.stderr and "Traceback" not in result.stderr
