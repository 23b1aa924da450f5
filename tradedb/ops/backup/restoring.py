"""Restoring a backup: into a scratch database, verified, then swapped in (or in place for a role that may not).

Every restore first checks the dump, and holds the target's migration lock from before its first change to its
end, so it neither runs under a migration nor lets one start. A role without CREATEDB or ownership of the target
gets the in-place fallback (``pg_restore --clean --if-exists --single-transaction``), rehearsed and verified on a
scratch copy first only when the role may create one; an in-place restore into production first takes a fresh
backup of the target and refuses to go on without one. Production needs ``allow_production``, and
``allow_cross_environment`` too for another environment's backup.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import ClassVar

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from tradedb.core.db import make_engine
from tradedb.core.errors import TradeDBError
from tradedb.core.launchers import cli_user
from tradedb.core.settings import Environment
from tradedb.ops.backup.databases import (
    KEEP_REPLACED_ENVIRONMENTS,
    PRODUCTION,
    RESTORE_APPLICATION,
    Privileges,
    copy_database_properties,
    create_scratch,
    derived_name,
    drop_database,
    maintenance_engine,
    read_privileges,
    swap_in,
)
from tradedb.ops.backup.dump import take_backup
from tradedb.ops.backup.history import append_history, history_to_carry, record_on_target
from tradedb.ops.backup.manifest import Backup
from tradedb.ops.backup.settings import default_jobs, operator_error
from tradedb.ops.backup.tools import ClientTools, client_tools, run_tool, server_major
from tradedb.ops.backup.verify import check_dump, verify_restored
from tradedb.schema.locks import MigrationLocked, migration_lock

log = logging.getLogger("tradedb.backup")


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


def _restore_arguments(backup: Backup, target: Environment, privileges: Privileges, jobs: int) -> list[str]:
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
    own and unpooled (``NullPool``): the swap must close it for real before renaming the target (see ``swap_in``);
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
        raise operator_error(exc, _restore_what(backup, target), target.url) from None


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
    admin_engine = maintenance_engine(target)
    lock = _TargetLock(target)
    try:
        with admin_engine.connect() as admin:
            privileges = read_privileges(admin, target.url.database or "")
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
    record_on_target(
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
        error = operator_error(exc, _restore_what(run.backup, run.target), run.target.url)
        record_on_target(
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
    privileges: Privileges
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
                copy_database_properties(self.admin, self.database, scratch)
                append_history(copy, history_to_carry(self.target, self.backup))
            return swap_in(
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
        scratch = derived_name(self.database, "restore", self.stamp)
        create_scratch(self.admin, scratch, self.database, self.privileges)
        handed_over = False
        try:
            copy = self.scratch_environment(scratch)
            self.restore_into(copy, _restore_arguments(self.backup, self.target, self.privileges, self.jobs))
            self.check(copy)
            yield copy
            handed_over = True
        finally:
            if not handed_over:
                drop_database(self.admin, scratch)

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
        history = history_to_carry(self.target, self.backup) if self.privileges.target_exists else None
        arguments = _restore_arguments(self.backup, self.target, self.privileges, jobs=1)
        self.restore_into(self.target, [*arguments, "--clean", "--if-exists", "--single-transaction"])
        append_history(self.target, history)
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
            drop_database(self.admin, copy.url.database or "")
