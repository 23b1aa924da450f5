"""Backups before schema changes, and restores that prove they brought back every row.

A backup is a ``pg_dump --format=directory --jobs=N`` folder under ``<backup root>/<environment>/<id>/`` with a
``manifest.json`` beside the dump. The manifest carries the table checksums of the source (``tradedb.ops.checksums``)
taken in the SAME snapshot as the dump: we open a REPEATABLE READ transaction, export its snapshot
(``pg_export_snapshot()``), checksum every app table in it and hand the snapshot to ``pg_dump --snapshot``, so the
checksums and the dump describe one instant even while the app keeps writing. Because the manifest lives with the
dump, a backup can be listed, found and restored when its source database is gone.

A restore is verified: the restored copy is checksummed and compared with the manifest. To keep a failed
verification from costing the target anything, the dump is restored into a scratch database next to the target
(``<db>_restore_<ts>``), verified there, and only then swapped in by renaming (the old database is renamed to
``<db>_old_<ts>``; dropped, except in production, where it is kept for the on-call engineer to drop). Renaming
needs CREATEDB and ownership of the target; a role without them gets the in-place fallback (``pg_restore --clean
--if-exists --single-transaction`` into the target), rehearsed and verified on a scratch copy first only when the
role may create one. ``RestoreResult.mode`` says which ran; an in-place restore into production keeps no old
database, so it first takes a fresh backup of the target (``RestoreResult.safety_backup``), refusing to go on
without one. Every restore first checks that the dump's table of contents reads and has a data file for every table
of the manifest, and holds the target's migration lock from before its first change to its end, so it neither runs
under a migration nor lets one start. The target's own ledger entries and backup rows are carried into the restored
database (for another environment's backup: all of the target's own environment), so its history survives.
Production needs ``allow_production``, and ``allow_cross_environment`` too for another environment's backup.

A folder that cannot be written or a statement the database refuses (a missing privilege) ends a backup or a
restore with one ``TradeDBError`` line saying what failed and how to fix it, never with a traceback.

The PostgreSQL client tools are looked up in ``TRADEDB_PG_BIN``, then ``PATH``, then the binaries bundled in the
``pgserver`` package; ``pg_dump`` refuses a server newer than itself, so the first set whose major version is at
least the server's wins. Passwords never reach a command line (``ps`` shows argv): they go through a temporary
``PGPASSFILE`` readable by us alone, deleted when the tool exits.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from tradedb.core.db import connect_checked, database_size, make_engine, unreachable
from tradedb.core.errors import TradeDBError, cause_line
from tradedb.core.launchers import cli_user
from tradedb.core.paths import project_root
from tradedb.core.settings import Environment, config_path, load_config
from tradedb.ops.checksums import database_checksums, differing
from tradedb.schema import STATE_SCHEMA, current_revision, has_state_table, ledger
from tradedb.schema.locks import LOCK_KEY, MigrationLocked, holder_pids_sql, migration_lock

log = logging.getLogger("tradedb.backup")

# ------------------------------------------------------------------------------------------------ constants

PG_BIN_VARIABLE = "TRADEDB_PG_BIN"  # a folder holding pg_dump, pg_restore and psql; searched first
BUNDLED_VARIABLE = "TRADEDB_PG_BUNDLED"  # "0" turns off the fallback to pgserver's bundled tools
BACKUP_DIR_VARIABLE = "TRADEDB_BACKUP_DIR"  # backup root; wins over [backups] root
TOOLS = ("pg_dump", "pg_restore", "psql")
DEFAULT_KEEP = 5  # backups kept per environment when [backups] keep is not set
MAX_DEFAULT_JOBS = 4  # parallel dump/restore workers by default: min(this, cpu count)
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
PARTIAL_PREFIX = ".partial-"  # a dump being written; renamed to its id once dump and manifest are complete
STALE_PARTIAL_S = (
    24 * 3600
)  # partial folders older than this are leftovers of a killed run: prune removes them
TOOL_TIMEOUT_S = 10  # for `pg_dump --version`
SWAP_RETRY_S = 10.0  # how long the swap keeps terminating sessions that hold the target open
MAX_IDENTIFIER = 63  # PostgreSQL's limit on a database name
MAINTENANCE_DATABASES = ("postgres", "template1")  # where CREATE/ALTER/DROP DATABASE are issued from
BACKUPS_TABLE = f"{STATE_SCHEMA}.backups"
PRODUCTION = "production"
# a swap keeps these environments' replaced database renamed, never drops it: it holds the writes since the backup
KEEP_REPLACED_ENVIRONMENTS = frozenset({PRODUCTION})
# application_name of the restore's sessions (a blocked migration names it)
RESTORE_APPLICATION = "tradedb-restore"
APP_SCHEMA = "public"  # the schema of the tables the manifest checksums
LIST_TIMEOUT_S = 120  # for `pg_restore --list`, which reads only the dump's table of contents
# a data entry of `pg_restore --list`: "3367; 0 16404 TABLE DATA public accounts owner"
TABLE_DATA_ENTRY = re.compile(
    r"^(?P<id>\d+); \d+ \d+ TABLE DATA (?P<schema>\S+) (?P<table>\S+) ", re.MULTILINE
)
DATA_FILE_SUFFIXES = ("", ".gz", ".lz4", ".zst")  # <dump id>.dat plus pg_dump's compression suffix
STATUSES = ("ok", "failed", "pruned")
STATEMENT_CHARS = 80  # how much of a failed SQL statement an error quotes

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

# libpq connection parameters a URL may carry in its query, and the variable that hands each to the tools
LIBPQ_VARIABLES = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslcompression": "PGSSLCOMPRESSION",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "krbsrvname": "PGKRBSRVNAME",
    "service": "PGSERVICE",
    "passfile": "PGPASSFILE",
}
TOOL_DEFAULTS = {"PGAPPNAME": "tradedb-backup", "PGCONNECT_TIMEOUT": "10"}


# ------------------------------------------------------------------------------------------------ client tools


@dataclass(frozen=True)
class ClientTools:
    """One matching set of PostgreSQL client programs and where it was found."""

    pg_dump: Path
    pg_restore: Path
    psql: Path
    version: str  # e.g. "16.2"
    source: str  # TRADEDB_PG_BIN, PATH or pgserver

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def describe(self) -> str:
        return f"pg_dump {self.version} ({self.source}: {self.pg_dump.parent})"


def server_major(version: int) -> int:
    """Major version from either a major (16) or a ``server_version_num`` (160002)."""
    return version // 10000 if version >= 1000 else version


def _bundled_enabled(bundled: bool | None) -> bool:
    if bundled is not None:
        return bundled
    return os.environ.get(BUNDLED_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off")


def _bundled_folder() -> Path | None:
    """``<site-packages>/pgserver/pginstall/bin`` without importing pgserver (its import is slow and noisy)."""
    try:
        spec = importlib.util.find_spec("pgserver")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def _candidates(bundled: bool) -> Iterator[tuple[str, dict[str, Path] | None, str]]:
    """(source, tools or None when incomplete, where) in search order."""
    if os.environ.get(PG_BIN_VARIABLE):
        folder = Path(os.environ[PG_BIN_VARIABLE]).expanduser()
        paths = {t: folder / t for t in TOOLS}
        complete = all(p.is_file() and os.access(p, os.X_OK) for p in paths.values())
        yield PG_BIN_VARIABLE, paths if complete else None, str(folder)
    found = {t: shutil.which(t) for t in TOOLS}
    yield (
        "PATH",
        {t: Path(p) for t, p in found.items() if p} if all(found.values()) else None,
        "PATH",
    )
    if bundled:
        folder = _bundled_folder()
        if folder is not None:
            paths = {t: folder / t for t in TOOLS}
            yield "pgserver", paths if all(p.is_file() for p in paths.values()) else None, str(folder)


@cache
def _tool_version(program: str) -> str | None:
    """``16.2`` from ``pg_dump --version``; None when it does not run (cached: asked once per binary)."""
    try:
        out = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", out)
    if not match:
        return None
    return f"{match.group(1)}.{match.group(2) or 0}"


def client_tools(server_version: int | None = None, *, bundled: bool | None = None) -> ClientTools:
    """Return the first tool set, in search order, able to dump a server of ``server_version``.

    ``server_version`` is a major version (16) or a ``server_version_num`` (160002); None takes the first set
    found. ``bundled=False`` (or ``TRADEDB_PG_BUNDLED=0``) skips pgserver's bundled binaries.
    """
    needed = server_major(server_version) if server_version is not None else None
    seen: list[str] = []
    for source, paths, where in _candidates(_bundled_enabled(bundled)):
        if paths is None:
            if source != "PATH":
                seen.append(f"{source} {where} lacks {'/'.join(TOOLS)}")
            continue
        version = _tool_version(str(paths["pg_dump"]))
        if version is None:
            seen.append(f"{paths['pg_dump']} does not run")
            continue
        tools = ClientTools(paths["pg_dump"], paths["pg_restore"], paths["psql"], version, source)
        if needed is None or tools.major >= needed:
            return tools
        seen.append(tools.describe())
    wanted = needed or 16
    server = (
        f"the server runs PostgreSQL {needed}, and pg_dump refuses servers newer than itself; "
        if needed
        else ""
    )
    found = "; ".join(seen) if seen else "none on PATH"
    raise TradeDBError(
        f"no usable PostgreSQL client tools (pg_dump, pg_restore, psql): {server}found: {found}. "
        f"Install them (`apt install postgresql-client-{wanted}`) or set {PG_BIN_VARIABLE} to a folder holding "
        f"version {wanted} or newer"
    )


# ------------------------------------------------------------------------------------------------ running tools


def _libpq_arguments(url: URL) -> tuple[list[str], dict[str, str]]:
    """Host, port, user and database as separate arguments; other URL parameters as libpq variables."""
    args: list[str] = []
    variables: dict[str, str] = {}
    query = dict(url.query)
    host = url.host or query.pop("host", None)
    port = url.port or query.pop("port", None)
    query.pop("host", None)
    query.pop("port", None)
    for key, value in query.items():
        if key not in LIBPQ_VARIABLES or not isinstance(value, str):
            raise TradeDBError(
                f"the database URL parameter {key!r} cannot be handed to the PostgreSQL client tools; "
                "move it to a service file (~/.pg_service.conf) and use ?service=NAME"
            )
        variables[LIBPQ_VARIABLES[key]] = value
    if host:
        args += ["--host", str(host)]
    if port:
        args += ["--port", str(port)]
    if url.username:
        args += ["--username", url.username]
    args += ["--dbname", url.database or "postgres"]
    return args, variables


def _passfile_line(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


@contextlib.contextmanager
def tool_connection(url: URL) -> Iterator[tuple[list[str], dict[str, str]]]:
    """Yield (arguments, process environment) reaching ``url``; the password only in a private temp passfile."""
    args, variables = _libpq_arguments(url)
    environ = {**os.environ, **TOOL_DEFAULTS, **variables}
    passfile = None
    if url.password:
        environ.pop("PGPASSWORD", None)  # it would win over the passfile
        fd, passfile = tempfile.mkstemp(prefix="tradedb-pgpass-")
        with os.fdopen(fd, "w") as handle:  # mkstemp creates it 0600
            handle.write(_passfile_line(url.password))
        environ["PGPASSFILE"] = passfile
    try:
        yield args + ["--no-password"], environ
    finally:
        if passfile:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(passfile)


def scrub(message: str, url: URL) -> str:
    return message.replace(url.password, "***") if url.password else message


def _operator_error(exc: BaseException, what: str, url: URL | None = None) -> BaseException:
    """``exc`` as one ``TradeDBError`` line when it is an operator's slip; anything else (a bug) unchanged.

    A folder that cannot be created or written (``OSError``) and a database that refuses a statement (a missing
    privilege, a ``DBAPIError``) are setup problems, not bugs: they become "<what> failed: <reason>; <how to fix>",
    scrubbed of ``url``'s password, so the CLI prints one ``error:`` line instead of a traceback.
    """
    if isinstance(exc, TradeDBError):
        return exc
    if isinstance(exc, OSError):
        path = exc.filename or ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        return TradeDBError(
            _scrub(f"{what} failed: {path + ': ' if path else ''}{reason}; {_os_hint(path)}", url)
        )
    if isinstance(exc, DBAPIError):
        reason = cause_line(exc)
        statement = " ".join((exc.statement or "").split())
        if len(statement) > STATEMENT_CHARS:
            statement = statement[: STATEMENT_CHARS - 3] + "..."
        running = f" (while running `{statement}`)" if statement else ""
        hint = ""
        if "permission denied" in reason or "must be owner" in reason:
            role = url.username if url is not None and url.username else "connecting"
            hint = f"; grant the {role} role that privilege, or use a role that has it"
        return TradeDBError(_scrub(f"{what} failed: {reason}{running}{hint}", url))
    return exc


def _scrub(message: str, url: URL | None) -> str:
    return scrub(message, url) if url is not None else message


def _os_hint(path: str) -> str:
    """How to fix a file system failure: the backup root's setting when the path is under it."""
    try:
        root = backup_root()
    except TradeDBError:
        root = None
    if root is not None and path and (Path(path) == root or root in Path(path).parents):
        return (
            f"set [backups] root in the config file or {BACKUP_DIR_VARIABLE} to a writable folder "
            f"(the backup root is {root})"
        )
    return "check that the path exists and that this user may read and write it"


