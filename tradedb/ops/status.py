"""Where an environment stands: schema revision, pending revisions, and data-migration state.

One function per question, shared by ``tradedb status``, ``tradedb check``, ``scripts/check_migrations.py`` and
the orchestration layer.
"""

from __future__ import annotations

import data_migrations
from data_migrations.engine import check_schema_position, state
from tradedb import schema
from tradedb.core.db import connect_checked
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import Environment
from tradedb.schema import ledger
from tradedb.schema.pending_rows import count_pending


def collect(env: Environment) -> dict:
    """Everything ``status`` shows, as plain data (also the ``--json`` output)."""
    with connect_checked(env) as conn:
        current = schema.current_revision(env, conn)
        edited = ledger.edited_revisions(conn)
    return {
        "environment": env.name,
        "url": env.safe_url,
        "current": current,
        "head": schema.head(),
        "pending": [r.to_json() for r in schema.pending(env, current)],
        "edited_revisions": [e.describe() for e in edited],
        "data_migrations": data_status(env),
    }


def check_up_to_date(env: Environment) -> tuple[bool, str]:
    """(True, message) when the database is at head; (False, what is pending) otherwise."""
    with connect_checked(env) as conn:
        current = schema.current_revision(env, conn)
        edited = ledger.edited_revisions(conn)
    head = schema.head()
    if edited:
        return False, "; ".join(e.describe() for e in edited)
    if current == head:
        return True, f"Database is up to date ({env.name} at {head})"
    waiting = schema.pending(env, current)
    listing = ", ".join(f"{r.revision} ({r.feature}, {r.ticket})" for r in waiting)
    return False, (
        f"There are pending migrations on {env.name}! Current: {current or '(empty)'}  Head: {head}  "
        f"Pending: {listing}"
    )


def data_status(env: Environment) -> list[dict]:
    """Each declared data migration with its recorded state and rows still pending (None if not applicable)."""

    out = []
    with connect_checked(env) as conn:
        recorded = state.state_rows(conn)
        for m in data_migrations.registry().values():
            row = recorded.get(m.name, {})
            try:
                position = check_schema_position(conn, m)
                pending = 0 if position == "contracted" else count_pending(conn, m)
            except TradeDBError:
                pending = None  # schema not at its revision yet
            out.append(
                {
                    "name": m.name,
                    "feature": m.feature,
                    "after": m.after,
                    "status": row.get(
                        "status", "pending" if pending else ("finished" if pending == 0 else "waiting")
                    ),
                    "rows_done": row.get("rows_done", 0),
                    "rows_quarantined": row.get("rows_quarantined", 0),
                    "source_rows": row.get("source_rows", 0),
                    "batches": row.get("batches", 0),
                    "retries": row.get("retries", 0),
                    "seconds": round(row.get("seconds_running", 0.0), 3),
                    "throttled_seconds": round(row.get("throttled_seconds", 0.0), 3),
                    "pending_rows": pending,
                    "error": row.get("error"),
                    "updated_at": row.get("updated_at"),
                }
            )
    return out
