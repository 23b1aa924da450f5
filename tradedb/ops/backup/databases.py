"""The database-level moves of a restore: scratch databases, privileges, renames and the swap.

Issued from a maintenance database (``postgres``, else ``template1``) with the target's own credentials. The
swap renames the target away and the verified scratch copy into its name; production's replaced database is kept
as ``<db>_old_<time>``, others are dropped.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from tradedb.core.db import unreachable
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import Environment
from tradedb.schema.locks import LOCK_KEY, holder_pids_sql

SWAP_RETRY_S = 10.0  # how long the swap keeps terminating sessions that hold the target open

MAX_IDENTIFIER = 63  # PostgreSQL's limit on a database name

MAINTENANCE_DATABASES = ("postgres", "template1")  # where CREATE/ALTER/DROP DATABASE are issued from

PRODUCTION = "production"

# a swap keeps these environments' replaced database renamed, never drops it: it holds the writes since the backup
KEEP_REPLACED_ENVIRONMENTS = frozenset({PRODUCTION})

# application_name of the restore's sessions (a blocked migration names it)
RESTORE_APPLICATION = "tradedb-restore"


@dataclass(frozen=True)
class Privileges:
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


def maintenance_engine(target: Environment) -> Engine:
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


def read_privileges(admin: Connection, database: str) -> Privileges:
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
    return Privileges(row.rolsuper, row.rolcreatedb, owner is not None, owner, member, row.who)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def derived_name(database: str, tag: str, stamp: str) -> str:
    suffix = f"_{tag}_{stamp}"
    return database[: MAX_IDENTIFIER - len(suffix)] + suffix


def create_scratch(admin: Connection, name: str, target: str, privileges: Privileges) -> None:
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


def copy_database_properties(admin: Connection, source: str, scratch: str) -> None:
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


def drop_database(admin: Connection, name: str) -> None:
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


def swap_in(
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
    old = derived_name(target, "old", stamp)
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
        drop_database(admin, old)
        return None
    _allow_connections(admin, old, True)  # readable, for the writes made after the backup was taken
    return old
