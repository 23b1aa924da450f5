"""Where backups go, how many are kept, and how a setup slip becomes one clear line.

A folder that cannot be written or a statement the database refuses (a missing privilege) ends a backup or a
restore with one ``TradeDBError`` saying what failed and how to fix it, never with a traceback.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tradedb.core.errors import TradeDBError, cause_line
from tradedb.core.paths import project_root
from tradedb.core.settings import Environment, config_path, load_config

log = logging.getLogger("tradedb.backup")

BACKUP_DIR_VARIABLE = "TRADEDB_BACKUP_DIR"  # backup root; wins over [backups] root

DEFAULT_KEEP = 5  # backups kept per environment when [backups] keep is not set

MAX_DEFAULT_JOBS = 4  # parallel dump/restore workers by default: min(this, cpu count)

STATEMENT_CHARS = 80  # how much of a failed SQL statement an error quotes


def without_password(message: str, url: URL | None) -> str:
    """``message`` with ``url``'s password masked (tools and drivers may quote the connection string)."""
    return message.replace(url.password, "***") if url is not None and url.password else message


def operator_error(exc: BaseException, what: str, url: URL | None = None) -> BaseException:
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
            without_password(f"{what} failed: {path + ': ' if path else ''}{reason}; {_os_hint(path)}", url)
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
        return TradeDBError(without_password(f"{what} failed: {reason}{running}{hint}", url))
    return exc


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


def env_name(env: Environment | str) -> str:
    return env if isinstance(env, str) else env.name


def environment_folder(env: Environment | str) -> Path:
    return backup_root() / env_name(env)
