"""Dagster's own ``dagster.yaml``: the files tradedb writes, and the checks that turn a bad one into one clear error.

Production keeps Dagster's runs, events and schedule ticks in its own PostgreSQL database (dagster-postgres).
dagster-postgres builds a bare ``postgresql://`` URL unless told otherwise, and SQLAlchemy 2.1 reads that as
psycopg 3; installing psycopg 3 is no way out, because dagster-postgres 0.29 sends ``NOTIFY run_events, :id``
with a bound parameter, which psycopg 3 binds on the server and PostgreSQL refuses. So a postgres storage must
name the psycopg2 driver tradedb installs: ``scheme: postgresql+psycopg2`` under ``postgres_db``, or a
``postgres_url`` starting with ``postgresql+psycopg2://``.

tradedb checks the operator's file before Dagster reads it, and does not rewrite it: the webserver and the daemon
read the same file without tradedb, so a fix made only in tradedb's memory would leave them failing. The error
names the file and what to write there; ``tradedb dagster-config --postgres URL`` writes a correct file, with the
password as ``{env: ...}``, never in clear.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from tradedb.core.errors import TradeDBError, cause_line, first_line
from tradedb.core.scrub import scrub
from tradedb.core.settings import ENVIRONMENTS, configured_url
from tradedb.core.urls import DRIVER

PASSWORD_ENV = "DAGSTER_PG_PASSWORD"  # where a generated file reads Dagster's storage password from
CONNECT_TIMEOUT_S = 5  # how long the reachability check waits for the storage database

SETTINGS_YAML = """\
# Schema and data steps share the pool below, limited to one step at a time across runs.
concurrency:
  pools:
    default_limit: 1
# The daemon (dagster dev) fails runs whose process died and frees their pool slots.
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 0
telemetry:
  enabled: false
"""

LOCAL_YAML = (
    "# Dagster's own storage for local runs (SQLite in this folder). It is never the app database.\n"
    + SETTINGS_YAML
)

POSTGRES_HEADER = """\
# Written by `tradedb dagster-config --postgres`. Dagster's own storage (runs, events, schedule ticks) in its own
# PostgreSQL database, never the app database. `scheme: postgresql+psycopg2` is required: dagster-postgres would
# build postgresql://, which SQLAlchemy 2.1 reads as psycopg 3 (not installed, and not usable by dagster-postgres).
"""

WHY_PSYCOPG2 = (
    "SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which dagster-postgres cannot use; tradedb "
    "installs psycopg2"
)


@dataclass(frozen=True)
class Storage:
    """Where a ``dagster.yaml`` keeps Dagster's runs: ``url`` is None for the default (SQLite in DAGSTER_HOME)."""

    where: str  # the key path in the file, e.g. "storage.postgres"
    url: URL | None

    def describe(self) -> str:
        if self.url is None:
            return "Dagster's default storage (SQLite files in DAGSTER_HOME)"
        return f"PostgreSQL {self.url.render_as_string(hide_password=True)} ({self.where})"


# ------------------------------------------------------------------------------------------------ writing


def postgres_yaml(url: URL, password_env: str = PASSWORD_ENV) -> str:
    """Our settings with Dagster's storage in the PostgreSQL database ``url``; its password only as ``{env: ...}``."""
    db: dict[str, Any] = {
        "hostname": url.host or "localhost",
        "port": url.port or 5432,
        "username": url.username or "postgres",
    }
    if url.password:
        db["password"] = {"env": password_env}
    db["db_name"] = url.database
    db["scheme"] = DRIVER
    if (
        url.query
    ):  # a unix-socket URL (the embedded server's) keeps its folder in params.host: libpq prefers it
        db["params"] = {k: v if isinstance(v, str) else ",".join(v) for k, v in url.query.items()}
    storage = yaml.safe_dump({"storage": {"postgres": {"postgres_db": db}}}, sort_keys=False)
    return POSTGRES_HEADER + storage + SETTINGS_YAML


def storage_url(raw: str, source: str) -> URL:
    """The PostgreSQL database an operator names for Dagster's storage, with the psycopg2 driver."""
    try:
        url = make_url(raw.strip())
    except ArgumentError:
        raise TradeDBError(
            f"{source} is not a database URL: expected postgresql://user@host:port/dbname"
        ) from None
    if url.drivername not in ("postgresql", "postgres") and url.get_backend_name() != "postgresql":
        raise TradeDBError(f"{source} is not a PostgreSQL URL ({url.drivername}://)")
    if not (url.host or url.query.get("host")) or not url.database:
        raise TradeDBError(f"{source} must name a host and a database: postgresql://user@host:port/dbname")
    return url.set(drivername=DRIVER)


# ------------------------------------------------------------------------------------------------ checking


def check(path: Path) -> Storage:
    """Everything tradedb can tell about ``path`` before Dagster reads it; one ``TradeDBError`` line if wrong.

    The file parses; each PostgreSQL storage names the psycopg2 driver, its environment variables are set, it is
    not one of the app's databases, and it answers. Returns where the runs are kept.
    """
    found = storages(path)
    for storage in {s.url: s for s in found if s.url is not None}.values():
        refuse_app_database(path, storage)
        require_reachable(path, storage)
    return found[0]


def storage_of(path: Path) -> Storage:
    """Where ``path`` keeps Dagster's runs (its drivers checked, nothing connected)."""
    return storages(path)[0]


def storages(path: Path) -> list[Storage]:
    """Every PostgreSQL storage ``path`` names (``storage.postgres``, or the older per-storage ``*_storage``
    entries), each checked for the psycopg2 driver; the default storage when it names none."""
    found = [
        Storage(where, _entry_url(path, where, entry)) for where, entry in _postgres_entries(_read(path), ())
    ]
    return found or [Storage("default", None)]