def _last_error_line(stderr: str) -> str:
    """The line that says what went wrong: the last ``error:`` line, else the last non-empty one."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line or "FATAL:" in line]
    return (errors or lines or ["no message"])[-1]


def run_tool(
    program: Path,
    arguments: list[str],
    url: URL,
    what: str,
    *,
    alongside: Callable[[], Any] | None = None,
) -> Any:
    """Run a client tool against ``url``; a failure is one TradeDBError line with the tool's own reason.

    ``alongside`` runs in this process while the tool works (the backup checksums its snapshot while pg_dump
    dumps it); its result is returned. If it raises, the tool is stopped.
    """
    with tool_connection(url) as (connection_args, environ):
        command = [str(program), *arguments, *connection_args]
        if url.password:
            assert url.password not in " ".join(command), "a password must never be on a command line"
        process = subprocess.Popen(
            command, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            result = alongside() if alongside is not None else None
        except BaseException:
            process.kill()
            process.communicate()
            raise
        _, stderr = process.communicate()
    if process.returncode != 0:
        message = _last_error_line(stderr.decode(errors="replace"))
        raise TradeDBError(f"{what} failed: {scrub(message, url)}")
    return result


# ------------------------------------------------------------------------------------------------ settings


def _backups_section() -> dict[str, Any]:
    return load_config().get("backups", {})


def backup_root() -> Path:
    """``TRADEDB_BACKUP_DIR``, else ``[backups] root`` (relative to the config file), else ``<project>/backups``."""
    if os.environ.get(BACKUP_DIR_VARIABLE):
        return Path(os.environ[BACKUP_DIR_VARIABLE]).expanduser()
    root = _backups_section().get("root")
    if root:
        path = Path(root).expanduser()
        return path if path.is_absolute() else config_path().parent / path
    return project_root() / "backups"


def keep_count() -> int:
    return int(_backups_section().get("keep", DEFAULT_KEEP))


def default_jobs() -> int:
    return int(_backups_section().get("jobs") or min(MAX_DEFAULT_JOBS, os.cpu_count() or 1))


def _env_name(env: Environment | str) -> str:
    return env if isinstance(env, str) else env.name


def environment_folder(env: Environment | str) -> Path:
    return backup_root() / _env_name(env)


# ------------------------------------------------------------------------------------------------ backups


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
    conn.exec_driver_sql(BACKUPS_DDL)


def _record_row(
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


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


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
            size_bytes=_folder_size(partial),
            duration_s=round(time.monotonic() - started, 3),
            checksums=checksums,
            tool_version=tools.version,
            server_version=server_version,
            jobs=jobs,
        )
        (partial / MANIFEST).write_text(json.dumps(backup.manifest(), indent=2) + "\n")
        partial.rename(folder)
        partial = None
        _record_row(engine, backup, "ok")
        _ledger(
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
        error = _operator_error(exc, f"backup of the {env.name} database", env.url)
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        if row is not None and isinstance(exc, Exception):
            message = scrub(str(error), env.url)
            with contextlib.suppress(Exception):
                _record_row(engine, {**row, "duration_s": time.monotonic() - started}, "failed", message)
            _ledger(
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


def list_backups(env: Environment | str) -> list[Backup]:
    """Complete backups of an environment, newest first, read from their manifests (no database needed)."""
    folder = environment_folder(env)
    if not folder.is_dir():
        return []
    found = []
    try:
        paths = list(folder.iterdir())
    except OSError as exc:
        raise _operator_error(exc, f"listing the backups of {_env_name(env)}") from None
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
    name = _env_name(env)
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
            log.warning("pruned backup folders but could not mark their rows: %s", scrub(str(exc), env.url))
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


# ------------------------------------------------------------------------------------------------ restore


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did: which backup went where, how, and what was verified."""

    backup_id: str
    source_environment: str
    target_environment: str
    database: str
    mode: str  # 'swap' (scratch database renamed into place) or 'in-place' (pg_restore --clean)
    verified: bool
    tables_verified: int
    seconds: float
    # the replaced database, renamed and kept (production's swap): the on-call engineer drops it later
    kept_database: str | None = None
    # id of the backup of the target's data taken just before an in-place restore overwrote it (production's
    # in-place restore keeps no old database, so this backup holds the writes made since the restored one)
    safety_backup: str | None = None


