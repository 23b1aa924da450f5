"""Drift: the models against a database, as sentences an operator can act on."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tradedb.core.db import connect_checked
from tradedb.core.models import metadata as models_metadata
from tradedb.core.settings import Environment


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    """Compare only the app's own schema: our state schema and Alembic's version table are not models."""
    if type_ == "schema":
        return name in (None, "public")
    return not (type_ == "table" and name == "alembic_version")


def drift(env: Environment, metadata=None) -> list[str]:
    """Differences between the models (or ``metadata``) and the database, as readable lines (empty when equal)."""
    if metadata is None:
        metadata = models_metadata
    with connect_checked(env) as conn:
        ctx = MigrationContext.configure(conn, opts={"include_name": include_name, "compare_type": True})
        diffs = compare_metadata(ctx, metadata)
    return [describe_diff(d) for d in diffs]


def describe_diff(diff: Any) -> str:
    """Render one autogenerate diff tuple as a sentence an operator can act on."""
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(describe_diff(d) for d in diff)
    kind = diff[0]
    if kind == "add_table":
        return f"table {diff[1].name} is in the models but not in the database"
    if kind == "remove_table":
        return f"table {diff[1].name} is in the database but not in the models"
    if kind == "add_column":
        return f"column {diff[2]}.{diff[3].name} is in the models but not in the database"
    if kind == "remove_column":
        return f"column {diff[2]}.{diff[3].name} is in the database but not in the models"
    if kind in ("add_index", "remove_index"):
        where = "models" if kind == "add_index" else "database"
        return f"index {diff[1].name} on {diff[1].table.name} is only in the {where}"
    if kind in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        where = "models" if kind.startswith("add") else "database"
        return f"constraint {diff[1].name} on {diff[1].table.name} is only in the {where}"
    if kind == "modify_nullable":
        _, _, table, column, _, was, now = diff
        return f"column {table}.{column}: database nullable={was}, models nullable={now}"
    if kind == "modify_type":
        _, _, table, column, _, was, now = diff
        return f"column {table}.{column}: database type {was}, models type {now}"
    if kind == "modify_default":
        _, _, table, column, _, was, now = diff
        return f"column {table}.{column}: default differs (database {was!r}, models {now!r})"
    return repr(diff)
