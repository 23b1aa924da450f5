"""Taking a backup: ``pg_dump --format=directory --jobs=N`` and the table checksums of the same snapshot.

We open a REPEATABLE READ transaction, export its snapshot (``pg_export_snapshot()``), checksum every app table
in it and hand the snapshot to ``pg_dump --snapshot``, so the checksums and the dump describe one instant even
while the app keeps writing. The dump is written under a partial name and renamed to its id once dump and
manifest are complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from tradedb.core.db import connect_checked, database_size, make_engine, unreachable
from tradedb.core.errors import TradeDBError
from tradedb.core.launchers import cli_user
from tradedb.core.settings import Environment
from tradedb.ops.backup.history import record_step
from tradedb.ops.backup.manifest import (
    MANIFEST,
    PARTIAL_PREFIX,
    Backup,
    ensure_backups_table,
    folder_size,
    prune,
    record_row,
)
from tradedb.ops.backup.settings import default_jobs, environment_folder, operator_error, without_password
from tradedb.ops.backup.tools import client_tools, run_tool
from tradedb.ops.checksums import database_checksums
from tradedb.schema import current_revision

log = logging.getLogger("tradedb.backup")


def _base_id(taken_at: datetime, revision: str | None) -> str:
    return f"{taken_at:%Y%m%dT%H%M%SZ}_{revision or 'empty'}"


def _new_id(folder: Path, taken_at: datetime, revision: str | None) -> tuple[str, Path]:
    """Reserve ``<UTC timestamp>_<revision>`` (suffixed when taken twice in one second) as a partial folder."""
    base = _base_id(taken_at, revision)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        backup_id = base if n == 1 else f"{base}-{n}"
        partial = folder / f"{PARTIAL_PREFIX}{backup_id}"
        if (folder / backup_id).exists():
            continue
        try:
            partial.mkdir()
        except FileExistsError:
            continue
        return backup_id, partial
    raise TradeDBError(f"could not pick a free backup id under {folder}")


def _snapshot_connection(engine: Engine, env: Environment) -> Connection:
    """A REPEATABLE READ, read-only connection: its first query fixes the snapshot that pg_dump imports."""
    try:
        conn = engine.connect()
    except OperationalError as exc:
        raise unreachable(env, exc) from None
    return conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)


def take_backup(
    env: Environment,
    *,
    reason: str,
    launched_by: str | None = None,
    jobs: int | None = None,
    retention: bool = True,
) -> Backup:
    """Dump ``env`` (directory format, parallel) with checksums of the same snapshot; record it; apply retention.

    Raises TradeDBError when the database cannot be reached, no client tools fit its server, pg_dump fails, the
    backup folder cannot be created or written, or the database refuses a statement (a missing privilege); then no
    backup folder is left behind and no 'ok' row is written (a 'failed' row is, when the database answers).
    ``retention=False`` skips pruning (the safety backup of an in-place restore must not prune the backup being
    restored); a failing prune after a good backup is logged, never raised: the backup itself is made.
    """

    launched_by = launched_by or cli_user("cli")
    jobs = jobs or default_jobs()
    started, taken_at = time.monotonic(), datetime.now(UTC)
    engine = make_engine(env)
    partial: Path | None = None
    row: dict[str, Any] | None = None
    try:
        with connect_checked(env, engine) as conn:
            ensure_backups_table(conn)  # before the snapshot, so pg_dump never waits on our own DDL
            server_num = int(conn.scalar(text("SHOW server_version_num")))
            server_version = str(conn.scalar(text("SHOW server_version"))).split()[0]
            size_before = database_size(conn)
        tools = client_tools(server_num)
        with _snapshot_connection(engine, env) as conn, conn.begin():
            snapshot = conn.scalar(text("SELECT pg_export_snapshot()"))
            revision = current_revision(env, conn)
            root = environment_folder(env)
            base_id = _base_id(taken_at, revision)
            row = {  # before the folder: a backup root that cannot be created is recorded as a failed backup too
                "id": base_id,
                "environment": env.name,
                "path": str(root / base_id),
                "revision": revision,
                "taken_at": taken_at,
                "reason": reason,
                "launched_by": launched_by,
            }
            backup_id, partial = _new_id(root, taken_at, revision)
            folder = partial.parent / backup_id
            row.update(id=backup_id, path=str(folder))
            checksums = run_tool(  # pg_dump and the checksums read the same snapshot at the same time
                tools.pg_dump,
                ["--format=directory", f"--jobs={jobs}", f"--snapshot={snapshot}", f"--file={partial}"],
                env.url,
                f"pg_dump of the {env.name} database",
                alongside=lambda: database_checksums(conn),
            )
        backup = Backup(
            id=backup_id,
            environment=env.name,
            path=folder,
            url=env.safe_url,
            database=env.url.database or "",
            revision=revision,
            taken_at=taken_at,
            reason=reason,
            launched_by=launched_by,
            size_bytes=folder_size(partial),
            duration_s=round(time.monotonic() - started, 3),
            checksums=checksums,
            tool_version=tools.version,
            server_version=server_version,
            jobs=jobs,
        )
        (partial / MANIFEST).write_text(json.dumps(backup.manifest(), indent=2) + "\n")
        partial.rename(folder)
        partial = None
        record_row(engine, backup, "ok")
        record_step(
            engine,
            environment=env.name,
            kind="backup",
            name=backup.id,
            launched_by=launched_by,
            started_at=taken_at,
            size_before=size_before,
            detail=_backup_detail(backup),
        )
    except BaseException as exc:
        error = operator_error(exc, f"backup of the {env.name} database", env.url)
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        if row is not None and isinstance(exc, Exception):
            message = without_password(str(error), env.url)
            with contextlib.suppress(Exception):
                record_row(engine, {**row, "duration_s": time.monotonic() - started}, "failed", message)
            record_step(
                engine,
                environment=env.name,
                kind="backup",
                name=row["id"],
                launched_by=launched_by,
                started_at=taken_at,
                error=message,
                detail={"reason": reason},
            )
        if error is exc:
            raise
        raise error from None
    finally:
        engine.dispose()
    if not retention:
        return backup
    try:
        pruned = prune(env)
    except TradeDBError as exc:
        log.warning("backup %s was made, but retention could not prune older ones: %s", backup.id, exc)
        pruned = []
    return replace(backup, pruned=tuple(pruned))


def _backup_detail(backup: Backup) -> dict[str, Any]:
    return {
        "path": str(backup.path),
        "revision": backup.revision,
        "reason": backup.reason,
        "size_bytes": backup.size_bytes,
        "tables": backup.tables,
        "tool_version": backup.tool_version,
    }
