"""The ``requires_data`` guard that contract revisions call first thing in ``upgrade()``.

A contract revision (drop the legacy column, set NOT NULL) is only safe once its data migrations have reached
every row. The guard counts the rows that still need each migration (its ``pending_where``, minus rows already
in quarantine) and refuses with the command to run. A fresh or empty database has nothing pending, so it is never
blocked. With ``-x finalize_data=true`` it finishes the pending migrations inline through the engine first, like
GitLab's ensure-batched-background-migration-is-finished helper. In ``--sql`` mode it renders the same check as a
``DO`` block so the reviewed script refuses the same way.

The declarations and the engine live in ``data_migrations``, a layer above this one. ``migrations/env.py`` hands
them in as a ``DataMigrationCatalog`` under ``config.attributes["data_migrations"]`` (Alembic's own channel for
what a caller passes to its environment), so this module never imports upwards.
"""

from __future__ import annotations

from typing import Protocol

from alembic import context, op
from sqlalchemy import Connection

from tradedb.core.errors import DataMigrationPending, TradeDBError
from tradedb.schema.pending_rows import PendingRows, count_pending, pending_rows_sql
from tradedb.schema.state_schema import STATE_SCHEMA, has_state_table

CATALOG_ATTRIBUTE = "data_migrations"
"""Key of ``config.attributes`` under which ``migrations/env.py`` hands in the data-migration catalog."""


class DataMigrationCatalog(Protocol):
    """What the guard needs from the data-migration layer: declarations by name, and a way to finish them."""

    def get(self, name: str) -> PendingRows:
        """The declaration named ``name`` (an unknown name is a ``TradeDBError``)."""
        ...

    def finalize(self, conn: Connection, names: list[str], **launch: str | None) -> None:
        """Run ``names`` to completion now, recorded as launched by ``launch`` (environment, launched_by, run_id)."""
        ...


def catalog() -> DataMigrationCatalog:
    """The catalog ``env.py`` handed to this Alembic run, or a clear error when a caller bypassed ``env.py``."""
    found = context.config.attributes.get(CATALOG_ATTRIBUTE)
    if found is None:
        raise TradeDBError(
            f"no data-migration catalog in this Alembic run: migrations/env.py sets config.attributes"
            f"[{CATALOG_ATTRIBUTE!r}]; run revisions through it"
        )
    return found


def require_data_migrations(names: tuple[str, ...] | list[str]) -> None:
    """Refuse to continue this revision while any of ``names`` has rows pending (or finish them when asked)."""
    known = catalog()
    migrations = [known.get(n) for n in names]
    if context.is_offline_mode():
        for m in migrations:
            op.execute(
                f"DO $$ BEGIN IF ({pending_rows_sql(m, with_quarantine=False)}) > 0 THEN "
                f"RAISE EXCEPTION 'data migration {m.name} has rows pending: run tradedb data run {m.name}'; "
                "END IF; END $$"
            )
        return
    conn = op.get_bind()
    finalize = context.get_x_argument(as_dictionary=True).get("finalize_data", "").lower() in (
        "1",
        "true",
        "yes",
    )
    waiting = {m.name: count_pending(conn, m) for m in migrations}
    waiting = {name: n for name, n in waiting.items() if n}
    if waiting and finalize:
        known.finalize(conn, list(waiting), **context.config.attributes.get("launch", {}))
        waiting = {m.name: count_pending(conn, m) for m in migrations if m.name in waiting}
        waiting = {name: n for name, n in waiting.items() if n}
    if waiting:
        listing = ", ".join(f"{name} ({n} rows)" for name, n in waiting.items())
        raise DataMigrationPending(
            f"refusing to run this contract revision: data migration(s) still pending: {listing}. "
            f"Run `tradedb data run {' '.join(waiting)}` and upgrade again, or upgrade with "
            "`alembic -x finalize_data=true upgrade head` to finish them inline first. "
            "Revisions before this one were applied and committed; nothing of this one was."
        )


def restore_quarantined_originals(migration_name: str, column: str) -> None:
    """In a contract revision's ``downgrade()``: put back ``column`` as it was in the rows the migration quarantined.

    The rebuilt legacy column comes from the typed data, which quarantined rows never got; their original value
    lives only in the quarantine's copy of the row, and downgrading further would reset that quarantine. Copying it
    back first is what keeps a rollback from losing the rows the migration could not read.
    """
    m = catalog().get(migration_name)
    sql = (
        f"UPDATE {m.table} t SET {column} = q.row_data ->> '{column}' FROM {STATE_SCHEMA}.quarantine q "
        f"WHERE q.migration = '{m.name}' AND q.row_key = t.{m.key} AND jsonb_exists(q.row_data, '{column}')"
    )
    if context.is_offline_mode():
        op.execute(
            f"DO $$ BEGIN IF to_regclass('{STATE_SCHEMA}.quarantine') IS NOT NULL THEN {sql}; END IF; END $$"
        )
    elif has_state_table(op.get_bind(), "quarantine"):
        op.execute(sql)
