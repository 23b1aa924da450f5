"""The shape of the code: layers whose imports only go down, no circles, small modules, packages that say what
they hold.

import-linter's contracts live in ``pyproject.toml`` (``[tool.importlinter]``); ``lint-imports`` checks them here
and in ``.ci/run``. ``migrations/`` is not a package Python imports (Alembic loads it by path), so its imports are
checked by reading the files.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tradedb", "data_migrations", "orchestration")
MAX_MODULE_LINES = 600
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# What Alembic's files may import of ours: env.py wires the data-migration catalog into the schema layer's guard,
# so it may use data_migrations; revision files only the schema layer (through the stable tradedb.guards path).
ENV_PY_MAY_IMPORT = ("tradedb.core", "tradedb.schema", "data_migrations")
REVISIONS_MAY_IMPORT = ("tradedb.guards", "tradedb.schema", "tradedb.core")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layer_and_circle_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("tradedb/schema/ledger.py", "import data_migrations.engine", "Layers: imports only go down"),
        ("tradedb/core/db.py", "from tradedb.ops import plan", "Layers: imports only go down"),
        ("tradedb/ops/backup/manifest.py", "from tradedb.ops import plan", "No import circles"),
    ],
    ids=["schema-imports-data", "core-imports-ops", "circle-in-ops"],
)
def test_an_upward_or_circular_import_breaks_a_contract(tmp_path, module, line, broken):
    """The contracts are not decoration: a copy of the code with one bad import (inside a function) fails them."""
    for name in (*PACKAGES, "pyproject.toml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    with (tmp_path / module).open("a") as handle:
        handle.write(f"\n\ndef _lazy() -> None:\n    {line}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout


def source_modules() -> list[Path]:
    folders = (*PACKAGES, "migrations", "bench", "scripts")
    return sorted(
        p for folder in folders for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts
    )


def test_no_module_outside_the_tests_is_over_600_lines():
    long = {
        str(p.relative_to(ROOT)): n for p in source_modules() if (n := len(p.read_text().splitlines())) > 600
    }
    assert long == {}, f"split these along their seams: {long}"


def test_every_package_says_what_it_holds_and_may_import():
    for init in (p for folder in PACKAGES for p in (ROOT / folder).rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 5, (
            f"{init.relative_to(ROOT)} needs a docstring saying what it holds"
        )
    for layer in ("tradedb/core", "tradedb/schema", "tradedb/ops", "tradedb/cli", "data_migrations/engine"):
        doc = ast.get_docstring(ast.parse((ROOT / layer / "__init__.py").read_text())) or ""
        assert "import" in doc.lower(), f"{layer}/__init__.py must say what the layer may import"


def our_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:  # `from tradedb import schema` is tradedb.schema
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] in (*PACKAGES, "migrations", "bench", "tests")}


def allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_alembic_files_import_only_the_layers_below_them():
    env_py = ROOT / "migrations" / "env.py"
    assert all(allowed(m, ENV_PY_MAY_IMPORT) for m in our_imports(env_py)), our_imports(env_py)
    revisions = sorted((ROOT / "migrations").glob("*/*.py"))
    assert revisions
    for revision in revisions:
        bad = {m for m in our_imports(revision) if not allowed(m, REVISIONS_MAY_IMPORT)}
        assert not bad, f"{revision.relative_to(ROOT)} imports {bad}"
