"""Drift: the models and the managed database objects against a database, as sentences an operator can act on.

Importing this module registers the managed views, functions and triggers (``tradedb.core.objects``) with
``alembic_utils``, so every autogenerate comparison in the process sees them: ``alembic revision --autogenerate``
and ``alembic check`` (``migrations/env.py`` imports the schema layer) as much as ``drift`` here.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic_utils.replaceable_entity import register_entities
from alembic_utils.statement import normalize_whitespace
from sqlalchemy import Connection, MetaData
from sqlalchemy.orm import Session

from tradedb.core.db import connect_checked
from tradedb.core.models import metadata as models_metadata
from tradedb.core.objects import KINDS, SCHEMA, describe, managed_objects
from tradedb.core.settings import Environment
from tradedb.schema.commands import ddl_lock_timeout

register_entities(managed_objects())

OBJECT_TYPES = frozenset(kind.type_ for kind in KINDS)
"""``alembic_utils``'s object types (view, function, trigger), as autogenerate's filters see them."""


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    """Compare only the app's own schema: our state schema and Alembic's version table are not models."""
    if type_ == "schema":
        return name in (None, "public")
    return not (type_ == "table" and name == "alembic_version")


def _tables_only(obj, name, type_, reflected, compare_to) -> bool:
    return type_ not in OBJECT_TYPES


def drift(
    env: Environment, metadata: MetaData | None = None, objects: dict[str, str] | None = None
) -> list[str]:
    """Differences between the code and the database, as readable lines (empty when equal).

    Tables are compared with the models, or with ``metadata`` (other models, or a schema reflected elsewhere as
    drift watch does behind head). Views, functions and triggers are compared with the code's
    (``tradedb.core.objects``, the ``alembic_utils`` way: the code's version is created in a rolled-back savepoint,
    waiting at most the DDL ``lock_timeout`` for a lock, so the app never queues behind the comparison for
    longer), or with ``objects``, what ``database_objects`` read from a database built to the same revision.
    """
    with connect_checked(env) as conn:
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{ddl_lock_timeout()}'")
        opts: dict[str, Any] = {"include_name": include_name, "compare_type": True, "include_schemas": False}
        if objects is not None:
            opts["include_object"] = _tables_only
        ctx = MigrationContext.configure(conn, opts=opts)
        diffs = compare_metadata(ctx, models_metadata if metadata is None else metadata)
        lines = [describe_diff(d) for d in diffs]
        if objects is not None:
            lines += object_differences(database_objects(conn), objects)
    return lines


def database_objects(conn: Connection) -> dict[str, str]:
    """The views, functions and triggers in the app's schema as PostgreSQL renders them, by identity."""
    session = Session(bind=conn)
    return {
        entity.identity: normalize_whitespace(entity.definition)
        for kind in KINDS
        for entity in kind.from_database(session, SCHEMA)
    }


def object_differences(actual: dict[str, str], expected: dict[str, str]) -> list[str]:
    """What differs between two ``database_objects`` readings, ``expected`` being what the revision creates."""
    lines = []
    for identity in sorted(set(actual) | set(expected)):
        if identity not in actual:
            lines.append(f"{describe(identity)} is missing from the database")
        elif identity not in expected:
            lines.append(f"{describe(identity)} is in the database but not in its revision")
        elif actual[identity] != expected[identity]:
            lines.append(f"{describe(identity)} differs from what its revision creates")
    return lines


def describe_diff(diff: Any) -> str:
    """Render one autogenerate diff tuple as a sentence an operator can act on."""
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(describe_diff(d) for d in diff)
    kind = diff[0]
    if kind == "create_entity":
        return f"{describe(diff[1])} is in the code but not in the database"
    if kind == "drop_entity":
        return f"{describe(diff[1])} is in the database but not in the code"
    if kind == "replace_or_revert_entity":
        return f"{describe(diff[1])} differs from its definition in the code"
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
