"""What ``migrations/env.py`` hands Alembic from this layer: the catalog the contract guard reads, and the reset hook.

The schema layer's guard (``tradedb.schema.guards``) must look declarations up and may finish them inline, but it
sits below this package and never imports it; ``env.py``, which runs every revision whatever the entry point, puts
``CATALOG`` into ``config.attributes`` and registers ``reset_data_on_downgrade`` as an ``on_version_apply`` hook.
"""

from __future__ import annotations

from sqlalchemy import Connection

from data_migrations import get, registry
from data_migrations.base import DataMigration
from data_migrations.engine import finalize_inline, state


class Catalog:
    """The declared data migrations as the contract guard sees them (``tradedb.schema.guards.DataMigrationCatalog``)."""

    def get(self, name: str) -> DataMigration:
        return get(name)

    def finalize(self, conn: Connection, names: list[str], **launch: str | None) -> None:
        finalize_inline(conn, names, **launch)


CATALOG = Catalog()


def reset_data_on_downgrade(ctx, step, heads, run_args) -> None:
    """``on_version_apply`` hook: downgrading revision R forgets the state of data migrations that run after R.

    So up -> down -> up runs them again from scratch instead of trusting checkpoints over columns that were
    dropped and re-created empty.
    """
    if step.is_upgrade or ctx.as_sql:
        return
    removed = set(step.up_revision_ids)  # on a downgrade step, the revision being removed
    for migration in registry().values():
        if migration.after in removed:
            state.reset(ctx.connection, migration.name)