@dataclass(frozen=True)
class _Privileges:
    superuser: bool
    createdb: bool
    target_exists: bool
    owner: str | None
    can_act_as_owner: bool  # member of the target's owner role: may rename it and create a database it owns
    user: str

    @property
    def can_swap(self) -> bool:
        can_create = self.superuser or self.createdb
        return can_create and (not self.target_exists or self.superuser or self.can_act_as_owner)


def _admin_engine(target: Environment) -> Engine:
    """An autocommit engine on the target's server, connected to a maintenance database (never the target)."""
    last: OperationalError | None = None
    for database in MAINTENANCE_DATABASES:
        engine = create_engine(
            target.url.set(database=database),
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": RESTORE_APPLICATION, "connect_timeout": 10},
        )
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return engine
        except OperationalError as exc:
            engine.dispose()
            last = exc
            if "does not exist" not in str(exc.orig):
                break
    assert last is not None
    raise unreachable(target, last)


def _privileges(admin: Connection, database: str) -> _Privileges:
    row = admin.execute(
        text(
            """SELECT r.rolsuper, r.rolcreatedb, current_user AS who,
                      (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :db) AS owner
               FROM pg_roles r WHERE r.rolname = current_user"""
        ),
        {"db": database},
    ).one()
    owner = row.owner
    member = bool(owner) and bool(admin.scalar(text("SELECT pg_has_role(:o, 'MEMBER')"), {"o": owner}))
    return _Privileges(row.rolsuper, row.rolcreatedb, owner is not None, owner, member, row.who)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _derived_name(database: str, tag: str, stamp: str) -> str:
    suffix = f"_{tag}_{stamp}"
    return database[: MAX_IDENTIFIER - len(suffix)] + suffix


