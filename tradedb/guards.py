"""The ``requires_data`` guard that contract revisions call first thing in ``upgrade()``.

A contract revision (drop the legacy column, set NOT NULL) is only safe once its data migrations have reached
every row. The guard counts the rows that still need each migration (its ``pending_where``, minus rows already
in quarantine) and refuses with the command to run. A fresh or empty database has nothing pending, so it is never
blocked. With ``-x finalize_data=true`` it finishes the pending migrations inline through the engine first, like
GitLab's ensure-batched-background-migration-is-finished helper. In ``--sql`` mode it renders the same check as a
``DO`` block so the reviewed script refuses the same way.
"""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import Connection, text

from tradedb.errors import DataMigrationPending
from tradedb.schema import STATE_SCHEMA, has_state_table


def pending_rows_sql(migration, *, with_quarantine: bool) -> str:
    """SQL counting the rows that still need ``migration``; quarantined rows count as handled."""
    sql = f"SELECT count(*) FROM {migration.table} t WHERE ({migration.pending_where})"
    if with_quarantine:
        sql += (
            f" AND NOT EXISTS (SELECT 1 FROM {STATE_SCHEMA}.quarantine q"
            f" WHERE q.migration = '{migration.name}' AND q.row_key = t.{migration.key})"
        )
    return sql


def count_pending(conn: Connection, migration) -> int:
    """Rows of ``migration``'s table that still need it, on this connection."""
    return int(
        conn.scalar(text(pending_rows_sql(migration, with_quarantine=has_state_table(conn, "quarantine"))))
    )


def require_data_migrations(names: tuple[str, ...] | list[str]) -> None:
    """Refuse to continue this revision while any of ``names`` has rows pending (or finish them when asked)."""
    import data_migrations

    migrations = [data_migrations.get(n) for n in names]
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
        from data_migrations.engine import finalize_inline

        finalize_inline(conn, list(waiting), **context.config.attributes.get("launch", {}))
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


def reset_data_on_downgrade(ctx, step, heads, run_args) -> None:
    """``on_version_apply`` hook: downgrading revision R forgets the state of data migrations that run after R.

    So up -> down -> up runs them again from scratch instead of trusting checkpoints over columns that were
    dropped and re-created empty.
    """
    if step.is_upgrade or ctx.as_sql:
        return
    import data_migrations
    from data_migrations import state

    removed = set(step.up_revision_ids)  # on a downgrade step, the revision being removed
    for migration in data_migrations.registry().values():
        if migration.after in removed:
            state.reset(ctx.connection, migration.name)


def restore_quarantined_originals(migration_name: str, column: str) -> None:
    """In a contract revision's ``downgrade()``: put back ``column`` as it was in the rows the migration quarantined.

    The rebuilt legacy column comes from the typed data, which quarantined rows never got; their original value
    lives only in the quarantine's copy of the row, and downgrading further would reset that quarantine. Copying it
    back first is what keeps a rollback from losing the rows the migration could not read.
    """
    import data_migrations

    m = data_migrations.get(migration_name)
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
