"""The README's walkthrough "add a column and backfill it", run exactly as written, in a copy of the repository.

The commands are read out of the README section (every line of its ``bash`` blocks) and the file edits out of its
``python`` blocks, in the order they appear, so the text and the test cannot drift apart. The copy is a fresh git
checkout (``tests.repo_copy``) whose packages the commands import; dev and production are fresh databases on the
test server (``TRADEDB_DEV_URL`` / ``TRADEDB_PRODUCTION_URL``, as an operator's environment would set them).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import deployed_to, scalar
from tests.repo_copy import copy_repository, run_in

SECTION = "## Walkthrough: add a column and backfill it"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
EDIT_HEADER = re.compile(r"# file: (?P<path>\S+?)(?:, (?P<how>after|replace): (?P<anchor>.+))?$")


@dataclass(frozen=True)
class Block:
    kind: str
    """``bash`` (commands) or ``python`` (a file edit)."""
    text: str


def walkthrough_blocks() -> list[Block]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end != -1 else len(readme)]
    return [Block(kind, text) for kind, text in FENCE.findall(section)]


@dataclass(frozen=True)
class Command:
    argv: list[str]
    fails_with: str | None
    """A trailing ``# fails: TEXT`` says the command exits non-zero on purpose, printing TEXT."""


def commands(block: Block) -> list[Command]:
    out = []
    for line in block.text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        typed, _, comment = line.partition("  # ")
        fails = comment.removeprefix("fails: ") if comment.startswith("fails: ") else None
        out.append(Command(shlex.split(typed), fails))
    return out


def apply_edit(copy: Path, block: Block) -> Path:
    """Apply one ``# file: PATH[, after|replace: TEXT]`` block to the copy, as the README says to."""
    header, _, body = block.text.partition("\n")
    match = EDIT_HEADER.fullmatch(header.strip())
    assert match, f"an edit block must start with '# file: PATH': {header!r}"
    found = sorted(copy.glob(match["path"]))
    assert len(found) == 1, f"{match['path']} matches {found}"
    path = found[0]
    if match["how"] is None:
        path.write_text(body)
        return path
    lines = path.read_text().splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if match["anchor"] in line), None)
    assert at is not None, f"{match['anchor']!r} is not in {path}"
    new = body.splitlines(keepends=True)
    lines[at : at + 1] = [lines[at], *new] if match["how"] == "after" else new
    path.write_text("".join(lines))
    return path


def test_the_readme_walkthrough_reads_as_commands_and_edits():
    blocks = walkthrough_blocks()
    typed = [c.argv for b in blocks if b.kind == "bash" for c in commands(b)]
    assert {c[0] for c in typed} == {"tradedb", "alembic", "pytest"}
    assert typed[-1] == ["tradedb", "plan", "--env", "production"]
    assert all(b.kind in ("bash", "python") for b in blocks)
    assert all(EDIT_HEADER.fullmatch(b.text.partition("\n")[0]) for b in blocks if b.kind == "python")


@pytest.mark.slow
def test_walkthrough_add_a_column_and_backfill_it(tmp_path, make_database, server_url):
    copy = copy_repository(tmp_path / "repo")
    dev, production = make_database("dev"), make_database("production")
    deployed_to(production, "0019")  # production runs the previous release
    urls = {
        "TRADEDB_DEV_URL": dev.url.render_as_string(hide_password=False),
        "TRADEDB_PRODUCTION_URL": production.url.render_as_string(hide_password=False),
        "TRADEDB_TEST_URL": server_url.render_as_string(hide_password=False),  # the scaffolded test's server
        "COLUMNS": "200",
    }
    outputs: dict[str, str] = {}
    for block in walkthrough_blocks():
        if block.kind == "python":
            apply_edit(copy, block)
            continue
        for command in commands(block):
            argv = command.argv
            result = run_in(copy, *argv[1:], tool=argv[0], extra=urls, timeout=600)
            said = result.stdout + result.stderr
            if command.fails_with is None:
                assert result.returncode == 0, f"{shlex.join(argv)}\n{said}"
            else:
                assert result.returncode != 0 and command.fails_with in said, f"{shlex.join(argv)}\n{said}"
            outputs[shlex.join(argv[:3])] = said

    expand = next(copy.glob("migrations/execution/*_0020_*.py")).read_text()
    contract = next(copy.glob("migrations/execution/*_0021_*.py")).read_text()
    assert 'op.add_column("orders", sa.Column("filled_quantity"' in expand.replace("'", '"')
    assert 'requires_data: tuple[str, ...] = ("execution.backfill_order_filled_quantity",)' in contract
    assert "from tradedb.schema.guards import require_data_migrations" in contract
    upgrade = contract[contract.index("def upgrade()") :]
    assert upgrade.splitlines()[1].strip() == "require_data_migrations(requires_data)"
    assert (copy / "tests/data_migrations/test_execution_backfill_order_filled_quantity.py").exists()
    assert "execution.backfill_order_filled_quantity" in outputs["tradedb data list"]
    assert (
        "0021" in outputs["tradedb status"]
        and "execution.backfill_order_filled_quantity" in outputs["tradedb status"]
    )

    # dev went through the whole pipeline: every order holds the sum of its fills, and the column is NOT NULL
    assert scalar(dev, "SELECT version_num FROM alembic_version") == "0021"
    wrong = "SELECT count(*) FROM orders o WHERE o.filled_quantity <> (SELECT coalesce(sum(quantity), 0) FROM trades WHERE order_id = o.id)"
    assert scalar(dev, wrong) == 0 and scalar(dev, "SELECT count(*) FROM orders") > 0
    assert (
        scalar(
            dev,
            "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'filled_quantity'",
        )
        == "NO"
    )

    plan = outputs["tradedb plan --env"]
    steps = [
        plan.index(s) for s in ("schema 0020", "data execution.backfill_order_filled_quantity", "schema 0021")
    ]
    assert steps == sorted(steps), plan
    assert "alembic -x env=production downgrade 0020" in plan and "needs a maintenance window" in plan
    assert scalar(production, "SELECT version_num FROM alembic_version") == "0019"  # a plan changes nothing