def _create_scratch(admin: Connection, name: str, target: str, privileges: _Privileges) -> None:
    """Create an empty database like the target: same encoding and locale, owned by the target's owner."""
    clauses = ["TEMPLATE template0"]
    if privileges.target_exists:
        enc, collate, ctype = admin.execute(
            text(
                "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = :d"
            ),
            {"d": target},
        ).one()
        clauses += [f"ENCODING '{enc}'", f"LC_COLLATE '{collate}'", f"LC_CTYPE '{ctype}'"]
        if privileges.owner and privileges.owner != privileges.user and privileges.can_act_as_owner:
            clauses.append(f"OWNER {_quote(privileges.owner)}")
    admin.exec_driver_sql(f"CREATE DATABASE {_quote(name)} {' '.join(clauses)}")


def _copy_database_properties(admin: Connection, source: str, scratch: str) -> None:
    """Give the scratch database the target's database-level settings and grants, which no dump carries.

    ``ALTER DATABASE ... SET`` (and per-role settings in it) and ``GRANT ... ON DATABASE`` belong to the database
    object, not its contents; a swap that forgot them would, say, lock the app out after ``REVOKE CONNECT FROM
    PUBLIC``.
    """
    settings = admin.execute(
        text(
            """SELECT CASE WHEN s.setrole = 0 THEN '' ELSE pg_get_userbyid(s.setrole) END AS role, unnest(s.setconfig) AS setting
               FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = :d"""
        ),
        {"d": source},
    ).all()
    for role, setting in settings:
        name, _, value = setting.partition("=")
        if not re.fullmatch(r"[A-Za-z_][\w.]*", name):
            raise TradeDBError(
                f"cannot carry the database setting {name!r} of {source} over to the restored copy"
            )
        # list settings (search_path, DateStyle) are stored in SQL form already; single values need quoting
        literal = value if "," in value or value.startswith('"') else "'" + value.replace("'", "''") + "'"
        prefix = f"ALTER ROLE {_quote(role)} IN DATABASE" if role else "ALTER DATABASE"
        admin.exec_driver_sql(f"{prefix} {_quote(scratch)} SET {name} TO {literal}".replace("%", "%%"))
    grants = admin.execute(
        text(
            """SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type
               FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = :d AND d.datacl IS NOT NULL"""
        ),
        {"d": source},
    ).all()
    if grants:  # an explicit ACL: start from nothing, as the target did, then grant what it grants
        admin.exec_driver_sql(f"REVOKE ALL ON DATABASE {_quote(scratch)} FROM PUBLIC")
        for grantee, privilege in grants:
            to = "PUBLIC" if grantee == "PUBLIC" else _quote(grantee)
            admin.exec_driver_sql(f"GRANT {privilege} ON DATABASE {_quote(scratch)} TO {to}")


