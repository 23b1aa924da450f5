"""The ledger records every step from every entry point: plain alembic, the CLI, Dagster; and edited revisions."""

from __future__ import annotations

import json

from tests.conftest import run_cli
from tests.helpers import execute, ledger_entry, seeded
from tradedb import schema
from tradedb.core.db import connect_checked
from tradedb.schema import ledger


def rows(env, **where) -> list[dict]:
    with connect_checked(env) as conn:
        out = ledger.entries(conn)
    return [r for r in out if all(r[k] == v for k, v in where.items())]


def test_plain_alembic_upgrade_downgrade_and_stamp_are_recorded(env):
    result = run_cli("upgrade", "0003", env=env, tool="alembic")
    assert result.returncode == 0, result.stderr
    ups = rows(env, kind="schema", direction="upgrade")
    assert [r["name"] for r in ups] == ["0001", "0002", "0003"]
    first = ups[0]
    assert first["launched_by"].startswith("alembic:") and first["run_id"] is None
    assert first["outcome"] == "success" and first["environment"] == "dev"
    assert first["file_checksum"] == ledger.file_checksum("0001")
    assert first["db_size_after"] > 0 and first["db_size_before"] > 0 and first["duration_s"] >= 0
    assert first["detail"] == {"from": "base", "to": "0001"}

    assert run_cli("downgrade", "-1", env=env, tool="alembic").returncode == 0
    down = rows(env, direction="downgrade")
    assert [(r["name"], r["outcome"], r["detail"]["to"]) for r in down] == [("0003", "success", "0002")]

    assert run_cli("stamp", "0003", env=env, tool="alembic").returncode == 0
    assert [r["name"] for r in rows(env, direction="stamp")] == ["0003"]


def test_a_refused_contract_revision_is_recorded_as_a_failure_and_nothing_else_changes(env):
    seeded(env, rows=200, to="0012")
    before = len(rows(env))
    result = run_cli("upgrade", "0013", env=env, tool="alembic")
    assert result.returncode != 0
    failed = rows(env, outcome="failure")
    assert len(failed) == 1 and len(rows(env)) == before + 1
    assert failed[0]["name"] == "0013" and failed[0]["direction"] == "upgrade"
    assert "still pending" in failed[0]["error"]
    assert schema.current_revision(env) == "0012"


def test_cli_data_run_records_rows_touched_and_who(env):
    seeded(env, rows=300, to="0008")
    result = run_cli("data", "run", "execution.backfill_trade_notional", env=env)
    assert result.returncode == 0, result.stderr
    (run,) = rows(env, kind="data")
    assert run["direction"] == "run" and run["outcome"] == "success"
    assert run["launched_by"].startswith("cli:") and run["rows_touched"] > 0
    assert run["detail"]["status"] == "finished"
    # running it again finds nothing left: a second row that touched nothing
    assert run_cli("data", "run", "execution.backfill_trade_notional", env=env).returncode == 0
    assert [r["rows_touched"] for r in rows(env, kind="data")] == [run["rows_touched"], 0]


def test_schema_upgrades_from_our_code_are_named_cli(env):
    seeded(env, rows=50)
    assert {r["launched_by"].split(":")[0] for r in rows(env, kind="schema")} == {"cli"}


def test_an_applied_revision_edited_afterwards_is_reported(env):
    schema.upgrade(env, "0005")
    assert run_cli("check", env=env).returncode == 1  # behind head, but nothing edited yet
    assert json.loads(run_cli("status", "--json", env=env).stdout)["edited_revisions"] == []
    # the database ran a file whose checksum differs from the code now: as if 0004 was edited after applying
    execute(env, "UPDATE tradedb_migrations.ledger SET file_checksum = 'edited' WHERE name = '0004'")
    report = json.loads(run_cli("status", "--json", env=env).stdout)
    assert len(report["edited_revisions"]) == 1 and "revision 0004" in report["edited_revisions"][0]
    result = run_cli("check", env=env)
    assert result.returncode == 1 and "edited after it was applied" in " ".join(result.stderr.split())


def test_plain_alembic_lock_timeout_is_one_line_and_recorded(env):
    """An app transaction holds instruments: 0007 gives up after lock_timeout with one FAILED line."""
    from sqlalchemy import create_engine, text

    schema.upgrade(env, "0006")
    app = create_engine(env.url)
    try:
        with app.begin() as conn:
            conn.execute(text("LOCK TABLE instruments IN ACCESS SHARE MODE"))
            result = run_cli("-x", "lock_timeout=200ms", "upgrade", "0007", env=env, tool="alembic")
    finally:
        app.dispose()
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = [x for x in (result.stdout + result.stderr).splitlines() if x.startswith("FAILED:")]
    assert "revision 0007 (upgrade)" in line and "lock_timeout 200ms" in line and "on instruments" in line
    (failed,) = rows(env, outcome="failure")
    assert failed["name"] == "0007" and "lock timeout" in failed["error"]
    assert schema.current_revision(env) == "0006"


def test_a_ledger_that_cannot_be_written_never_fails_the_migration(env):
    schema.upgrade(env, "0001")
    execute(
        env,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no'; END $$;"
        "CREATE TRIGGER refuse BEFORE INSERT ON tradedb_migrations.ledger FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    result = run_cli("upgrade", "0003", env=env, tool="alembic")
    assert result.returncode == 0, result.stderr
    assert schema.current_revision(env) == "0003"
    assert "could not record" in result.stderr


def test_ledger_details_never_hold_a_password(env):
    schema.upgrade(env, "0001")
    entry = ledger_entry(
        "override",
        "maintenance_window",
        environment="production",
        launched_by="cli:test",
        detail={
            "reason": "from postgresql://ops:hunter2secret@db/prod",
            "nested": ["password=hunter2secret"],
        },
    )
    with connect_checked(env) as conn:
        ledger.record(conn, entry)
    (row,) = rows(env, kind="override")
    assert "hunter2secret" not in json.dumps(row["detail"])
