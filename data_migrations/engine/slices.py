"""Key slices: the unit workers claim. Planned once over ``[min(key), max(key)]`` and kept in the state schema.

A later run resumes the undone slices of the plan; keys written above the planned maximum since (by an old app
version still writing legacy rows) get new slices at the end, so nothing written meanwhile is missed.
"""

from __future__ import annotations

import math

from sqlalchemy import Connection, Engine, text

from data_migrations.base import DataMigration
from data_migrations.engine.options import resolve_workers
from tradedb.schema.pending_rows import estimate_pending, pending_rows_sql
from tradedb.schema.state_schema import STATE_SCHEMA

S = STATE_SCHEMA
SLICES_PER_WORKER = 4  # with several workers, cut about this many slices per worker


def plan_slices(conn: Connection, m: DataMigration, requested_workers: int | str, slice_keys: int) -> int:
    """Cut the key space into slices unless undone slices already exist (then this run resumes them); return how
    many workers the run gets.

    The pending rows are estimated, not counted, on a big table (``estimate_pending``): the number sizes the
    workers and the progress bar, and the run's end proves completeness exactly. With several workers the slices
    get smaller, ``SLICES_PER_WORKER`` each, so no worker is left walking the last big slice alone.
    """
    conn.execute(
        text(f"UPDATE {S}.data_migration_slices SET claimed_by = NULL WHERE name = :n"), {"n": m.name}
    )
    undone = conn.scalar(
        text(f"SELECT count(*) FROM {S}.data_migration_slices WHERE name = :n AND NOT done"), {"n": m.name}
    )
    if undone:
        left = conn.scalar(
            text(
                f"""SELECT greatest(source_rows - rows_done - rows_quarantined, 0)
                    FROM {S}.data_migration_state WHERE name = :n"""
            ),
            {"n": m.name},
        )
        return resolve_workers(requested_workers, int(left or 0))
    lo, hi = conn.execute(text(f"SELECT min({m.key}), max({m.key}) FROM {m.table}")).one()
    source, exact = estimate_pending(conn, m)
    if lo is None or source == 0:
        return 1  # nothing needs it: keep the tallies of the run that did the work
    workers = resolve_workers(requested_workers, source)
    if workers > 1:
        slice_keys = min(slice_keys, max(1, math.ceil((hi - lo + 1) / (workers * SLICES_PER_WORKER))))
    conn.execute(text(f"DELETE FROM {S}.data_migration_slices WHERE name = :n"), {"n": m.name})
    conn.execute(
        text(
            f"""UPDATE {S}.data_migration_state SET rows_done = 0, batches = 0, retries = 0, max_key = :hi,
                  rows_quarantined = (SELECT count(*) FROM {S}.quarantine WHERE migration = :n),
                  source_rows = :src + (SELECT count(*) FROM {S}.quarantine WHERE migration = :n),
                  source_estimated = :estimated, seconds_running = 0, throttled_seconds = 0 WHERE name = :n"""
        ),
        {"n": m.name, "src": source, "hi": hi, "estimated": not exact},
    )
    _insert_slices(conn, m, lo - 1, hi, first_no=0, slice_keys=slice_keys)
    return workers


def _insert_slices(
    conn: Connection, m: DataMigration, start: int, end: int, first_no: int, slice_keys: int
) -> None:
    """Insert slices ``(start, end]`` cut every ``slice_keys`` keys, numbered from ``first_no``, in one statement."""
    conn.execute(
        text(
            f"""INSERT INTO {S}.data_migration_slices (name, slice_no, lo, hi, last_key)
                SELECT :n, :first + i, lo, least(lo + :k, :end), lo
                FROM generate_series(CAST(:start AS bigint), CAST(:end AS bigint) - 1, CAST(:k AS bigint))
                     WITH ORDINALITY AS g(lo, ord), LATERAL (SELECT ord - 1 AS i) n"""
        ),
        {"n": m.name, "first": first_no, "start": start, "end": end, "k": slice_keys},
    )


def extend_slices_in_txn(engine: Engine, m: DataMigration, slice_keys: int) -> bool:
    with engine.begin() as conn:
        return _extend_slices(conn, m, slice_keys)


def _extend_slices(conn: Connection, m: DataMigration, slice_keys: int) -> bool:
    """Add slices for keys above the planned maximum that still need the migration; True when any were added."""
    planned = conn.scalar(
        text(f"SELECT max_key FROM {S}.data_migration_state WHERE name = :n"), {"n": m.name}
    )
    newest = conn.scalar(text(f"SELECT max({m.key}) FROM {m.table}"))
    if newest is None or (planned is not None and newest <= planned):
        return False
    start = planned if planned is not None else 0
    more = conn.scalar(
        text(pending_rows_sql(m, with_quarantine=True) + f" AND t.{m.key} > :start"), {"start": start}
    )
    conn.execute(
        text(
            f"UPDATE {S}.data_migration_state SET max_key = :hi, source_rows = source_rows + :more WHERE name = :n"
        ),
        {"n": m.name, "hi": newest, "more": more},
    )
    if not more:
        return False
    first = conn.scalar(
        text(f"SELECT coalesce(max(slice_no) + 1, 0) FROM {S}.data_migration_slices WHERE name = :n"),
        {"n": m.name},
    )
    _insert_slices(conn, m, start, newest, first_no=first, slice_keys=slice_keys)
    return True