def _drop_database(admin: Connection, name: str) -> None:
    with contextlib.suppress(Exception):
        admin.exec_driver_sql(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")


def _allow_connections(admin: Connection, database: str, allowed: bool) -> None:
    admin.exec_driver_sql(f"ALTER DATABASE {_quote(database)} ALLOW_CONNECTIONS {str(allowed).lower()}")


def _terminate(admin: Connection, database: str, *, spare_lock_holder: bool = False) -> None:
    """End every other session on ``database``; ``spare_lock_holder`` leaves the one holding the migration lock."""
    spare = f" AND pid NOT IN ({holder_pids_sql(':d')})" if spare_lock_holder else ""
    admin.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :d AND pid <> pg_backend_pid()" + spare
        ),
        {"d": database, "key": LOCK_KEY},
    )


def _rename(admin: Connection, old: str, new: str) -> None:
    """Rename a database, terminating sessions that hold it open until they are gone (bounded)."""
    deadline = time.monotonic() + SWAP_RETRY_S
    while True:
        _terminate(admin, old)
        try:
            admin.exec_driver_sql(f"ALTER DATABASE {_quote(old)} RENAME TO {_quote(new)}")
            return
        except OperationalError as exc:  # "database is being accessed by other users"
            if time.monotonic() > deadline:
                raise TradeDBError(
                    f"could not rename database {old}: {str(exc.orig).splitlines()[0]}"
                ) from None
            time.sleep(0.1)
        except ProgrammingError as exc:  # "database ... already exists": created meanwhile (another restore)
            raise TradeDBError(
                f"could not rename database {old} to {new}: {str(exc.orig).splitlines()[0]}"
            ) from None


def _swap(
    admin: Connection,
    scratch: str,
    target: str,
    stamp: str,
    *,
    target_exists: bool,
    release_lock: Callable[[], None],
    keep_old: bool,
) -> str | None:
    """Put ``scratch`` in place of ``target``; return the name the old target is kept under (None: dropped).

    The restore holds the target's migration lock in a session inside the target, and a database cannot be renamed
    while any session is in it. So the target first stops accepting connections, every session but the lock
    holder's is ended, and only then is the lock released and its connection closed: from then on nobody can
    connect to the old database to take the lock, and the renamed-in copy starts with no session at all.
    """
    if not target_exists:  # nothing was locked: there was no database to lock
        _rename(admin, scratch, target)
        return None
    old = _derived_name(target, "old", stamp)
    _allow_connections(admin, target, False)
    try:
        _terminate(admin, target, spare_lock_holder=True)
        release_lock()
        _rename(admin, target, old)
    except BaseException:
        _allow_connections(admin, target, True)
        raise
    try:
        _rename(admin, scratch, target)
    except BaseException:
        _rename(admin, old, target)  # put the original back before anything else
        _allow_connections(admin, target, True)
        raise
    if not keep_old:
        _drop_database(admin, old)
        return None
    _allow_connections(admin, old, True)  # readable, for the writes made after the backup was taken
    return old


def _restore_arguments(backup: Backup, target: Environment, privileges: _Privileges, jobs: int) -> list[str]:
    """pg_restore options: parallel unless single-transaction; foreign roles and grants left out across environments.

    Another environment's roles usually do not exist on this server (and must not gain access if they do), so a
    backup restored into a different environment is restored without owners and grants, owned by the target's
    owner.
    """
    args = ["--format=directory", "--exit-on-error"]
    if backup.environment != target.name:
        args += ["--no-owner", "--no-privileges"]
        if privileges.owner and privileges.owner != privileges.user and privileges.can_act_as_owner:
            args.append(f"--role={privileges.owner}")
    if jobs > 1:
        args.append(f"--jobs={jobs}")
    return args


def verify_restored(backup: Backup, env: Environment) -> list[str]:
    """Tables of ``env`` whose checksum differs from the backup's (appeared or missing ones too); empty when equal."""
    with connect_checked(env) as conn:
        return differing(backup.checksums, database_checksums(conn))


