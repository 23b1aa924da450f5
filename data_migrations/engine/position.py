"""Where a data migration stands against the schema: may it run now, and which ones have work to do."""

from __future__ import annotations

from alembic.migration import MigrationContext
from sqlalchemy import Connection

from data_migrations import registry
from data_migrations.base import DataMigration
from tradedb.core.db import connect_checked
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import Environment
from tradedb.schema.history import revisions
from tradedb.schema.pending_rows import count_pending


def check_schema_position(conn: Connection, m: DataMigration) -> str | None:
    """Return None when the schema is where ``m`` can run, 'contracted' when it is past its contract, else raise."""
    current = MigrationContext.configure(conn).get_current_revision()
    order = [r.revision for r in revisions()]
    if m.after not in order:
        raise TradeDBError(
            f"data migration {m.name} runs after revision {m.after}, which is not in the history"
        )
    contract = next((r.revision for r in revisions() if m.name in r.requires_data), None)
    if current is None or current not in order or order.index(current) < order.index(m.after):
        raise TradeDBError(
            f"data migration {m.name} needs the schema at revision {m.after} or later; the database is at "
            f"{current or 'an empty schema'}. Run `alembic upgrade {m.after}` first."
        )
    if contract and order.index(current) >= order.index(contract):
        return "contracted"
    return None


def runnable(env: Environment) -> list[str]:
    """Data migrations whose ``after`` revision is applied, whose contract is not, and that have rows pending."""
    names = []
    with connect_checked(env) as conn:
        for m in registry().values():
            try:
                if check_schema_position(conn, m) is None and count_pending(conn, m):
                    names.append(m.name)
            except TradeDBError:
                continue
    return names
