"""Which tables a round trip may not restore byte for byte: those a ``preserves_data = False`` revision writes.

Read from each pending revision's own offline downgrade SQL, so the rule is the same one ``tradedb validate``
applies (``validate.round_trip_problems``).
"""

from __future__ import annotations

import re
from functools import cache

import data_migrations
from tradedb import schema

TABLE_WRITE = re.compile(
    r"\b(?:ALTER TABLE|UPDATE|INSERT INTO|DELETE FROM|DROP TABLE|TRUNCATE(?: TABLE)?|CREATE TABLE)\s+"
    r"(?:IF (?:NOT )?EXISTS\s+)?(?:ONLY\s+)?(?:\"?public\"?\.)?\"?(\w+)",
    re.IGNORECASE,
)


def not_restorable_tables(pending: list[schema.RevisionInfo]) -> dict[str, str]:
    """Tables a downgrade through ``pending`` may legitimately change, with the reason, by table name.

    A revision declaring ``preserves_data = False`` exempts the tables its upgrade and downgrade SQL write and
    the tables of the data migrations it requires; every other table must come back byte for byte.
    """
    out: dict[str, str] = {}
    for info in pending:
        if info.preserves_data:
            continue
        for table in sorted(_tables_written(info)):
            out.setdefault(table, f"revision {info.revision} declares preserves_data = False")
    return out


def _tables_written(info: schema.RevisionInfo) -> set[str]:
    sql = schema.render_sql(info.revision) + _render_downgrade_sql(info)
    tables = {t for t in TABLE_WRITE.findall(sql) if t != "alembic_version"}
    return tables | {data_migrations.get(n).table for n in info.requires_data}


@cache
def _render_downgrade_sql(info: schema.RevisionInfo) -> str:
    """The SQL of one revision's downgrade alone, rendered offline (``alembic downgrade rev:prev --sql``)."""
    import io

    from alembic import command

    buffer = io.StringIO()
    cfg = schema.alembic_config()
    cfg.output_buffer = buffer
    command.downgrade(cfg, f"{info.revision}:{info.down_revision or 'base'}", sql=True)
    return buffer.getvalue()
