"""The app's data migrations, one module per migration in ``data_migrations/<feature>/``, and the engine.

``registry()`` discovers every module-level ``migration = DataMigration(...)`` below the feature folders, so
adding a migration is adding a file; the CLI, the alembic guards and the Dagster asset graph all read it here.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path

from data_migrations.base import DataMigration, Invariant, PandasStep, SqlStep, TransformResult
from tradedb.core.errors import TradeDBError
from tradedb.core.features import FEATURES

__all__ = [
    "DataMigration",
    "Invariant",
    "PandasStep",
    "SqlStep",
    "TransformResult",
    "registry",
    "get",
    "source_file",
]


def registry() -> dict[str, DataMigration]:
    """All declared data migrations by name, in feature order then file order."""
    return _discover()[0]


def source_file(name: str) -> Path:
    """The file declaring data migration ``name`` (for lint and the deploy fingerprint)."""
    return _discover()[1][get(name).name]


@cache
def _discover() -> tuple[dict[str, DataMigration], dict[str, Path]]:
    found: dict[str, DataMigration] = {}
    files: dict[str, Path] = {}
    for feature in FEATURES:
        package = importlib.import_module(f"data_migrations.{feature}")
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            module = importlib.import_module(f"data_migrations.{feature}.{info.name}")
            migration = getattr(module, "migration", None)
            if not isinstance(migration, DataMigration):
                continue
            if migration.feature != feature:
                raise TradeDBError(f"data migration {migration.name} lives in data_migrations/{feature}/")
            if migration.name in found:
                raise TradeDBError(f"two data migrations are named {migration.name}")
            found[migration.name] = migration
            files[migration.name] = Path(module.__file__ or "")
    return found, files


def get(name: str) -> DataMigration:
    """Look a data migration up by name, or fail naming the known ones."""
    try:
        return registry()[name]
    except KeyError:
        known = ", ".join(registry()) or "none"
        raise TradeDBError(f"unknown data migration {name!r} (known: {known})") from None
