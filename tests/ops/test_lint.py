"""Migration lint: squawk on each revision's own SQL, acknowledgements, documentation standards, CLI, metadata.

Squawk runs for real everywhere (it is a dev dependency); no database is needed, linting is offline.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT, run_cli
from tradedb import schema
from tradedb.core.errors import TradeDBError
from tradedb.ops import lint
from tradedb.schema import history as revisions_module

UNSAFE_SQL = "BEGIN;\n\nALTER TABLE trades ADD COLUMN x int NOT NULL DEFAULT 1;\n\nCREATE INDEX i ON trades(x);\n\nCOMMIT;\n"
REASON = "trades is empty in this revision's environment, so the build is instant"


def info(revision: str = "0008", **changes) -> schema.RevisionInfo:
    base = next(r for r in schema.revisions() if r.revision == revision)
    return replace(base, **changes)


def unsafe_findings() -> list[lint.Finding]:
    return lint.run_squawk({"x": UNSAFE_SQL})["x"]


# ------------------------------------------------------------------------------------------------ the repository


def test_every_revision_in_the_repository_lints_clean():
    """The CI gate: a new finding, a missing reason or missing documentation fails here."""
    results = lint.lint_all()
    assert [r.revision for r in results] == [r.revision for r in schema.revisions()]
    failing = {r.revision: [(f.rule, f.message) for f in r.failing] for r in results if not r.ok}
    assert not failing, failing
    stale = {r.revision: [f.rule for f in r.stale] for r in results if r.stale}
    if stale:  # a warning, as in `tradedb lint`: fixing the SQL (or env.py) must never break CI
        warnings.warn(f"stale lint acknowledgements to remove: {stale}", stacklevel=1)
    assert all(f.reason for r in results for f in r.acknowledged)


def test_every_data_migration_in_the_repository_is_documented():
    import data_migrations
    from tradedb.ops import data_lint

    results = data_lint.lint_data_migrations()
    assert [r.revision for r in results] == list(data_migrations.registry())
    assert all(r.ok for r in results), {
        r.revision: [f.message for f in r.failing] for r in results if not r.ok
    }


def test_a_data_migration_without_a_ticket_or_with_a_placeholder_description_fails():
    import data_migrations
    from tradedb.ops import data_lint

    m = data_migrations.get("execution.backfill_trade_notional")
    lacking = data_lint.lint_data_migration(
        replace(m, description="TODO: say what this does\n\nNo ticket here.")
    )
    assert {f.rule for f in lacking.failing} == {lint.DOC_DESCRIPTION, lint.DOC_TICKET}
    placeholder = data_lint.lint_data_migration(
        replace(m, description="Backfill the notional of old trades (TRD-0).")
    )
    assert {f.rule for f in placeholder.failing} == {lint.DOC_TICKET}


def test_each_revision_is_linted_alone_and_alembic_bookkeeping_is_skipped():
    by_rev = lint.lint_by_revision()
    # 0002 creates events and indexes it in the same file: squawk knows the table is new (no concurrent-index rule)
    assert "require-concurrent-index-creation" not in {f.rule for f in by_rev["0002"].findings}
    # 0007 indexes instruments, created by 0001: rendered alone, the table reads as existing
    assert "require-concurrent-index-creation" in {f.rule for f in by_rev["0007"].findings}
    # 0001's rendering starts with Alembic's CREATE TABLE alembic_version: not the revision's SQL
    assert not [f for f in by_rev["0001"].findings if "version_num" in f.sql]
    # 0017's CONCURRENTLY index runs in its autocommit block, outside Alembic's transactions: not reported
    assert "ban-concurrent-index-creation-in-transaction" not in {f.rule for f in by_rev["0017"].findings}


# ------------------------------------------------------------------------------------------------ squawk


def test_squawk_finds_unsafe_statements_with_their_line_and_sql():
    findings = unsafe_findings()
    by_rule = {f.rule: f for f in findings}
    assert "require-concurrent-index-creation" in by_rule
    index = by_rule["require-concurrent-index-creation"]
    assert index.line == 5 and index.sql == "CREATE INDEX i ON trades(x);"
    assert index.status == lint.FAILING and index.level == "warning" and index.help


def test_a_concurrent_index_inside_a_transaction_is_reported():
    """What a revision gets when it forgets ``autocommit_block()`` around CREATE INDEX CONCURRENTLY."""
    sql = "BEGIN;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ix ON orders (account_id);\nCOMMIT;\n"
    rules = {f.rule for f in lint.run_squawk({"r": sql})["r"]}
    assert "ban-concurrent-index-creation-in-transaction" in rules


def test_one_squawk_run_keeps_each_revision_apart():
    found = lint.run_squawk({"bad": UNSAFE_SQL, "good": "SELECT 1;\n"})
    assert found["good"] == [] and found["bad"]


# ------------------------------------------------------------------------------------------------ acknowledgements


def test_an_unacknowledged_finding_fails():
    result = lint.assess(info(lint_acknowledged={}), unsafe_findings())
    assert not result.ok
    assert "require-concurrent-index-creation" in {f.rule for f in result.failing}
    assert result.summary.startswith(f"{len(result.failing)} failing")


def test_acknowledged_findings_pass_with_their_reason():
    findings = unsafe_findings()
    acks = {rule: REASON for rule in {f.rule for f in findings}}
    result = lint.assess(info(lint_acknowledged=acks), findings)
    assert result.ok and not result.stale
    assert len(result.acknowledged) == len(findings)
    assert {f.reason for f in result.acknowledged} == {REASON}
    assert result.summary == f"{len(findings)} acknowledged"
    assert "| require-concurrent-index-creation | acknowledged | 5 |" in result.markdown()


@pytest.mark.parametrize("reason", ["", "   ", "ok", None])
def test_an_acknowledgement_without_a_reason_fails(reason):
    findings = unsafe_findings()
    acks = {rule: REASON for rule in {f.rule for f in findings}}
    acks["require-concurrent-index-creation"] = reason
    result = lint.assess(info(lint_acknowledged=acks), findings)
    assert not result.ok
    failing = {f.rule for f in result.failing}
    assert failing == {"require-concurrent-index-creation", lint.ACK_RULE}
    assert "gives no reason" in next(f.message for f in result.failing if f.rule == lint.ACK_RULE)


def test_an_acknowledgement_for_a_rule_that_no_longer_fires_is_stale_not_failing():
    result = lint.assess(info(lint_acknowledged={"ban-drop-column": REASON}), [])
    assert result.ok
    assert [(f.rule, f.status, f.reason) for f in result.stale] == [("ban-drop-column", lint.STALE, REASON)]
    assert result.summary == "1 stale"
    assert any(row["status"] == lint.STALE for row in result.rows())


@pytest.mark.parametrize(
    ("acks", "expected"),
    [
        ({"doc-ticket": "the ticket is tracked elsewhere, honestly"}, "cannot be acknowledged"),
        (["require-lock-timeout"], "must be a dict"),
    ],
)
def test_documentation_rules_and_malformed_declarations_cannot_acknowledge(acks, expected):
    result = lint.assess(info(lint_acknowledged=acks, ticket=""), [])
    assert not result.ok
    messages = [f.message for f in result.failing if f.rule == lint.ACK_RULE]
    assert messages and expected in messages[0]


# ------------------------------------------------------------------------------------------------ documentation


def test_a_documented_revision_has_no_documentation_findings():
    assert lint.check_documentation(info()) == []


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"message": ""}, lint.DOC_DESCRIPTION),
        ({"message": "empty message"}, lint.DOC_DESCRIPTION),
        ({"message": "Fix trades"}, lint.DOC_DESCRIPTION),
        ({"message": "TODO describe the change properly"}, lint.DOC_DESCRIPTION),
        ({"ticket": ""}, lint.DOC_TICKET),
        ({"ticket": "TODO-000"}, lint.DOC_TICKET),
        ({"ticket": "see slack"}, lint.DOC_TICKET),
        ({"data_impact": ""}, lint.DOC_DATA_IMPACT),
        ({"data_impact": "TODO: which tables and rows change"}, lint.DOC_DATA_IMPACT),
        ({"rollback_notes": ""}, lint.DOC_ROLLBACK),
        ({"rollback_notes": "  "}, lint.DOC_ROLLBACK),
    ],
)
def test_each_missing_piece_of_documentation_is_its_own_finding(changes, rule):
    findings = lint.check_documentation(info(**changes))
    assert [f.rule for f in findings] == [rule]
    assert findings[0].status == lint.FAILING


def test_documentation_findings_fail_the_revision_end_to_end():
    """Through lint_revision: its real SQL is rendered and linted, the documentation checked beside it."""
    result = lint.lint_revision(info(ticket="", rollback_notes=""))
    assert not result.ok
    assert {f.rule for f in result.failing} == {lint.DOC_TICKET, lint.DOC_ROLLBACK}
    assert result.acknowledged  # 0008's squawk findings stay acknowledged


def test_the_revision_template_declares_acknowledgements_and_its_placeholders_fail(tmp_path):
    """A revision written by plain `alembic revision` (no database needed) fails lint until it is documented."""
    shutil.copy(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    shutil.copytree(
        ROOT / "migrations", tmp_path / "migrations", ignore=shutil.ignore_patterns("__pycache__")
    )
    result = run_cli(
        "revision", "-m", "Add a reporting column to trades", "--rev-id", "9999", tool="alembic", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    written = next(tmp_path.glob("migrations/*/*_9999_*.py"))
    text = written.read_text()
    assert "lint_acknowledged: dict[str, str] = {}" in text
    values = {}
    for field in ("ticket", "data_impact", "rollback_notes"):
        line = re.search(rf"^{field}: str = (.*)$", text, re.M).group(1)
        values[field] = ast.literal_eval(line.split("  #")[0].strip())
    rules = {f.rule for f in lint.check_documentation(info(**values))}
    assert rules == {lint.DOC_TICKET, lint.DOC_DATA_IMPACT, lint.DOC_ROLLBACK}


# ------------------------------------------------------------------------------------------------ squawk missing


def test_a_missing_squawk_binary_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(lint.SQUAWK_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(TradeDBError, match=r"pip install squawk-cli") as exc:
        lint.lint_revision(info())
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_lint_passes_on_the_repository():
    result = run_cli("lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(schema.revisions())} revision(s) lint clean" in result.stdout
    import data_migrations

    assert f"{len(data_migrations.registry())} data migration(s) documented" in result.stdout
    assert "require-concurrent-index-creation" in result.stdout  # acknowledged rows are shown with reasons


def test_cli_lint_json_for_chosen_revisions():
    result = run_cli("lint", "--json", "0017", "0013")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert [r["revision"] for r in report["revisions"]] == ["0013", "0017"]
    unique = [f for f in report["revisions"][1]["findings"] if f["rule"] == "disallowed-unique-constraint"]
    assert unique and unique[0]["status"] == "acknowledged" and unique[0]["reason"]
    assert unique[0]["sql"].startswith("ALTER TABLE orders ADD CONSTRAINT uq_orders_client_order_id UNIQUE")


def test_cli_lint_errors_are_one_line():
    unknown = run_cli("lint", "nope")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: unknown revision 'nope'")
    missing = run_cli("lint", extra={lint.SQUAWK_ENV: "/nonexistent/squawk"})
    assert missing.returncode == 1
    assert (
        missing.stderr.strip()
        == f"error: {lint.SQUAWK_ENV}=/nonexistent/squawk is not an executable squawk binary"
    )


BAD_REVISION = '''"""Index trades by fee for the commission report

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 10:00:00
"""

from alembic import op

ticket: str = "TRD-999"
data_impact: str = "Builds one index on trades."
rollback_notes: str = ""
requires_data: tuple[str, ...] = ()
preserves_data: bool = True
lint_acknowledged: dict[str, str] = {
    "require-lock-timeout": "only ever run in the maintenance window",
    "require-statement-timeout": "",
    "ban-drop-column": "nothing is dropped here any more",
}

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_trades_fee", "trades", ["fee"])


def downgrade() -> None:
    op.drop_index("ix_trades_fee", table_name="trades")
'''


@pytest.fixture
def project_with_a_bad_revision(tmp_path, monkeypatch):
    """A copy of the history plus an unsafe, half-documented revision 0020, as the project tooling sees it."""
    shutil.copy(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    shutil.copytree(
        ROOT / "migrations", tmp_path / "migrations", ignore=shutil.ignore_patterns("__pycache__")
    )
    (tmp_path / "migrations" / "execution" / "20261210_0020_index_trades_fee.py").write_text(BAD_REVISION)
    monkeypatch.setattr(revisions_module, "project_root", lambda: Path(tmp_path))
    caches = (schema.revisions, schema.render_sql, lint._history)
    for cached in caches:
        cached.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    for cached in caches:
        cached.cache_clear()


def test_a_bad_revision_fails_lint_and_the_cli(project_with_a_bad_revision):
    from tradedb.cli.main import cli

    results = {r.revision: r for r in lint.lint_all()}
    bad = results.pop("0020")
    assert all(r.ok for r in results.values())
    assert {f.rule for f in bad.failing} == {
        "require-concurrent-index-creation",
        "require-statement-timeout",  # acknowledged without a reason: still failing
        lint.ACK_RULE,
        lint.DOC_ROLLBACK,
    }
    assert {f.rule for f in bad.acknowledged} == set()
    # env.py renders `SET lock_timeout` before every revision, so that acknowledgement is stale too
    assert sorted(f.rule for f in bad.stale) == ["ban-drop-column", "require-lock-timeout"]
    index = next(f for f in bad.failing if f.rule == "require-concurrent-index-creation")
    assert index.sql == "CREATE INDEX ix_trades_fee ON trades (fee);"

    outcome = CliRunner().invoke(cli, ["lint"])
    assert outcome.exit_code == 1, outcome.output
    assert "0020 (" in outcome.output and "require-concurrent-index-creation" in outcome.output
    as_json = CliRunner().invoke(cli, ["lint", "--json", "0020"])
    assert as_json.exit_code == 1
    report = json.loads(as_json.output)
    assert report["ok"] is False and report["revisions"][0]["summary"].startswith("4 failing")


# ------------------------------------------------------------------------------------------------ Dagster


def test_revision_assets_carry_lint_metadata():
    from orchestration.schema.assets import revision_metadata

    meta = revision_metadata(info("0017"))
    assert meta["lint"] == lint.lint_by_revision()["0017"].summary
    assert meta["lint"].endswith("acknowledged")
    assert "disallowed-unique-constraint" in meta["lint_findings"].value
