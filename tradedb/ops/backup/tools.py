"""The PostgreSQL client tools (``pg_dump``, ``pg_restore``, ``psql``): finding a set that fits the server, running them.

Looked up in ``TRADEDB_PG_BIN``, then ``PATH``, then the binaries bundled in the ``pgserver`` package;
``pg_dump`` refuses a server newer than itself, so the first set whose major version is at least the server's
wins. Passwords never reach a command line (``ps`` shows argv): they go through a temporary ``PGPASSFILE``
readable by us alone, deleted when the tool exits.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from tradedb.core.errors import TradeDBError
from tradedb.ops.backup.settings import without_password

PG_BIN_VARIABLE = "TRADEDB_PG_BIN"  # a folder holding pg_dump, pg_restore and psql; searched first

BUNDLED_VARIABLE = "TRADEDB_PG_BUNDLED"  # "0" turns off the fallback to pgserver's bundled tools

TOOLS = ("pg_dump", "pg_restore", "psql")

TOOL_TIMEOUT_S = 10  # for `pg_dump --version`

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


def last_error_line(stderr: str) -> str:
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
        message = last_error_line(stderr.decode(errors="replace"))
        raise TradeDBError(f"{what} failed: {without_password(message, url)}")
    return result
