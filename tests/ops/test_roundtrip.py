"""Every revision upgraded, downgraded and re-upgraded with data present (the validate command)."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from tests.conftest import run_cli
from tradedb import schema
from tradedb.ops.validate import validate


def test_validate_walks_every_revision_with_data(env):
    seen = []
    report = validate(env, rows=200, on_step=seen.append)
    assert report.ok, [s for s in report.steps if not s.ok] or report.drift
    assert [s.revision for s in report.steps] == [r.revision for r in schema.revisions()]
    engine = create_engine(env.url.set(database="postgres"))
    with engine.connect() as conn:  # the scratch database is gone
        left = conn.scalar(
            text("SELECT count(*) FROM pg_database WHERE datname LIKE :p"),
            {"p": f"{env.url.database}_validate%"},
        )
    engine.dispose()
    assert left == 0


def test_validate_script_is_the_same_command(env):
    result = run_cli("scripts/validate_migrations.py", env=env, tool="python")
    assert result.returncode == 0, result.stderr
    assert "All 19 migrations validated successfully" in result.stdout  # 0001-0019, each up, down, up
