"""Scaffolds: `tradedb data new` and `tradedb new revision` (and plain `alembic revision -x ...`), run as a user
would in a copy of the repository, so the checkout is never written to.

What a scaffold writes must work at once: the new data migration is listed, has its Dagster asset after its
`after` revision, runs, and fails lint and its own test until it is filled in. Bad input is one `error:` line and
nothing written (the copy's `git status` stays clean).
"""

from __future__ import annotations

import ast
import json

import pytest

from tests.repo_copy import copy_repository, git, run_in
from tradedb import schema

NAME = "execution.backfill_order_note"
WIDE = {"COLUMNS": "200"}
UNREACHABLE = {"TRADEDB_DEV_URL": "postgresql://nobody:secret@127.0.0.1:1/none"}


@pytest.fixture
def copy(tmp_path):
    return copy_repository(tmp_path / "repo")


def head() -> str:
    return schema.head()


def error_line(result) -> str:
    """The one line a refused command prints (and it must be exactly one, starting with `error:`)."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# ------------------------------------------------------------------------------------------------ tradedb data new


def test_data_new_writes_a_declaration_that_loads_runs_and_fails_lint_and_its_test_until_filled(
    copy, env, server_url
):
    made = run_in(copy, "data", "new", "backfill_order_note", "--feature", "execution", "--table", "orders")
    assert made.returncode == 0, made.stderr
    module, test = (
        "data_migrations/execution/backfill_order_note.py",
        "tests/data_migrations/test_execution_backfill_order_note.py",
    )
    assert made.stdout.splitlines()[:2] == [
        f"created {module} (sql step over orders.id, after {head()})",
        f"created {test}",
    ]
    assert f'tradedb new revision -m "..." --feature execution --requires-data {NAME}' in made.stdout
    assert f'requires_data = ("{NAME}",)' in made.stdout
    source = (copy / module).read_text()
    assert f'after="{head()}"' in source and 'table="orders"' in source and 'key="id"' in source
    for part in (
        "pending_where=PENDING",
        "step=SqlStep(",
        "revert_sql=None",
        "invariants=(",
        '"""TODO(scaffold)',
    ):
        assert part in source, part
    assert run_in(copy, "check", "--no-cache", module, test, tool="ruff").returncode == 0

    listed = run_in(copy, "data", "list", extra=WIDE)
    assert NAME in listed.stdout and "orders" in listed.stdout

    schema.upgrade(env, "head")
    status = run_in(copy, "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    row = next(r for r in json.loads(status.stdout)["data_migrations"] if r["name"] == NAME)
    assert row["after"] == head() and row["pending_rows"] == 0

    asset = run_in(
        copy,
        "-c",
        "import dagster as dg; from orchestration.definitions import defs; "
        "node = defs.resolve_asset_graph().get(dg.AssetKey(['dev', 'execution', 'backfill_order_note'])); "
        "print(sorted(k.to_user_string() for k in node.parent_keys))",
        tool="python",
    )
    assert asset.returncode == 0, asset.stderr
    assert asset.stdout.strip() == str([f"dev/execution/rev_{head()}"])

    ran = run_in(copy, "data", "run", NAME, env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr  # as scaffolded it runs, and migrates nothing
    assert f"finished {NAME}: 0 rows migrated" in " ".join(ran.stdout.split())

    linted = run_in(copy, "lint", "--json", NAME)
    assert linted.returncode == 1
    report = json.loads(linted.stdout)["data_migrations"][0]
    assert {f["rule"] for f in report["findings"]} == {
        "doc-description",
        "doc-ticket",
        "scaffold-placeholder",
    }

    tested = run_in(
        copy,
        "-n",
        "0",
        test,
        tool="pytest",
        extra={"TRADEDB_TEST_URL": server_url.render_as_string(hide_password=False)},
    )
    assert tested.returncode == 1 and "has nothing to do on the sample data" in tested.stdout


def test_data_new_pandas_kind_after_an_older_revision_runs_as_scaffolded(copy, env):
    made = run_in(
        copy, "data", "new", "setups.normalise_status", "--feature", "setups", "--table", "ticker_setups",
        "--kind", "pandas", "--after", "0009",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    source = (copy / "data_migrations/setups/normalise_status.py").read_text()
    assert "step=PandasStep(" in source and 'after="0009"' in source and '{"id": "bigint"}' in source
    schema.upgrade(env, "head")
    ran = run_in(copy, "data", "run", "setups.normalise_status", env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    listed = run_in(copy, "data", "list", extra=WIDE)
    assert "setups.normalise_status" in listed.stdout and "pandas" in listed.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["x", "--feature", "nope", "--table", "orders"], "error: unknown feature 'nope'"),
        (["x", "--feature", "execution", "--table", "nope"], "error: table 'nope' is not in the models"),
        (
            ["x", "--feature", "discord", "--table", "alert_subscription_types"],
            "error: table alert_subscription_types has no single integer primary key",
        ),
        (
            ["backfill_trade_notional", "--feature", "execution", "--table", "trades"],
            "error: a data migration named execution.backfill_trade_notional already exists",
        ),
        (
            ["x", "--feature", "execution", "--table", "orders", "--after", "9999"],
            "error: unknown revision '9999'",
        ),
        (
            ["Bad-Name", "--feature", "execution", "--table", "orders"],
            "error: data migration name 'Bad-Name'",
        ),
        (["setups.x", "--feature", "execution", "--table", "orders"], "is named for feature 'setups'"),
        (
            ["x", "--feature", "execution", "--table", "orders", "--kind", "rust"],
            "error: unknown kind 'rust'",
        ),
    ],
    ids=["feature", "table", "no-integer-key", "name-clash", "after", "name", "other-feature", "kind"],
)
def test_data_new_refuses_bad_input_with_one_line_and_writes_nothing(copy, args, says):
    result = run_in(copy, "data", "new", *args)
    assert says in error_line(result)
    assert git(copy, "status", "--porcelain") == ""


def test_data_new_refuses_a_dirty_feature_folder_unless_allowed_and_never_overwrites(copy):
    (copy / "data_migrations/execution/half_written.py").write_text(
        '"""Someone\'s unfinished migration."""\n'
    )
    refused = run_in(copy, "data", "new", "backfill_x", "--feature", "execution", "--table", "orders")
    line = error_line(refused)
    assert (
        "data_migrations/execution/ has uncommitted changes (data_migrations/execution/half_written.py)"
        in line
    )
    assert "--allow-dirty" in line
    assert git(copy, "status", "--porcelain").splitlines() == ["?? data_migrations/execution/half_written.py"]
    other_feature = run_in(
        copy, "data", "new", "backfill_x", "--feature", "setups", "--table", "ticker_setups"
    )
    assert other_feature.returncode == 0, other_feature.stderr  # only the target folder counts
    allowed = run_in(
        copy, "data", "new", "backfill_x", "--feature", "execution", "--table", "orders", "--allow-dirty"
    )
    assert allowed.returncode == 0, allowed.stderr

    (copy / "tests/data_migrations/test_execution_backfill_y.py").write_text("# someone's test\n")
    git(copy, "add", "-A")
    git(copy, "commit", "-qm", "work")
    clash = run_in(copy, "data", "new", "backfill_y", "--feature", "execution", "--table", "orders")
    assert "tests/data_migrations/test_execution_backfill_y.py already exists" in error_line(clash)
    assert not (copy / "data_migrations/execution/backfill_y.py").exists()
    assert (copy / "tests/data_migrations/test_execution_backfill_y.py").read_text() == "# someone's test\n"


# ------------------------------------------------------------------------------------------------ revisions


def test_new_revision_needs_no_database_and_lists_what_to_fill_in(copy):
    made = run_in(
        copy, "new", "revision", "-m", "Add a desk note to orders", "--feature", "strategy", extra=UNREACHABLE
    )
    assert made.returncode == 0, made.stderr
    nxt = f"{int(head()) + 1:04d}"
    written = next(copy.glob(f"migrations/strategy/*_{nxt}_add_a_desk_note_to_orders.py"))
    assert (
        f"created migrations/strategy/{written.name} (revision {nxt} after {head()}, feature strategy)"
        in made.stdout.splitlines()
    )
    assert "fill in: ticket 'TODO-000' is the template's placeholder" in made.stdout
    assert f"alembic upgrade {head()}:{nxt} --sql" in made.stdout and f"tradedb lint {nxt}" in made.stdout
    linted = run_in(copy, "lint", "--json", nxt)
    rules = {f["rule"] for f in json.loads(linted.stdout)["revisions"][0]["findings"]}
    assert linted.returncode == 1 and {"doc-ticket", "doc-data-impact", "doc-rollback-notes"} <= rules


def test_new_contract_revision_declares_and_calls_its_guard(copy, env):
    made = run_in(
        copy, "new", "revision", "-m", "Contract: drop nothing yet, wait for the notional backfill",
        "--feature", "execution", "--requires-data", "execution.backfill_trade_notional", "--rev-id", "0100",
        "--ticket", "TRD-600", "--data-impact", "No table changes in this example.",
        "--rollback-notes", "Downgrade does nothing.", extra=UNREACHABLE,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert 'requires_data = ("execution.backfill_trade_notional",)' in made.stdout
    path = next(copy.glob("migrations/execution/*_0100_*.py"))
    tree = ast.parse(path.read_text())
    values = {
        n.target.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.AnnAssign) and n.value
    }
    assert values["requires_data"] == ("execution.backfill_trade_notional",)
    assert values["ticket"] == "TRD-600" and values["rollback_notes"] == "Downgrade does nothing."
    imports = {(n.module, a.name) for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("tradedb.schema.guards", "require_data_migrations") in imports
    upgrade = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade")
    assert ast.unparse(upgrade.body[0]) == "require_data_migrations(requires_data)"
    linted = run_in(copy, "lint", "--json", "0100")
    assert not [
        f for f in json.loads(linted.stdout)["revisions"][0]["findings"] if f["rule"].startswith("doc-")
    ]

    # the guard is live: on release 1.0 data with the backfill pending, the contract refuses
    from tests.helpers import seeded

    seeded(env, rows=50, to="0012")
    refused = run_in(copy, "upgrade", "head", tool="alembic", env=env)
    assert refused.returncode != 0 and "execution.backfill_trade_notional" in refused.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-m", "Add a thing to orders", "--feature", "nope"], "error: unknown feature 'nope'"),
        (
            ["-m", "Add a thing to orders", "--feature", "execution", "--requires-data", "execution.nope"],
            "error: unknown data migration 'execution.nope'",
        ),
        (
            ["-m", "Add a thing to orders", "--feature", "execution", "--rev-id", "0013"],
            "error: revision 0013 already exists",
        ),
        (["-m", "  ", "--feature", "execution"], "error: the message (-m) is empty"),
    ],
    ids=["feature", "requires-data", "rev-id", "message"],
)
def test_new_revision_refuses_bad_input_with_one_line_and_writes_nothing(copy, args, says):
    result = run_in(copy, "new", "revision", *args, extra=UNREACHABLE)
    assert says in error_line(result)
    assert git(copy, "status", "--porcelain") == ""


