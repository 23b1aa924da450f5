"""A backup as it is kept: its folder and ``manifest.json``, its row in ``tradedb_migrations.backups``, retention.

Because the manifest lives with the dump, a backup can be listed, found and restored when its source database is
gone; the database row is the environment's own record of what was taken.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from tradedb.core.db import connect_checked
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import Environment
from tradedb.ops.backup.settings import (
    env_name,
    environment_folder,
    keep_count,
    operator_error,
    without_password,
)
from tradedb.schema.state_schema import STATE_SCHEMA, ensure_state_tables, has_state_table

log = logging.getLogger("tradedb.backup")


MANIFEST = "manifest.json"

MANIFEST_FORMAT = 1

PARTIAL_PREFIX = ".partial-"  # a dump being written; renamed to its id once dump and manifest are complete

STALE_PARTIAL_S = (
    24 * 3600
)  # partial folders older than this are leftovers of a killed run: prune removes them

BACKUPS_TABLE = f"{STATE_SCHEMA}.backups"

STATUSES = ("ok", "failed", "pruned")

BACKUPS_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA};
CREATE TABLE IF NOT EXISTS {BACKUPS_TABLE} (
    id text PRIMARY KEY,
    environment text NOT NULL,
    path text NOT NULL,
    revision text,
    taken_at timestamptz NOT NULL,
    reason text NOT NULL,
    launched_by text NOT NULL,
    size_bytes bigint,
    duration_s double precision,
    checksums jsonb NOT NULL DEFAULT '{{}}',
    status text NOT NULL CHECK (status IN ('ok', 'failed', 'pruned')),
    error text
);
"""


