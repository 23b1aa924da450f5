"""The schema history: its shape, its documentation, and the strategy document's alembic commands, literally."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from tests.conftest import ROOT, run_cli
from tests.helpers import current
from tradedb import schema
from tradedb.core.features import FEATURES


def test_history_is_one_line_of_documented_revisions_across_all_features():
    revisions = schema.revisions()
    assert len(revisions) >= 12
    assert {r.feature for r in revisions} == set(FEATURES)
    assert schema.head() == revisions[-1].revision
    for r in revisions:
        assert r.ticket.startswith("TRD-"), r.revision
        assert r.data_impact and "TODO" not in r.data_impact, r.revision
        assert r.rollback_notes and "TODO" not in r.rollback_notes, r.revision
        assert r.message, r.revision


def test_contract_revisions_declare_and_enforce_their_data_migrations():
    import data_migrations

    contracts = [r for r in schema.revisions() if r.requires_data]
    assert len(contracts) >= 3
    for r in contracts:
        for name in r.requires_data:
            migration = data_migrations.get(name)
            order = [x.revision for x in schema.revisions()]
            assert order.index(migration.after) < order.index(r.revision)
        tree = ast.parse((ROOT / r.path).read_text())
        upgrade = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade")
        first = upgrade.body[0]
        assert isinstance(first, ast.Expr) and first.value.func.id == "require_data_migrations", r.revision


def test_template_asks_for_the_documentation_fields():
    template = (ROOT / "migrations" / "script.py.mako").read_text()
    for field in ("ticket", "data_impact", "rollback_notes", "requires_data", "preserves_data"):
        assert f"{field}:" in template


def test_strategy_commands_work_literally(env):
    def alembic(*args):
        result = run_cli(*args, env=env, tool="alembic")
        assert result.returncode == 0, result.stderr
        return result.stdout + result.stderr

    head = schema.head()
    alembic("upgrade", "head")
    assert current(env) == head
    assert head in alembic("current")
    assert "0001" in alembic("history")
    assert "Contract" in alembic("show", "0013")
    alembic("downgrade", "-1")
    assert current(env) == schema.revisions()[-2].revision
    alembic("downgrade", "0008")
    assert current(env) == "0008"
    alembic("upgrade", "0010")
    assert current(env) == "0010"
    alembic("stamp", "0011")
    assert current(env) == "0011"
    alembic("stamp", "0010")
    alembic("upgrade", "head")
    assert "No new upgrade operations detected" in alembic("check")


def test_offline_sql_needs_no_database_and_renders_the_guards():
    result = run_cli(
        "upgrade",
        "head",
        "--sql",
        tool="alembic",
        extra={"TRADEDB_DEV_URL": "postgresql://nobody:secret@127.0.0.1:1/none"},
    )
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE accounts" in result.stdout
    assert (
        "RAISE EXCEPTION 'data migration execution.backfill_trade_notional has rows pending" in result.stdout
    )
    assert "CREATE INDEX CONCURRENTLY" in result.stdout


def copy_project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    shutil.copytree(
        ROOT / "migrations", tmp_path / "migrations", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def test_revision_autogenerate_and_merge_in_a_copy(env, tmp_path):
    """`alembic revision [--autogenerate]` and `alembic merge` write files: run them on a copy of the history."""
    import subprocess

    from tests.conftest import BIN, cli_env

    project = copy_project(tmp_path)

    def alembic(*args):
        result = subprocess.run(
            [str(BIN / "alembic"), *args],
            cwd=project,
            env=cli_env(env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout + result.stderr

    alembic("upgrade", "head")
    out = alembic("-x", "feature=discord", "revision", "--autogenerate", "-m", "Nothing changed")
    created = next(project.glob("migrations/*/*nothing_changed.py"))
    assert created.parent.name == "discord" and "Generating" in out
    assert 'ticket: str = "TODO-000"' in created.read_text()  # the template asks for the documentation
    alembic("revision", "-m", "Data migration description")
    second = next(project.glob("migrations/*/*data_migration_description.py"))
    assert second.parent.name == "discord"  # a plain revision goes beside the current head
    alembic(
        "revision",
        "-m",
        "Branch one",
        "--head",
        "0017",
        "--splice",
        "--version-path",
        str(project / "migrations/discord"),
    )
    alembic(
        "revision",
        "-m",
        "Branch two",
        "--head",
        "0017",
        "--splice",
        "--version-path",
        str(project / "migrations/events"),
    )
    assert len(alembic("heads").strip().splitlines()) >= 2
    alembic("merge", "heads", "-m", "Merge branches")
    assert len(alembic("heads").strip().splitlines()) == 1
