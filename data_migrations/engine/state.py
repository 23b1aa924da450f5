"""Run state of data migrations, kept in the target database's own ``tradedb_migrations`` schema.

Everything a run needs to resume lives here, never in a process: the status row per migration (with the
operator's pause/cancel written by another process), the key slices workers claim, the quarantine, and a row per
batch for timings. Status changes go through ``TRANSITIONS``, one edge per line with why it exists, checked on every
write, like Shopify's maintenance_tasks.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from tradedb.core.errors import TradeDBError
from tradedb.schema.state_schema import STATE_SCHEMA, ensure_state_tables, has_state_table

S = STATE_SCHEMA

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {S};
CREATE TABLE IF NOT EXISTS {S}.data_migration_state (
    name text PRIMARY KEY,
    status text NOT NULL DEFAULT 'pending',
    source_rows bigint NOT NULL DEFAULT 0,
    rows_done bigint NOT NULL DEFAULT 0,
    rows_quarantined bigint NOT NULL DEFAULT 0,
    batches integer NOT NULL DEFAULT 0,
    retries integer NOT NULL DEFAULT 0,
    batch_size integer,
    max_key bigint,
    started_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    seconds_running double precision NOT NULL DEFAULT 0,
    error text
);
ALTER TABLE {S}.data_migration_state ADD COLUMN IF NOT EXISTS throttled_seconds double precision NOT NULL DEFAULT 0;
ALTER TABLE {S}.data_migration_state ADD COLUMN IF NOT EXISTS source_estimated boolean NOT NULL DEFAULT false;
CREATE TABLE IF NOT EXISTS {S}.data_migration_slices (
    name text NOT NULL,
    slice_no integer NOT NULL,
    lo bigint NOT NULL,
    hi bigint NOT NULL,
    last_key bigint NOT NULL,
    done boolean NOT NULL DEFAULT false,
    claimed_by text,
    claimed_at timestamptz,
    PRIMARY KEY (name, slice_no)
);
CREATE TABLE IF NOT EXISTS {S}.quarantine (
    migration text NOT NULL,
    row_key bigint NOT NULL,
    reason text NOT NULL,
    row_data jsonb,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, row_key)
);
CREATE TABLE IF NOT EXISTS {S}.data_migration_batches (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    worker text NOT NULL,
    lo bigint NOT NULL,
    hi bigint NOT NULL,
    rows integer NOT NULL,
    quarantined integer NOT NULL,
    attempts integer NOT NULL,
    seconds double precision NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);
"""

NEWEST_COLUMN = "source_estimated"  # the last column DDL adds: when it exists, the schema is current

STATUSES = ("pending", "running", "paused", "interrupted", "cancelled", "failed", "finished")

TRANSITIONS: dict[tuple[str, str], str] = {
    ("pending", "running"): "a runner started it",
    ("running", "paused"): "an operator paused it; runners wait after their current batch",
    ("paused", "running"): "an operator resumed it; waiting runners go on",
    ("running", "cancelled"): "an operator cancelled it; runners stop after their current batch",
    ("paused", "cancelled"): "an operator cancelled it while paused",
    ("running", "interrupted"): "the deadline came, or the runner died and a new one found it stale",
    ("running", "failed"): "a batch kept failing past the retry limits",
    ("running", "finished"): "every slice is done and nothing is left pending",
    ("interrupted", "running"): "a new run resumes from the checkpoints",
    ("failed", "running"): "an operator ran it again after fixing the cause",
    ("cancelled", "running"): "an operator ran it again; it resumes from the checkpoints",
    (
        "finished",
        "running",
    ): "rows needing it appeared again (written by an old app version) and it runs again",
    ("paused", "interrupted"): "the deadline came while paused",
}


def ensure_schema(conn: Connection) -> None:
    """Create the state schema, or bring it up to date, unless it already is (our own schema, not Alembic's).

    Checked first, because even ``CREATE SCHEMA IF NOT EXISTS`` needs the CREATE privilege on the database, which
    a production migrator role that only reads and writes its tables does not have.
    """

    def current() -> bool:
        newest = conn.scalar(
            text(
                """SELECT count(*) = 1 FROM information_schema.columns WHERE table_schema = :s
                   AND table_name = 'data_migration_state' AND column_name = :newest"""
            ),
            {"s": S, "newest": NEWEST_COLUMN},
        )
        return bool(newest) and has_state_table(conn, "data_migration_batches")

    ensure_state_tables(conn, current, DDL)


def status_of(conn: Connection, name: str, *, lock: bool = False) -> str:
    row = conn.execute(
        text(
            f"SELECT status FROM {S}.data_migration_state WHERE name = :n" + (" FOR UPDATE" if lock else "")
        ),
        {"n": name},
    ).first()
    return row.status if row else "pending"


def transition(conn: Connection, name: str, to: str, *, error: str | None = None) -> str:
    """Move ``name`` to status ``to`` if the edge is allowed; return the previous status or raise."""
    conn.execute(
        text(f"INSERT INTO {S}.data_migration_state (name) VALUES (:n) ON CONFLICT (name) DO NOTHING"),
        {"n": name},
    )
    current = status_of(conn, name, lock=True)
    if current == to:
        return current
    if (current, to) not in TRANSITIONS:
        raise TradeDBError(f"data migration {name} is {current}; it cannot become {to}")
    conn.execute(
        text(
            f"""UPDATE {S}.data_migration_state SET status = :to, updated_at = now(),
                   error = CASE WHEN :to = 'running' THEN NULL ELSE coalesce(:err, error) END,
                   finished_at = CASE WHEN :to = 'finished' THEN now() ELSE finished_at END,
                   started_at = CASE WHEN :to = 'running' AND :cur <> 'paused' THEN now() ELSE started_at END
                WHERE name = :n"""
        ),
        {"n": name, "to": to, "err": error, "cur": current},
    )
    return current


def reset(conn: Connection, name: str) -> None:
    """Forget everything about ``name`` so it runs from scratch (its schema was downgraded past ``after``)."""
    if not has_state_table(conn, "data_migration_state"):
        return
    for table, column in (
        ("data_migration_state", "name"),
        ("data_migration_slices", "name"),
        ("data_migration_batches", "name"),
        ("quarantine", "migration"),
    ):
        conn.execute(text(f"DELETE FROM {S}.{table} WHERE {column} = :n"), {"n": name})


def state_rows(conn: Connection) -> dict[str, dict]:
    """Every recorded state row by name (migrations never run have none)."""
    if not has_state_table(conn, "data_migration_state"):
        return {}
    rows = conn.execute(text(f"SELECT * FROM {S}.data_migration_state")).mappings()
    return {r["name"]: dict(r) for r in rows}


def quarantined(conn: Connection, name: str, limit: int | None = None) -> list[dict]:
    if not has_state_table(conn, "quarantine"):
        return []
    sql = f"SELECT row_key, reason, row_data, quarantined_at FROM {S}.quarantine WHERE migration = :n ORDER BY row_key"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [dict(r) for r in conn.execute(text(sql), {"n": name}).mappings()]


def request(conn: Connection, name: str, to: str) -> str:
    """An operator's pause/resume/cancel, written for the runners to see at their next batch boundary."""
    ensure_schema(conn)
    return transition(conn, name, to)