@dataclass(frozen=True)
class Backup:
    """One backup, as its manifest describes it."""

    id: str
    environment: str
    path: Path
    url: str  # safe URL (password masked) of the source
    database: str
    revision: str | None
    taken_at: datetime
    reason: str
    launched_by: str
    size_bytes: int
    duration_s: float
    checksums: dict[str, str]
    tool_version: str
    server_version: str
    jobs: int
    pruned: tuple[str, ...] = field(default=(), compare=False)  # ids removed by retention after this backup

    @property
    def tables(self) -> int:
        return len(self.checksums)

    @property
    def tool_major(self) -> int:
        return int(self.tool_version.split(".")[0])

    def manifest(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("pruned")
        data.update(
            format=MANIFEST_FORMAT,
            dump_format="directory",
            path=str(self.path),
            taken_at=self.taken_at.isoformat(),
        )
        return data

    @classmethod
    def from_folder(cls, folder: Path) -> Backup:
        try:
            data = json.loads((folder / MANIFEST).read_text())
            return cls(
                id=data["id"],
                environment=data["environment"],
                path=folder,
                url=data["url"],
                database=data["database"],
                revision=data.get("revision"),
                taken_at=datetime.fromisoformat(data["taken_at"]),
                reason=data["reason"],
                launched_by=data["launched_by"],
                size_bytes=int(data["size_bytes"]),
                duration_s=float(data["duration_s"]),
                checksums=dict(data["checksums"]),
                tool_version=data["tool_version"],
                server_version=data["server_version"],
                jobs=int(data.get("jobs", 1)),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TradeDBError(f"unreadable backup manifest {folder / MANIFEST}: {exc}") from None


def ensure_backups_table(conn: Connection) -> None:
    ensure_state_tables(conn, lambda: has_state_table(conn, "backups"), BACKUPS_DDL)


def record_row(
    engine: Engine, backup: Backup | dict[str, Any], status: str, error: str | None = None
) -> None:
    """Upsert the backup's row in the source database's ``tradedb_migrations.backups``."""
    row = backup.manifest() if isinstance(backup, Backup) else dict(backup)
    with engine.begin() as conn:
        ensure_backups_table(conn)
        conn.execute(
            text(
                f"""INSERT INTO {BACKUPS_TABLE} (id, environment, path, revision, taken_at, reason, launched_by,
                        size_bytes, duration_s, checksums, status, error)
                    VALUES (:id, :environment, :path, :revision, :taken_at, :reason, :launched_by,
                        :size_bytes, :duration_s, CAST(:checksums AS jsonb), :status, :error)
                    ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, error = EXCLUDED.error,
                        size_bytes = EXCLUDED.size_bytes, duration_s = EXCLUDED.duration_s,
                        checksums = EXCLUDED.checksums, path = EXCLUDED.path"""
            ),
            {
                **{k: row.get(k) for k in ("id", "environment", "path", "revision", "reason", "launched_by")},
                "taken_at": row["taken_at"],
                "size_bytes": row.get("size_bytes"),
                "duration_s": row.get("duration_s"),
                "checksums": json.dumps(row.get("checksums") or {}),
                "status": status,
                "error": error,
            },
        )


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def list_backups(env: Environment | str) -> list[Backup]:
    """Complete backups of an environment, newest first, read from their manifests (no database needed)."""
    folder = environment_folder(env)
    if not folder.is_dir():
        return []
    found = []
    try:
        paths = list(folder.iterdir())
    except OSError as exc:
        raise operator_error(exc, f"listing the backups of {env_name(env)}") from None
    for path in paths:
        if not path.is_dir() or not (path / MANIFEST).is_file():
            continue  # partial dumps and stray files are not backups
        try:
            found.append(Backup.from_folder(path))
        except TradeDBError as exc:  # one damaged manifest must not hide every other backup
            log.warning("skipping %s: %s", path, exc)
    return sorted(found, key=lambda b: (b.taken_at, b.id), reverse=True)


def latest_backup(env: Environment | str) -> Backup | None:
    backups = list_backups(env)
    return backups[0] if backups else None


def find_backup(env: Environment | str, backup_id: str) -> Backup:
    """The backup ``backup_id`` (or ``latest``) of an environment, or an error naming the newest ones."""
    backups = list_backups(env)
    name = env_name(env)
    if not backups:
        raise TradeDBError(
            f"no backups of {name} in {environment_folder(env)}: take one with `tradedb backup --env {name}`"
        )
    if backup_id == "latest":
        return backups[0]
    for backup in backups:
        if backup.id == backup_id:
            return backup
    newest = ", ".join(b.id for b in backups[:5])
    raise TradeDBError(f"no backup {backup_id!r} of {name}; the newest are: {newest}")


def prune(env: Environment | str, keep: int | None = None) -> list[str]:
    """Delete an environment's backups beyond the newest ``keep`` (default ``[backups] keep``); return their ids.

    Their rows in the source database are marked 'pruned' when ``env`` is an Environment whose database answers;
    the files go either way, since retention exists to bound the disk.
    """
    keep = keep_count() if keep is None else keep
    if keep < 1:
        raise TradeDBError("backup retention must keep at least 1 backup")
    doomed = list_backups(env)[keep:]
    for backup in doomed:
        shutil.rmtree(backup.path, ignore_errors=True)
    _remove_stale_partials(environment_folder(env))
    if doomed and isinstance(env, Environment):
        try:
            with connect_checked(env) as conn:
                ensure_backups_table(conn)
                conn.execute(
                    text(f"UPDATE {BACKUPS_TABLE} SET status = 'pruned' WHERE id = ANY(:ids)"),
                    {"ids": [b.id for b in doomed]},
                )
        except (TradeDBError, DBAPIError) as exc:
            log.warning(
                "pruned backup folders but could not mark their rows: %s", without_password(str(exc), env.url)
            )
    return [b.id for b in doomed]


def _remove_stale_partials(folder: Path) -> None:
    if not folder.is_dir():
        return
    cutoff = time.time() - STALE_PARTIAL_S
    for partial in folder.glob(f"{PARTIAL_PREFIX}*"):
        # gone meanwhile (its run finished) or unreadable: retention must not fail the backup that ran it
        with contextlib.suppress(OSError):
            if partial.stat().st_mtime < cutoff:
                shutil.rmtree(partial, ignore_errors=True)
