"""Carrying the target's own history across a restore, and the ledger rows of backups and restores.

The target's ledger entries and backup rows are read before the swap and appended to the restored database (for
another environment's backup: all of the target's own environment), so its history survives the restore.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from tradedb.core.db import connect_checked, make_engine
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import Environment
from tradedb.ops.backup.manifest import BACKUPS_TABLE, Backup, ensure_backups_table
from tradedb.ops.backup.settings import without_password
from tradedb.schema import has_state_table, ledger

log = logging.getLogger("tradedb.backup")


@dataclass(frozen=True)
class _History:
    """The target's own record (ledger entries, backup rows) that a restore must not erase."""

    ledger: list[dict[str, Any]]
    backups: list[dict[str, Any]]


def history_to_carry(target: Environment, backup: Backup) -> _History | None:
    """What of the target's record the restored copy lacks and must get.

    Restoring the target's own backup: every ledger entry that finished after the backup began (everything before is
    in the dump) and all backup rows. Restoring another environment's backup (a rehearsal restores production's
    into staging): the dump holds none of the target's record, so all of its own-environment ledger entries and
    backup rows, or ``tradedb report --env staging`` would forget every earlier rehearsal and deploy on staging.
    Entries of other environments in the target (production's, from an earlier refresh) are left to the dump.
    """
    if backup.environment == target.name:
        return _read_history(target, since=backup.taken_at)
    return _read_history(target, environment=target.name)


def _read_history(
    env: Environment, *, since: datetime | None = None, environment: str | None = None
) -> _History | None:
    """The target's ledger entries (finished from ``since``, of ``environment``) and backup rows (of it); None
    when they cannot be read."""

    try:
        with connect_checked(env) as conn:
            entries = [
                r
                for r in ledger.entries(conn, environment=environment)
                if since is None or r["finished_at"] >= since
            ]
            rows = []
            if has_state_table(conn, "backups"):
                rows = [
                    dict(r)
                    for r in conn.execute(text(f"SELECT * FROM {BACKUPS_TABLE}")).mappings()
                    if environment is None or r["environment"] == environment
                ]
        return _History(entries, rows)
    except (TradeDBError, DBAPIError) as exc:
        log.warning(
            "could not read the %s database's ledger to carry it over: %s",
            env.name,
            without_password(str(exc), env.url),
        )
        return None


def append_history(env: Environment, history: _History | None) -> None:
    """Add what ``history`` holds and ``env`` does not (a run that ended during the dump's snapshot is in it)."""

    if history is None or not (history.ledger or history.backups):
        return

    def key(row: dict[str, Any]) -> tuple:
        return row["kind"], row["name"], row["direction"], row["environment"], row["started_at"]

    names = set(ledger.LedgerEntry.__dataclass_fields__)
    try:
        with connect_checked(env) as conn:
            present = {key(r) for r in ledger.entries(conn)}
            for row in history.ledger:
                if key(row) not in present:
                    ledger.record(conn, ledger.LedgerEntry(**{k: v for k, v in row.items() if k in names}))
            if history.backups:
                ensure_backups_table(conn)
                columns = list(history.backups[0])
                values = ", ".join(
                    "CAST(:checksums AS jsonb)" if c == "checksums" else f":{c}" for c in columns
                )
                for row in history.backups:
                    conn.execute(
                        text(
                            f"INSERT INTO {BACKUPS_TABLE} ({', '.join(columns)}) VALUES ({values}) "
                            "ON CONFLICT (id) DO NOTHING"
                        ),
                        {**row, "checksums": json.dumps(row["checksums"])},
                    )
    except (TradeDBError, DBAPIError) as exc:
        log.warning(
            "could not carry the ledger over to the restored %s database: %s",
            env.name,
            without_password(str(exc), env.url),
        )


def record_step(
    engine: Engine,
    *,
    environment: str,
    kind: str,
    name: str,
    launched_by: str,
    started_at: datetime,
    detail: dict[str, Any],
    error: str | None = None,
    size_before: int | None = None,
) -> None:
    """Record a backup or restore in the ledger of the database behind ``engine``; never raises."""

    entry = ledger.LedgerEntry(
        kind=kind,
        name=name,
        direction=kind,
        environment=environment,
        launched_by=launched_by,
        run_id=launched_by.removeprefix("dagster:") if launched_by.startswith("dagster:") else None,
        started_at=started_at,
        finished_at=ledger.now(),
        outcome="failure" if error else "success",
        error=error,
        db_size_before=size_before,
        detail=detail,
    )
    ledger.record_apart(engine, entry)


def record_on_target(target: Environment, **entry: Any) -> None:
    """Record a restore in the target's ledger (after the swap, the restored database's)."""
    engine = make_engine(target)
    try:
        record_step(engine, environment=target.name, **entry)
    except Exception as exc:  # the target may be gone; the restore's outcome matters more than its record
        log.warning("could not record the restore in the ledger: %s", exc)
    finally:
        engine.dispose()
