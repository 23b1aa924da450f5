"""The database objects the app's schema holds besides tables: views, SQL functions and triggers, declared once.

One ``.sql`` file per object in ``<feature>/`` beside this file (the six features, as for models), holding one
``CREATE VIEW|FUNCTION|TRIGGER`` statement after an optional header of ``--`` comments saying why it exists. They
are read into ``alembic_utils`` replaceable entities, which Alembic's autogenerate compares with a database (by
creating the code's version in a rolled-back savepoint and reading back PostgreSQL's own rendering, so spelling
and whitespace never count as drift) and renders as ``op.create_entity`` / ``op.replace_entity`` /
``op.drop_entity`` in a new revision. Revisions keep their own copy of the definition, so editing a file here
never changes an applied revision: it makes ``alembic revision --autogenerate`` emit a replace.

May import: nothing of ours outside ``tradedb.core``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic_utils.exceptions import SQLParseFailure
from alembic_utils.pg_function import PGFunction
from alembic_utils.pg_trigger import PGTrigger
from alembic_utils.pg_view import PGView
from alembic_utils.replaceable_entity import ReplaceableEntity

from tradedb.core.errors import TradeDBError
from tradedb.core.features import FEATURES

HERE = Path(__file__).resolve().parent
KINDS: tuple[type[ReplaceableEntity], ...] = (PGView, PGFunction, PGTrigger)
"""The kinds of object that may be declared here, by ``alembic_utils`` class."""
SCHEMA = "public"
"""The app's schema: every managed object lives here (our own state schema is never managed this way)."""


def parse_object(sql: str, where: str) -> ReplaceableEntity:
    """The entity one file declares: its ``CREATE`` statement, after any leading ``--`` comment lines."""
    lines = sql.strip().splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    statement = "\n".join(lines).strip()
    for kind in KINDS:
        try:
            entity = kind.from_sql(statement)
        except SQLParseFailure:
            continue
        if entity.schema != SCHEMA:
            raise TradeDBError(f"{where}: {entity.identity} must live in schema {SCHEMA!r}")
        return entity
    raise TradeDBError(f"{where}: not one CREATE VIEW, CREATE FUNCTION or CREATE TRIGGER statement")


@cache
def managed_objects() -> tuple[ReplaceableEntity, ...]:
    """Every declared object, feature by feature in the usual order, files by name (read once per process)."""
    found: dict[str, ReplaceableEntity] = {}
    for feature in FEATURES:
        for path in sorted((HERE / feature).glob("*.sql")):
            where = f"tradedb/core/objects/{feature}/{path.name}"
            entity = parse_object(path.read_text(), where)
            if entity.identity in found:
                raise TradeDBError(f"{where}: {entity.identity} is declared twice")
            found[entity.identity] = entity
    return tuple(found.values())


def describe(identity: str) -> str:
    """``alembic_utils``'s identity as words: ``view open_positions_latest_signal``, ``trigger t on positions``."""
    kind, _, rest = identity.partition(": ")
    noun = kind.removeprefix("PG").lower()
    if noun == "trigger":  # "public.name False public.table": name, constraint flag, table
        name, _, table = rest.split(" ", 2)
        return f"trigger {name.removeprefix(SCHEMA + '.')} on {table.removeprefix(SCHEMA + '.')}"
    return f"{noun} {rest.removeprefix(SCHEMA + '.')}"