def refuse_app_database(path: Path | str, storage: Storage) -> None:
    """Dagster keeps its own tables (and its own ``alembic_version``): never in an environment's database."""
    for name in ENVIRONMENTS:
        app = configured_url(name)
        if app is not None and storage.url is not None and _same_database(app, storage.url):
            raise TradeDBError(
                f"{path}: Dagster's storage {storage.url.render_as_string(hide_password=True)} is the {name} "
                "database; give Dagster a database of its own (it keeps its own tables and alembic_version)"
            )


def require_reachable(path: Path | str, storage: Storage) -> None:
    """Connect once, briefly: dagster-postgres would otherwise retry with a warning per attempt, then fail vaguely."""
    assert storage.url is not None
    engine = create_engine(storage.url, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise TradeDBError(
            f"{path}: Dagster's storage database {storage.url.render_as_string(hide_password=True)} cannot be "
            f"reached: {scrub(cause_line(exc))}"
        ) from None
    finally:
        engine.dispose()


def load_error(path: Path, exc: BaseException) -> TradeDBError:
    """What Dagster's failure to load ``path`` means, as one line (its config errors span many)."""
    message = str(exc)
    found = re.search(r"PostProcessingError: (.+)", message) or re.search(
        r"^\s*Error 1: (.+?)(?:\. Expected: .*)?$", message, re.MULTILINE
    )
    reason = found.group(1).strip() if found else first_line(exc)
    cause = exc.__cause__
    if cause is not None and "too many retries" in reason:
        reason = cause_line(cause)
    return TradeDBError(f"Dagster instance config {path} cannot be loaded: {scrub(reason)}")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) if path.exists() else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise TradeDBError(f"malformed Dagster instance config {path}{at}: {problem}") from None
    except OSError as exc:
        raise TradeDBError(f"cannot read Dagster instance config {path}: {exc.strerror or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TradeDBError(
            f"malformed Dagster instance config {path}: the top level must be a mapping of keys"
        )
    return data


def _postgres_entries(node: Any, where: tuple[str, ...]) -> Iterator[tuple[str, dict]]:
    """Each mapping holding ``postgres_db`` or ``postgres_url`` (``storage.postgres``, or a ``*_storage`` config)."""
    if not isinstance(node, dict):
        return
    if "postgres_db" in node or "postgres_url" in node:
        yield ".".join(where), node
        return
    for key, value in node.items():
        yield from _postgres_entries(value, (*where, str(key)))


def _entry_url(path: Path, where: str, entry: dict) -> URL:
    if entry.get("postgres_url") is not None:
        raw = _value(path, f"{where}.postgres_url", entry["postgres_url"])
        try:
            url = make_url(str(raw))
        except ArgumentError:
            raise TradeDBError(f"{path}: {where}.postgres_url is not a database URL") from None
        if url.drivername != DRIVER:
            raise TradeDBError(
                f"{path}: {where}.postgres_url starts with {url.drivername}://; write it as "
                f"{DRIVER}://user@host:port/dbname ({WHY_PSYCOPG2})"
            )
        return url
    db = entry.get("postgres_db")
    if not isinstance(db, dict):
        raise TradeDBError(
            f"{path}: {where}.postgres_db must be a mapping (hostname, username, db_name, ...)"
        )
    scheme = db.get("scheme")
    if scheme is None:
        raise TradeDBError(
            f'{path}: {where}.postgres_db has no scheme; add "scheme: {DRIVER}" under postgres_db ({WHY_PSYCOPG2})'
        )
    scheme = _value(path, f"{where}.postgres_db.scheme", scheme)
    if scheme != DRIVER:
        raise TradeDBError(
            f'{path}: {where}.postgres_db.scheme is {scheme!r}; write "scheme: {DRIVER}" ({WHY_PSYCOPG2})'
        )
    fields = {k: _value(path, f"{where}.postgres_db.{k}", v) for k, v in db.items() if k != "params"}
    missing = [k for k in ("hostname", "username", "db_name") if not fields.get(k)]
    if missing:
        raise TradeDBError(f"{path}: {where}.postgres_db needs {', '.join(missing)}")
    try:
        port = int(fields.get("port") or 5432)
    except ValueError:
        raise TradeDBError(f"{path}: {where}.postgres_db.port must be a number") from None
    params = db.get("params") or {}
    return URL.create(
        DRIVER,
        username=str(fields["username"]),
        password=str(fields["password"]) if fields.get("password") else None,
        host=str(fields["hostname"]),
        port=port,
        database=str(fields["db_name"]),
        query={str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {},
    )


def _value(path: Path, where: str, value: Any) -> Any:
    """A setting's value, reading ``{env: NAME}`` as Dagster does; an unset variable is one clear error."""
    if isinstance(value, dict) and set(value) == {"env"}:
        name = str(value["env"])
        if name not in os.environ:
            raise TradeDBError(f"{path}: {where} reads the environment variable {name}, which is not set")
        return os.environ[name]
    return value


def _same_database(a: URL, b: URL) -> bool:
    def key(u: URL) -> tuple:
        socket = u.query.get("host")
        host = socket if isinstance(socket, str) else u.host or "localhost"
        return (host.lower(), u.port or 5432, u.database)

    local = {"localhost", "127.0.0.1", "::1"}
    (ha, pa, da), (hb, pb, db) = key(a), key(b)
    return (ha == hb or {ha, hb} <= local) and pa == pb and da == db
