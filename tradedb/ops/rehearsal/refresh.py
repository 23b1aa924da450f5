"""Refreshing staging from production's latest backup (or a fresh one), and telling the two apart.

Staging and production count as the same database when the servers report the same system identifier, start time
and database name, however the URLs are spelled; only when one does not answer are the URLs compared.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from tradedb.core.db import connect_checked, make_engine
from tradedb.core.errors import TradeDBError, cause_line
from tradedb.core.settings import Environment, resolve_environment
from tradedb.ops import backup
from tradedb.ops.backup import Backup
from tradedb.ops.checksums import differing
from tradedb.schema.locks import MigrationLocked, migration_lock

log = logging.getLogger("tradedb.rehearsal")


@dataclass(frozen=True)
class Refreshed:
    """What a refresh put into staging: where it came from, and the state the rehearsal must find there.

    ``checksums`` (with ``revision``) are what staging must hold once the rehearsal has its lock; None when the
    refresh cannot say (a custom refresh returning only a description), and then nothing is compared.
    """

    origin: str
    revision: str | None = None
    checksums: dict[str, str] | None = None


def as_refreshed(result: str | Refreshed) -> Refreshed:
    return result if isinstance(result, Refreshed) else Refreshed(result)


def refuse_while_migrating(staging: Environment) -> None:
    """Fail before the refresh overwrites staging under someone else's migration (a missing database is fine)."""
    with _staging_lock_if_reachable(staging):
        pass


@contextmanager
def _staging_lock_if_reachable(staging: Environment) -> Iterator[None]:
    """Hold staging's migration lock for the block; ``MigrationLocked`` when someone else holds it.

    A staging database that does not answer (not created yet) runs the block unlocked: nobody can be migrating
    it, and the refresh creates it or fails with its own clear error.
    """
    engine = make_engine(staging)
    try:
        with ExitStack() as stack:
            try:
                stack.enter_context(migration_lock(engine, staging))
            except MigrationLocked:
                raise
            except TradeDBError as exc:
                log.info("staging not locked before its refresh: %s", exc)
            yield
    finally:
        engine.dispose()


def require_refreshed(expected: Refreshed, revision: str | None, checksums: dict[str, str]) -> None:
    """Fail unless staging (read under the rehearsal's lock) is what the refresh left: nobody migrated it since."""
    if expected.checksums is None:
        return
    found = []
    if revision != expected.revision:
        found.append(
            f"it is at revision {revision or 'empty'}, the refresh left {expected.revision or 'empty'}"
        )
    if changed := differing(expected.checksums, checksums):
        found.append(f"table(s) {', '.join(changed)} differ from the refreshed copy")
    if found:
        raise TradeDBError(
            f"staging changed between its refresh and the rehearsal's lock ({'; '.join(found)}): another session "
            "migrated it, and nothing was rehearsed. Rehearse again once it is done."
        )


def refuse_production(staging: Environment) -> None:
    if staging.name == "production":
        raise TradeDBError(
            "refusing to rehearse on production: a rehearsal overwrites its target; use staging"
        )


def refresh_from_production(
    staging: Environment, source: Backup | None = None, launched_by: str | None = None
) -> Refreshed:
    """Restore ``source`` (default: production's latest backup, or a fresh one) into staging; say what it was.

    The restore is verified against the backup's checksums, so a rehearsal never measures a damaged copy; the
    backup's revision and checksums are returned for the rehearsal to check again under its lock. Staging's lock
    is taken first (``MigrationLocked`` while someone else holds it) and held while production is told apart from
    staging and the backup is picked or taken, so no migration starts on staging just to be overwritten.
    """

    with _staging_lock_if_reachable(
        staging
    ):  # first: a staging someone is migrating is refused before anything
        production = resolve_environment("production")
        if _same_database(production, staging):
            raise TradeDBError(
                f"refusing to rehearse: staging and production are the same database ({staging.safe_url})"
            )
        source, kind = _production_backup(production, source, launched_by)
    backup.restore(source, staging, launched_by=launched_by)
    return Refreshed(f"{kind} {_describe_backup(source)}", source.revision, dict(source.checksums))


def _production_backup(
    production: Environment, source: Backup | None, launched_by: str | None
) -> tuple[Backup, str]:
    """The backup to restore, and how it was found: ``source``, else the latest, else a fresh one."""

    if source is not None:
        return source, "backup"
    latest = backup.latest_backup(production)
    if latest is not None:
        return latest, "backup"
    return backup.take_backup(production, reason="rehearsal", launched_by=launched_by), "fresh backup"


IDENTITY_SQL = text(
    "SELECT system_identifier, pg_postmaster_start_time(), current_database() FROM pg_control_system()"
)


def _same_database(a: Environment, b: Environment) -> bool:
    """Whether ``a`` and ``b`` are one database, asked of the servers themselves, however the URLs spell them.

    ``localhost`` and ``127.0.0.1``, a socket folder and its symlink, an explicit default port: text differs, the
    database does not. Each server reports its cluster's system identifier and its start time (a clone made with
    ``pg_basebackup`` shares the identifier, never the start time) and the database name. When either does not
    answer (production down while an existing backup is restored), this falls back to comparing the URLs' host,
    port and database, which such spellings can still fool.
    """
    ids = _database_identity(a), _database_identity(b)
    if None in ids:
        return (a.url.host, a.url.port, a.url.database) == (b.url.host, b.url.port, b.url.database)
    return ids[0] == ids[1]


def _database_identity(env: Environment) -> tuple[int, datetime, str] | None:
    """(system identifier, server start time, database name) of ``env``'s database; None when it does not answer."""
    try:
        with connect_checked(env) as conn:
            identifier, started, database = conn.execute(IDENTITY_SQL).one()
    except (TradeDBError, SQLAlchemyError) as exc:
        log.info("cannot ask the %s server who it is: %s", env.name, cause_line(exc))
        return None
    return int(identifier), started, database


def _describe_backup(b: Backup) -> str:
    taken = f"{b.taken_at:%Y-%m-%d %H:%M} UTC"
    return f"{b.id} ({b.environment} at revision {b.revision or 'empty'}, taken {taken})"
