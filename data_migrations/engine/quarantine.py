"""The quarantine: rows a migration could not transform, kept with the reason and the original row, and the bound
on how many a migration may set aside before its run stops.

A row goes here when the declared step rejects it (``reject_sql``, a pandas transform's ``rejected``) or when the
database refuses it (``isolation``). Quarantined rows are never changed: the original row is copied as JSON, and a
revert or a contract revision's downgrade can give its values back. The bound exists because quarantine is also
how a bug hides: a transform that rejects everything would otherwise quietly set aside a whole table. A migration
declares ``max_quarantined`` (rows, or a share of the rows that needed it) or inherits the default below; past it
the run stops with the count and the first reasons.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from data_migrations.base import DataMigration
from data_migrations.engine.options import BadRow
from tradedb.core.errors import TradeDBError
from tradedb.schema.state_schema import STATE_SCHEMA

S = STATE_SCHEMA
DEFAULT_MAX_QUARANTINED_SHARE = (
    0.05  # a migration that declares nothing may set aside 5 % of the rows it needs
)
MIN_QUARANTINE_ALLOWANCE = 100  # ...but always this many, so a small table's few odd rows never stop a run
REASONS_SHOWN = 3  # distinct reasons quoted when the bound stops a run


def allowance(m: DataMigration, source_rows: int) -> int:
    """How many rows ``m`` may quarantine in all, given ``source_rows`` rows needed it when the run was planned."""
    limit = m.max_quarantined
    if m.on_bad_row == "stop":
        return 0
    if limit is None:
        return max(MIN_QUARANTINE_ALLOWANCE, int(DEFAULT_MAX_QUARANTINED_SHARE * source_rows))
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
        raise TradeDBError(
            f"data migration {m.name}: max_quarantined must be a row count or a share in [0, 1)"
        )
    if isinstance(limit, float):
        if limit >= 1:
            raise TradeDBError(
                f"data migration {m.name}: a max_quarantined share must be below 1.0, got {limit}"
            )
        return int(limit * source_rows)
    return limit


def quarantine(conn: Connection, m: DataMigration, rows: list[tuple[int, str]]) -> int:
    """Set ``rows`` (key, reason) aside with a copy of each original row; return how many were new.

    A migration declared ``on_bad_row="stop"`` quarantines nothing: the run stops naming the first keys instead.
    """
    if not rows:
        return 0
    if m.on_bad_row == "stop":
        keys = ", ".join(str(k) for k, _ in rows[:5])
        raise BadRow(
            f"data migration {m.name} met {len(rows)} row(s) it cannot transform (keys {keys}): {rows[0][1]}"
        )
    inserted = conn.execute(
        text(
            f"""INSERT INTO {S}.quarantine (migration, row_key, reason, row_data)
                SELECT :n, r.k, r.reason, to_jsonb(t) FROM unnest(CAST(:keys AS bigint[]), CAST(:reasons AS text[]))
                    AS r(k, reason) JOIN {m.table} t ON t.{m.key} = r.k
                ON CONFLICT (migration, row_key) DO NOTHING"""
        ),
        {"n": m.name, "keys": [int(k) for k, _ in rows], "reasons": [str(r) for _, r in rows]},
    )
    return inserted.rowcount


def require_within_allowance(conn: Connection, m: DataMigration) -> None:
    """Stop the run (``BadRow``) when ``m`` has set more rows aside than it may, naming the first reasons.

    Called inside the batch's transaction after its quarantine inserts, so the batch that crosses the bound is
    rolled back and the count in the message includes it.
    """
    row = conn.execute(
        text(f"SELECT source_rows, rows_quarantined FROM {S}.data_migration_state WHERE name = :n"),
        {"n": m.name},
    ).one()
    limit = allowance(m, row.source_rows)
    if row.rows_quarantined <= limit:
        return
    reasons = list(
        conn.scalars(
            text(
                f"""SELECT reason FROM (SELECT reason, min(quarantined_at) AS first FROM {S}.quarantine
                    WHERE migration = :n GROUP BY reason) r ORDER BY first LIMIT :k"""
            ),
            {"n": m.name, "k": REASONS_SHOWN},
        )
    )
    declared = "declared" if m.max_quarantined is not None else "default"
    raise BadRow(
        f"data migration {m.name} stopped: {row.rows_quarantined} rows quarantined, more than its {declared} "
        f"max_quarantined allows ({limit} of {row.source_rows}); a transform that rejects this much is likely "
        f"wrong. First reasons: " + "; ".join(reasons)
    )