def test_plain_alembic_revision_takes_the_feature_and_fields_from_x_without_a_database(copy):
    made = run_in(
        copy, "-x", "feature=setups", "-x", "requires_data=setups.parse_ticker_setup_levels", "-x", "ticket=TRD-601",
        "revision", "-m", "Contract: a plain revision with its guard", tool="alembic", extra=UNREACHABLE,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    text = next(copy.glob("migrations/setups/*_a_plain_revision_with_its_guard.py")).read_text()
    assert 'ticket: str = "TRD-601"' in text
    assert 'requires_data: tuple[str, ...] = ("setups.parse_ticker_setup_levels",)' in text
    assert "    require_data_migrations(requires_data)\n" in text
    refused = run_in(
        copy, "-x", "feature=nope", "revision", "-m", "Nowhere to go", tool="alembic", extra=UNREACHABLE
    )
    assert (
        refused.returncode != 0 and "FAILED: unknown feature 'nope'" in refused.stdout
    )  # alembic's own format
    unknown = run_in(
        copy,
        "-x",
        "requires_data=nope.x",
        "revision",
        "-m",
        "Needs nothing real",
        tool="alembic",
        extra=UNREACHABLE,
    )
    assert unknown.returncode != 0 and "FAILED: unknown data migration 'nope.x'" in unknown.stdout
    assert len(list(copy.glob("migrations/*/*nowhere_to_go*"))) == 0
    assert len(list(copy.glob("migrations/*/*needs_nothing_real*"))) == 0


def test_new_revision_autogenerate_needs_a_database_at_head(copy, env):
    schema.upgrade(env, "0017")
    result = run_in(
        copy,
        "new",
        "revision",
        "--autogenerate",
        "-m",
        "Anything the models say",
        "--feature",
        "common",
        env=env,
    )
    assert error_line(result) == "error: alembic revision: Target database is not up to date."
    assert git(copy, "status", "--porcelain") == ""
