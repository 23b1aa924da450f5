"""``tradedb data new``: a data-migration declaration and its test, written only when everything checks out.

What "dirty" means here: git reports uncommitted changes (modified, staged, deleted or untracked files) in the
feature's folder ``data_migrations/<feature>/``. The registry imports every module in that folder at once (the CLI,
the contract guards and Dagster's code location all load it), so a scaffold landing beside someone's unfinished,
unreviewed migration would ship with it; commit or stash first, or pass ``allow_dirty`` knowingly. Outside a git
work tree there is nothing to compare with, and only the checks below apply. A file that already exists at either
target path is refused whatever git says: a scaffold never overwrites.
"""

from __future__ import annotations

import keyword
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Integer
from sqlalchemy.dialects import postgresql

import data_migrations
from tradedb import schema
from tradedb.core.errors import TradeDBError
from tradedb.core.models import metadata
from tradedb.core.paths import project_root
from tradedb.ops.scaffold.templates import MARKER, PANDAS_MODULE, SQL_MODULE, TEST_MODULE

KINDS = {"sql": SQL_MODULE, "pandas": PANDAS_MODULE}
NAME = re.compile(r"[a-z][a-z0-9_]*")
GIT_TIMEOUT_S = 10


@dataclass(frozen=True)
class ScaffoldedMigration:
    """What ``new_data_migration`` wrote, and what the author does next."""

    name: str
    feature: str
    table: str
    key: str
    after: str
    kind: str
    module_path: str
    test_path: str


def new_data_migration(
    name: str,
    feature: str,
    table: str,
    *,
    after: str | None = None,
    kind: str = "sql",
    allow_dirty: bool = False,
    root: Path | None = None,
) -> ScaffoldedMigration:
    """Check every argument against the code, then write the declaration and its test (or nothing at all)."""
    root = root or project_root()
    schema.check_feature(feature)
    module_name = _module_name(name, feature)
    full_name = f"{feature}.{module_name}"
    if kind not in KINDS:
        raise TradeDBError(
            f"unknown kind {kind!r}: choose sql (set-based UPDATE) or pandas (transform in Python)"
        )
    key, key_type = _walk_key(table)
    after_id = schema.resolve_revision(after) if after else schema.head()
    if after_id == "base":
        raise TradeDBError("--after base: a data migration runs after a revision that created what it fills")
    module_path = root / "data_migrations" / feature / f"{module_name}.py"
    test_path = root / "tests" / "data_migrations" / f"test_{feature}_{module_name}.py"
    _refuse_clashes(full_name, module_path, test_path, root)
    if not allow_dirty:
        _refuse_dirty(root, module_path.parent)
    after_message = next(r.message for r in schema.revisions() if r.revision == after_id).splitlines()[0]
    values = {
        "marker": MARKER,
        "name": full_name,
        "table": table,
        "key": key,
        "key_type": key_type,
        "after": after_id,
        "after_message": after_message.replace('"""', "'''").replace("\\", "/"),
    }
    _write_all({module_path: KINDS[kind].substitute(values), test_path: TEST_MODULE.substitute(values)})
    return ScaffoldedMigration(
        name=full_name,
        feature=feature,
        table=table,
        key=key,
        after=after_id,
        kind=kind,
        module_path=str(module_path.relative_to(root)),
        test_path=str(test_path.relative_to(root)),
    )


def _module_name(name: str, feature: str) -> str:
    """``NAME`` or ``<feature>.NAME`` -> the module name, which must be a plain lower-case identifier."""
    prefix, dot, rest = name.partition(".")
    if dot:
        if prefix != feature:
            raise TradeDBError(
                f"data migration {name!r} is named for feature {prefix!r}, not --feature {feature}"
            )
        name = rest
    if not NAME.fullmatch(name) or keyword.iskeyword(name):
        raise TradeDBError(
            f"data migration name {name!r} must be a lower-case Python identifier that says what it does, "
            "e.g. backfill_order_filled_quantity"
        )
    return name


def _walk_key(table: str) -> tuple[str, str]:
    """The integer primary-key column the engine walks in ``table`` (from the models), and its SQL type."""
    found = metadata.tables.get(table)
    if found is None:
        raise TradeDBError(
            f"table {table!r} is not in the models (tradedb.core.models): choose one of {', '.join(sorted(metadata.tables))}"
        )
    columns = list(found.primary_key.columns)
    if len(columns) != 1 or not isinstance(columns[0].type, Integer):
        shape = ", ".join(f"{c.name} {c.type}" for c in columns) or "none"
        raise TradeDBError(
            f"table {table} has no single integer primary key for the engine to walk in key ranges (it has: {shape})"
        )
    return columns[0].name, columns[0].type.compile(dialect=postgresql.dialect()).lower()


def _refuse_clashes(full_name: str, module_path: Path, test_path: Path, root: Path) -> None:
    try:
        known = data_migrations.registry()
    except TradeDBError:
        raise
    except Exception as exc:  # a module that does not import: the folder is broken, not just dirty
        raise TradeDBError(
            f"the data migrations do not load ({type(exc).__name__}: {exc}): fix that first"
        ) from None
    if full_name in known:
        raise TradeDBError(f"a data migration named {full_name} already exists")
    for path in (module_path, test_path):
        if path.exists():
            raise TradeDBError(f"{path.relative_to(root)} already exists: a scaffold never overwrites a file")


def _refuse_dirty(root: Path, folder: Path) -> None:
    """Refuse when git reports uncommitted changes in ``folder`` (see the module docstring)."""
    git = shutil.which("git")
    if git is None:
        return
    try:
        inside = subprocess.run(
            [git, "-C", str(root), "rev-parse", "--is-inside-work-tree"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
        )
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return
        status = subprocess.run(
            [git, "-C", str(root), "status", "--porcelain", "--untracked-files=all", "--", str(folder)],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TradeDBError(f"cannot ask git whether {folder.relative_to(root)} is clean: {exc}") from None
    changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    if status.returncode == 0 and changed:
        raise TradeDBError(
            f"{folder.relative_to(root)}/ has uncommitted changes ({', '.join(changed[:3])}"
            + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            + "): commit or stash them first, or pass --allow-dirty"
        )


def _write_all(files: dict[Path, str]) -> None:
    """Write every file or none: each text is compiled first, and a failed write removes what was written."""
    for path, text in files.items():
        compile(text, str(path), "exec")
    written: list[Path] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x") as handle:  # "x": never overwrite, even a file that appeared a moment ago
                handle.write(text)
            written.append(path)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise TradeDBError(f"could not write {path}: {exc.strerror or exc}") from None