def _dump_listing(tools: ClientTools, backup: Backup) -> str:
    """The dump's table of contents (``pg_restore --list``, no database involved), or an error if unreadable."""
    try:
        listing = subprocess.run(
            [str(tools.pg_restore), "--list", str(backup.path)],
            capture_output=True,
            text=True,
            timeout=LIST_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise TradeDBError(f"could not read backup {backup.id}: {exc}; nothing was changed") from None
    if listing.returncode != 0:
        raise TradeDBError(
            f"backup {backup.id} at {backup.path} is unreadable: {_last_error_line(listing.stderr)}; "
            "nothing was changed"
        )
    return listing.stdout


def check_dump(tools: ClientTools, backup: Backup) -> None:
    """Refuse a dump that cannot be restored whole, before the target is touched.

    Checks that pg_restore reads the dump's table of contents, that every table the manifest has a checksum for
    has a data entry in it, and that every data entry's file is in the folder. This runs before every restore,
    because the in-place fallback for a role that may not create databases has no scratch copy to fail on first;
    it does not read the data files' contents: only a restore and the checksum comparison prove those.
    """
    data = {
        match["table"]: match["id"]
        for match in TABLE_DATA_ENTRY.finditer(_dump_listing(tools, backup))
        if match["schema"] == APP_SCHEMA
    }
    missing = sorted(set(backup.checksums) - set(data))
    missing += sorted(
        table
        for table, dump_id in data.items()
        if not any((backup.path / f"{dump_id}.dat{suffix}").is_file() for suffix in DATA_FILE_SUFFIXES)
    )
    if missing:
        raise TradeDBError(
            f"backup {backup.id} at {backup.path} is incomplete: no data for table(s) {', '.join(missing)}; "
            "nothing was changed"
        )


def check_restore_allowed(
    backup: Backup, target: Environment, *, allow_production: bool, allow_cross_environment: bool
) -> None:
    """Refuse a production restore without its confirmations: one to replace production at all, and a second one
    when the data comes from another environment (staging's or dev's rows are not production's, whatever the
    schema says). The CLI calls it before asking anything, ``restore`` again before touching anything.
    """
    if target.name != PRODUCTION:
        return
    if not allow_production:
        raise TradeDBError(
            "restoring replaces the production database: confirm it (tradedb restore ... --yes, or "
            "allow_production=True)"
        )
    if backup.environment != target.name and not allow_cross_environment:
        raise TradeDBError(
            f"backup {backup.id} was taken of {backup.environment}, not production: restoring another "
            f"environment's data into production needs its own confirmation (tradedb restore ... "
            "--allow-cross-env, or allow_cross_environment=True); nothing was changed"
        )


class RestoreBlocked(MigrationLocked):
    """A migration or another restore holds the target's migration lock: the restore refused, changing nothing."""


class _TargetLock:
    """The target's migration lock, held from before the restore changes anything until it ends.

    Taken with ``tradedb.schema.locks.migration_lock``, so a running migration (Dagster, CLI, plain alembic) or another
    restore refuses this restore, and no migration can start on the target while it runs. Its connection is its
    own and unpooled (``NullPool``): the swap must close it for real before renaming the target (see ``_swap``);
    an in-place restore keeps it until the end.
    """

    def __init__(self, target: Environment) -> None:
        self.target = target
        self.engine = make_engine(
            target, poolclass=NullPool, connect_args={"application_name": RESTORE_APPLICATION}
        )
        self.stack = contextlib.ExitStack()

    def acquire(self) -> None:
        try:
            self.stack.enter_context(migration_lock(self.engine, self.target))
        except MigrationLocked as exc:
            self.release()
            raise RestoreBlocked(
                f"cannot restore into the {self.target.name} database: its migration lock is held by {exc.holder} "
                "(a migration or another restore is running); nothing was changed. Wait for it to finish, or "
                "check `tradedb status`.",
                holder=exc.holder,
            ) from None

    def release(self) -> None:
        """Release the lock and close its connection; a second call does nothing."""
        try:
            self.stack.close()
        except OperationalError as exc:  # its session was ended by someone else: the lock went with it
            log.warning("the restore's migration lock session on %s was lost: %s", self.target.name, exc)
        finally:
            self.engine.dispose()


def restore(
    backup: Backup,
    target: Environment,
    *,
    verify: bool = True,
    allow_production: bool = False,
    allow_cross_environment: bool = False,
    in_place: bool = False,
    jobs: int | None = None,
    launched_by: str | None = None,
    before_verify: Callable[[Environment], None] | None = None,
) -> RestoreResult:
    """Replace the target's database with ``backup``, verified against the backup's checksums.

    ``allow_production`` must be passed to restore into production (the CLI asks for confirmation first), and
    ``allow_cross_environment`` too when the backup is of another environment. The target's migration lock is held
    throughout: a running migration or restore makes this one fail with ``RestoreBlocked``, changing nothing.
    ``in_place`` restores into the existing target with ``pg_restore --clean`` instead of swapping databases (the
    fallback taken anyway when the role may not rename the target); the swap is safer and leaves no stray objects.
    In production the swapped-out database is kept as ``<db>_old_<timestamp>`` (``RestoreResult.kept_database``);
    an in-place restore into production first backs the target up instead (``RestoreResult.safety_backup``) and is
    refused, changing nothing, when that backup fails. The target's own record (ledger entries, backup rows) is
    carried into the restored database: what happened since the backup for its own backup, and every entry of the
    target's environment for another environment's backup. ``before_verify`` is called with the freshly restored
    copy before it is verified and swapped in: a place for extra checks (an app smoke query) that may raise to stop
    the swap. On any failure before the swap the target is untouched and the scratch database dropped. A file
    system or database error (a missing privilege) is raised as a one-line ``TradeDBError`` naming what failed and
    how to fix it, never showing a password.
    """
    try:
        return _restore(
            backup,
            target,
            verify=verify,
            allow_production=allow_production,
            allow_cross_environment=allow_cross_environment,
            in_place=in_place,
            jobs=jobs,
            launched_by=launched_by,
            before_verify=before_verify,
        )
    except (OSError, DBAPIError) as exc:
        raise _operator_error(exc, _restore_what(backup, target), target.url) from None


def _restore_what(backup: Backup, target: Environment) -> str:
    return f"restore of backup {backup.id} into the {target.name} database"


def _restore(
    backup: Backup,
    target: Environment,
    *,
    verify: bool,
    allow_production: bool,
    allow_cross_environment: bool,
    in_place: bool,
    jobs: int | None,
    launched_by: str | None,
    before_verify: Callable[[Environment], None] | None,
) -> RestoreResult:
    check_restore_allowed(
        backup, target, allow_production=allow_production, allow_cross_environment=allow_cross_environment
    )
    if not (backup.path / "toc.dat").is_file():
        raise TradeDBError(f"backup {backup.id} at {backup.path} holds no dump (toc.dat missing)")
    launched_by = launched_by or cli_user("cli")
    started_at, started = datetime.now(UTC), time.monotonic()
    admin_engine = _admin_engine(target)
    lock = _TargetLock(target)
    try:
        with admin_engine.connect() as admin:
            privileges = _privileges(admin, target.url.database or "")
            if privileges.target_exists:  # a missing database has no migration to wait for
                lock.acquire()
            server_num = int(admin.scalar(text("SHOW server_version_num")))
            tools = client_tools(max(server_major(server_num), backup.tool_major))
            check_dump(tools, backup)
            run = (_SwapRestore if privileges.can_swap and not in_place else _InPlaceRestore)(
                backup,
                target,
                admin,
                tools,
                privileges,
                jobs or default_jobs(),
                verify,
                before_verify,
                lock,
                launched_by,
            )
            kept = _run_recorded(run, launched_by, started_at)
    finally:
        lock.release()
        admin_engine.dispose()
    result = RestoreResult(
        backup_id=backup.id,
        source_environment=backup.environment,
        target_environment=target.name,
        database=target.url.database or "",
        mode=run.mode,
        verified=verify,
        tables_verified=backup.tables if verify else 0,
        seconds=round(time.monotonic() - started, 3),
        kept_database=kept,
        safety_backup=run.safety_backup,
    )
    _ledger_on(
        target,
        kind="restore",
        name=backup.id,
        launched_by=launched_by,
        started_at=started_at,
        detail={**asdict(result), "revision": backup.revision, "taken_at": backup.taken_at.isoformat()},
    )
    return result


def _run_recorded(run: _SwapRestore, launched_by: str, started_at: datetime) -> str | None:
    """Run the restore; a failure is recorded in the target's ledger (as its one-line error) before it propagates."""
    try:
        return run.run()
    except Exception as exc:
        error = _operator_error(exc, _restore_what(run.backup, run.target), run.target.url)
        _ledger_on(
            run.target,
            kind="restore",
            name=run.backup.id,
            launched_by=launched_by,
            started_at=started_at,
            error=str(error),
            detail={
                "source_environment": run.backup.environment,
                "mode": run.mode,
                "safety_backup": run.safety_backup,
            },
        )
        if error is exc:
            raise
        raise error from None


@dataclass
class _SwapRestore:
    """Restore into a scratch database, verify it, then rename it into the target's place."""

    backup: Backup
    target: Environment
    admin: Connection
    tools: ClientTools
    privileges: _Privileges
    jobs: int
    verify: bool
    before_verify: Callable[[Environment], None] | None
    lock: _TargetLock
    launched_by: str
    mode: ClassVar[str] = "swap"

    def __post_init__(self) -> None:
        self.stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        self.database = self.target.url.database or ""
        self.safety_backup: str | None = None  # set by an in-place restore into production

    def run(self) -> str | None:
        """Restore, check and swap; return the name the replaced database is kept under, if it is kept."""
        with self.checked_scratch() as copy:
            scratch = copy.url.database or ""
            if self.privileges.target_exists:
                _copy_database_properties(self.admin, self.database, scratch)
                _append_history(copy, _history_to_carry(self.target, self.backup))
            return _swap(
                self.admin,
                scratch,
                self.database,
                self.stamp,
                target_exists=self.privileges.target_exists,
                release_lock=self.lock.release,
                keep_old=self.target.name in KEEP_REPLACED_ENVIRONMENTS,
            )

    @contextlib.contextmanager
    def checked_scratch(self) -> Iterator[Environment]:
        """Create a scratch database, restore the dump into it and check it; yield it as an environment.

        The scratch database is dropped when the block raises (or the restore or check before it does); a block
        that ends normally has taken it over (swapped it in, or dropped it itself).
        """
        scratch = _derived_name(self.database, "restore", self.stamp)
        _create_scratch(self.admin, scratch, self.database, self.privileges)
        handed_over = False
        try:
            copy = self.scratch_environment(scratch)
            self.restore_into(copy, _restore_arguments(self.backup, self.target, self.privileges, self.jobs))
            self.check(copy)
            yield copy
            handed_over = True
        finally:
            if not handed_over:
                _drop_database(self.admin, scratch)

    def scratch_environment(self, scratch: str) -> Environment:
        return Environment(self.target.name, self.target.url.set(database=scratch), embedded=False)

    def restore_into(self, copy: Environment, arguments: list[str]) -> None:
        run_tool(
            self.tools.pg_restore,
            [*arguments, str(self.backup.path)],
            copy.url,
            f"pg_restore of backup {self.backup.id}",
        )

    def check(self, copy: Environment) -> None:
        if self.before_verify is not None:
            self.before_verify(copy)
        if not self.verify:
            return
        bad = verify_restored(self.backup, copy)
        if bad:
            raise TradeDBError(
                f"restore of backup {self.backup.id} failed verification: table(s) {', '.join(bad)} differ from "
                f"the backup's checksums; the {self.target.name} database was left untouched"
            )


class _InPlaceRestore(_SwapRestore):
    """For roles that may not rename the target: ``pg_restore --clean --if-exists --single-transaction``.

    Before the target is touched, ``check_dump`` has read the dump's table of contents and found a data file for
    every table the manifest lists. When the role may also create a database, the dump is first restored on a
    scratch copy, passed to ``before_verify`` and (unless ``verify=False``) compared with the manifest's checksums
    there, so a dump that does not restore or does not match never reaches the target; a role that may not create
    one gets no such rehearsal, and its restore is proven only afterwards, on the target itself. The target is
    then restored in one transaction (a pg_restore error rolls it all back) and, unless ``verify=False``, compared
    with the manifest again; a mismatch found then is reported with the restored data already committed.
    Objects in the target that the dump does not hold survive an in-place restore; the swap has no such caveat.
    The migration lock is held until the end (no rename needs its session gone). No old database is kept aside, so
    in production (``KEEP_REPLACED_ENVIRONMENTS``) a fresh backup of the target is taken right before it is
    overwritten (after the rehearsal, so it misses as few writes as possible): the writes made since the restored
    backup stay recoverable, as the swap's ``<db>_old_<ts>`` keeps them. If that backup fails, the restore is
    refused with the target untouched.
    """

    mode = "in-place"

    def run(self) -> None:
        if self.privileges.superuser or self.privileges.createdb:
            self.rehearse_on_scratch()
        if self.privileges.target_exists and self.target.name in KEEP_REPLACED_ENVIRONMENTS:
            self.take_safety_backup()
        history = _history_to_carry(self.target, self.backup) if self.privileges.target_exists else None
        arguments = _restore_arguments(self.backup, self.target, self.privileges, jobs=1)
        self.restore_into(self.target, [*arguments, "--clean", "--if-exists", "--single-transaction"])
        _append_history(self.target, history)
        if self.verify and (bad := verify_restored(self.backup, self.target)):
            raise TradeDBError(
                f"in-place restore of backup {self.backup.id} into {self.target.name} completed but table(s) "
                f"{', '.join(bad)} differ from the backup's checksums (the target holds the restored data)"
            )

    def take_safety_backup(self) -> None:
        """Back up the target's current data before it is overwritten; refuse the restore when that fails."""
        try:
            made = take_backup(
                self.target,
                reason=f"before in-place restore of {self.backup.id}",
                launched_by=self.launched_by,
                jobs=self.jobs,
                retention=False,  # pruning now could delete the very backup being restored
            )
        except TradeDBError as exc:
            raise TradeDBError(
                f"in-place restore of backup {self.backup.id} into {self.target.name} refused: the backup of its "
                f"current data, which keeps the writes made since {self.backup.id}, failed ({exc}); nothing was "
                "changed"
            ) from None
        self.safety_backup = made.id
        log.info("backed up %s as %s before the in-place restore", self.target.name, made.id)

    def rehearse_on_scratch(self) -> None:
        """Restore and check the dump on a throwaway database first, so a bad dump fails before the target."""
        with self.checked_scratch() as copy:
            _drop_database(self.admin, copy.url.database or "")


# ------------------------------------------------------------------------------------------------ ledger


@dataclass(frozen=True)
class _History:
    """The target's own record (ledger entries, backup rows) that a restore must not erase."""

    ledger: list[dict[str, Any]]
    backups: list[dict[str, Any]]


def _history_to_carry(target: Environment, backup: Backup) -> _History | None:
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
            "could not read the %s database's ledger to carry it over: %s", env.name, scrub(str(exc), env.url)
        )
        return None


def _append_history(env: Environment, history: _History | None) -> None:
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
            scrub(str(exc), env.url),
        )


def _ledger(
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


def _ledger_on(target: Environment, **entry: Any) -> None:
    """Record a restore in the target's ledger (after the swap, the restored database's)."""
    engine = make_engine(target)
    try:
        _ledger(engine, environment=target.name, **entry)
    except Exception as exc:  # the target may be gone; the restore's outcome matters more than its record
        log.warning("could not record the restore in the ledger: %s", exc)
    finally:
        engine.dispose()
