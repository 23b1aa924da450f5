"""The staging rehearsal: run the production deploy on a copy of production and measure what it will cost.

What a rehearsal does, in order:
1. refresh staging (by default: restore the latest production backup into it, taking one when none exists);
2. under the migration lock, note the starting revision and checksum every app table, and check that staging is
   still what the refresh put there (see ``rehearse`` for why the lock cannot simply be held through the refresh);
3. run the deploy steps exactly as the Dagster deploy job does (``tradedb.ops.pipeline.apply_revision`` and
   ``run_data_migration``, in ``deploy_order``, each data migration gated by the checks Dagster gates it with),
   timing each step while a ``LockSampler`` watches ``pg_locks`` for ACCESS EXCLUSIVE locks;
4. run the head checks (foreign-key orphans, schema drift);
5. round trip: downgrade to the starting revision, upgrade again through the same steps, and judge the checksums
   with ``validate.round_trip_problems``, the one rule of what must survive a round trip (see ``round_trip``);
6. return a ``RehearsalReport``: the Dagster rehearsal asset stores it as metadata, and the production schedule's
   fit decision reads the step durations back (``estimated_seconds``).

``fingerprint()`` names what was rehearsed (revision files and data-migration declarations), so the sensor can ask
for exactly one rehearsal per change in code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

import data_migrations
from data_migrations import checks as core_checks
from data_migrations.base import DataMigration
from tradedb import schema
from tradedb.core.db import app_tables, connect_checked, make_engine
from tradedb.core.errors import TradeDBError, cause_line
from tradedb.core.launchers import cli_user, dagster_launcher
from tradedb.core.paths import project_root
from tradedb.core.settings import Environment, resolve_environment
from tradedb.ops import backup
from tradedb.ops.backup import Backup
from tradedb.ops.checksums import differing
from tradedb.ops.pipeline import apply_revision, run_data_migration
from tradedb.ops.validate import round_trip_problems, table_checksums
from tradedb.schema import ledger
from tradedb.schema.locks import MigrationLocked, migration_lock

log = logging.getLogger("tradedb.rehearsal")

SAMPLE_SECONDS = 0.02
"""How often the lock sampler polls ``pg_locks``. A lock held for less than this may be seen once or not at all."""
SAMPLE_MS = round(SAMPLE_SECONDS * 1000)
SAMPLER_APPLICATION = "tradedb-lock-sampler"
# a sampling query that hangs is cancelled instead of hanging the sampler
SAMPLER_STATEMENT_TIMEOUT_MS = 1_000
SAMPLER_JOIN_SECONDS = 2.0  # how long stopping waits for the sampling thread (it is a daemon either way)
FINGERPRINT_CHARS = 16
REPORT_FORMAT = 1  # bump when the JSON shape changes incompatibly


# ------------------------------------------------------------------------------------------------ fingerprint


def fingerprint() -> str:
    """A short, stable hash of the revisions and data migrations in code: the sensor's run key.

    It covers each revision's id and file bytes, and each data migration's name, ``after`` revision and the bytes
    of the module declaring it, so editing any of them (not only adding one) asks for a new rehearsal.
    """
    items = [["revision", r.revision, _file_sha256(project_root() / r.path)] for r in schema.revisions()]
    for m in data_migrations.registry().values():
        items.append(["data", m.name, m.after, _file_sha256(_declaring_file(m))])
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:FINGERPRINT_CHARS]


def _file_sha256(path: Path | None) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path else "unknown"
    except OSError:
        return "missing"


def _declaring_file(m: DataMigration) -> Path | None:
    """The file of the module whose ``migration`` is ``m`` (the registry imported it)."""
    for name, module in list(sys.modules.items()):
        if name.startswith("data_migrations.") and getattr(module, "migration", None) is m:
            return Path(module.__file__) if getattr(module, "__file__", None) else None
    return None


# ------------------------------------------------------------------------------------------------ deploy order


@dataclass(frozen=True)
class Step:
    """One step of a deploy: a revision (``kind='schema'``, name = revision id) or a data migration."""

    kind: str
    name: str
    feature: str


def deploy_order(current: str | None) -> list[Step]:
    """The steps a deploy runs from revision ``current`` (None: an empty database) to head, in order.

    Each pending revision in history order, and each data migration right after its ``after`` revision (so before
    the contract revision that ``requires_data`` it). A data migration whose ``after`` revision is already applied
    but whose contract is still pending comes first: it may have rows left (a deploy stopped at a window's end).
    The Dagster deploy job follows this same order through ``deploy_priority``.
    """
    pending = _pending_revisions(current)
    pending_ids = {r.revision for r in pending}
    still_needed = {name for r in pending for name in r.requires_data}
    migrations = list(data_migrations.registry().values())
    position = {r.revision: i for i, r in enumerate(schema.revisions())}
    carried = [m for m in migrations if m.after not in pending_ids and m.name in still_needed]
    steps = [_data_step(m) for m in sorted(carried, key=lambda m: position.get(m.after, -1))]
    for info in pending:
        steps.append(Step("schema", info.revision, info.feature))
        steps += [_data_step(m) for m in migrations if m.after == info.revision]
    return steps


def _data_step(m: DataMigration) -> Step:
    return Step("data", m.name, m.feature)


def _pending_revisions(current: str | None) -> list[schema.RevisionInfo]:
    history = list(schema.revisions())
    ids = [r.revision for r in history]
    if current is None:
        return history
    if current not in ids:
        raise TradeDBError(
            f"revision {current!r} is not in this code's history (a newer release, or a branch)"
        )
    return history[ids.index(current) + 1 :]


@cache
def _priorities() -> dict[tuple[str, str], int]:
    order = deploy_order(None)
    return {(s.kind, s.name): len(order) - i for i, s in enumerate(order)}


def deploy_priority(kind: str, name: str) -> int:
    """Dagster ``dagster/priority`` tag for a deploy asset: earlier in ``deploy_order`` means higher.

    Among steps ready at the same moment Dagster runs the higher priority first, so with these tags the deploy
    job runs in exactly ``deploy_order`` (without them it ran revision 0012 before the data migration after 0011).
    """
    return _priorities()[(kind, name)]


# ------------------------------------------------------------------------------------------------ lock sampler

LOCKS_SQL = text(
    """SELECT l.pid, l.relation::bigint AS relid, l.relation::regclass::text AS relation,
              coalesce(a.application_name, '') AS holder
       FROM pg_locks l
       JOIN pg_class c ON c.oid = l.relation
       LEFT JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.granted
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND l.pid <> pg_backend_pid()"""
)
"""Granted ACCESS EXCLUSIVE locks on relations others can see (joining ``pg_class`` leaves out tables created by the
uncommitted transaction itself: nobody can wait for those), held by any backend but ours."""


@dataclass
class LockInterval:
    """One lock seen in consecutive samples: held at least ``last - first`` (at most about two periods more)."""

    step: str | None
    relation: str
    holder: str
    first: float
    last: float

    @property
    def ms(self) -> float:
        return (self.last - self.first) * 1000


class LockSampler:
    """Watches ``pg_locks`` from its own connection while the rehearsal runs, and attributes locks to steps.

    Use as a context manager around the steps, and ``with sampler.step(name):`` around each. A lock is attributed
    to the step current when it was first seen. Sampling failures are recorded in ``error``, never raised: the
    rehearsal matters more than its lock figures.
    """

    def __init__(self, env: Environment, *, period: float = SAMPLE_SECONDS) -> None:
        self.env = env
        self.period = period
        self.error: str | None = None
        self.samples = 0
        self._intervals: list[LockInterval] = []
        self._open: dict[tuple[int, int], LockInterval] = {}
        self._step: str | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None

    def __enter__(self) -> LockSampler:
        try:
            self._engine = make_engine(
                self.env,
                isolation_level="AUTOCOMMIT",
                connect_args={
                    "application_name": SAMPLER_APPLICATION,
                    "options": f"-c statement_timeout={SAMPLER_STATEMENT_TIMEOUT_MS}",
                },
            )
            conn = self._engine.connect()
        except Exception as exc:  # no figures, but the rehearsal goes on
            self._failed(exc)
            return self
        self._thread = threading.Thread(target=self._run, args=(conn,), name="lock-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(SAMPLER_JOIN_SECONDS)
        if self._engine is not None and (self._thread is None or not self._thread.is_alive()):
            self._engine.dispose()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Attribute locks first seen inside the block to step ``name``."""
        with self._mutex:
            self._step = name
        try:
            yield
        finally:
            with self._mutex:
                self._step = None

    def longest(self, name: str) -> tuple[float, str | None]:
        """(milliseconds, relation) of the longest lock of step ``name``; (0, None) when none was seen.

        0 ms with a relation means the lock was seen in one sample only: held for less than the sampling period.
        """
        with self._mutex:
            mine = [i for i in self._intervals if i.step == name]
        if not mine:
            return 0.0, None
        top = max(mine, key=lambda i: i.ms)
        return round(top.ms, 1), top.relation

    def _run(self, conn) -> None:
        try:
            with conn:
                while not self._stop.is_set():
                    rows = conn.execute(LOCKS_SQL).all()
                    self._record(rows, time.monotonic())
                    self._stop.wait(self.period)
        except Exception as exc:
            self._failed(exc)

    def _record(self, rows, now: float) -> None:
        with self._mutex:
            seen = set()
            for row in rows:
                key = (row.pid, row.relid)
                seen.add(key)
                interval = self._open.get(key)
                if interval is None:
                    interval = LockInterval(self._step, row.relation, row.holder, now, now)
                    self._open[key] = interval
                    self._intervals.append(interval)
                else:
                    interval.last = now
            for key in set(self._open) - seen:  # released: the next sighting is a new lock
                del self._open[key]
            self.samples += 1

    def _failed(self, exc: Exception) -> None:
        self.error = f"lock sampling stopped: {cause_line(exc)}"
        log.warning(self.error)


# ------------------------------------------------------------------------------------------------ the report


@dataclass
class StepMeasurement:
    """One rehearsed step: how long it took, its longest ACCESS EXCLUSIVE lock, rows for data migrations."""

    kind: str
    name: str
    feature: str
    seconds: float
    longest_lock_ms: float = 0.0
    lock_relation: str | None = None
    rows: int | None = None
    quarantined: int | None = None
    detail: str = ""

    @property
    def lock_text(self) -> str:
        """The lock figure as an operator should read it: a lock seen once was held under one sampling period."""
        if self.lock_relation is None:
            return "none seen"
        if self.longest_lock_ms < SAMPLE_MS:
            return f"< {SAMPLE_MS} ms on {self.lock_relation}"
        return f"{self.longest_lock_ms:,.0f} ms on {self.lock_relation}"


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    violations: int = 0
    description: str = ""
    skipped: str | None = None
    sample: list[dict] = field(default_factory=list)


@dataclass
class RehearsalReport:
    """Everything a rehearsal measured; ``to_json``/``from_json`` round-trip it through Dagster metadata."""

    fingerprint: str
    environment: str
    source: str
    started_at: datetime
    head: str
    finished_at: datetime | None = None
    start_revision: str | None = None
    steps: list[StepMeasurement] = field(default_factory=list)
    checks: list[CheckOutcome] = field(default_factory=list)
    round_trip_ok: bool | None = None
    round_trip_differences: list[str] = field(default_factory=list)
    round_trip_expected: list[str] = field(default_factory=list)
    round_trip_exempt: dict[str, str] = field(default_factory=dict)
    downgrade_seconds: float | None = None
    reupgrade_seconds: float | None = None
    table_rows: dict[str, int] = field(default_factory=dict)
    lock_sampling: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.finished_at is not None
            and all(c.passed for c in self.checks)
            and bool(self.round_trip_ok)
        )

    @property
    def deploy_seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = _iso(self.started_at)
        data["finished_at"] = _iso(self.finished_at)
        data["ok"] = self.ok
        data["format"] = REPORT_FORMAT
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> RehearsalReport:
        data = json.loads(data) if isinstance(data, str) else dict(data)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["started_at"] = datetime.fromisoformat(values["started_at"])
        values["finished_at"] = values.get("finished_at") and datetime.fromisoformat(values["finished_at"])
        values["steps"] = [StepMeasurement(**s) for s in values.get("steps", [])]
        values["checks"] = [CheckOutcome(**c) for c in values.get("checks", [])]
        return cls(**values)

    def summary(self) -> list[str]:
        """Readable lines for the CLI and run logs."""
        lines = [
            f"rehearsal {self.fingerprint} of {self.environment}: {self.start_revision or 'empty'} -> {self.head}"
            f", staging from {self.source}"
        ]
        lines += [f"  {_step_line(s)}" for s in self.steps]
        failing = [c.name for c in self.checks if not c.passed]
        lines.append(f"checks: {len(self.checks) - len(failing)}/{len(self.checks)} passed")
        if failing:
            lines.append(f"failing checks: {', '.join(failing)}")
        lines.append(f"round trip: {_round_trip_text(self)}")
        if self.error:
            lines.append(f"stopped: {self.error}")
        return lines


def _step_line(s: StepMeasurement) -> str:
    rows = "" if s.rows is None else f", {s.rows:,} rows ({s.quarantined or 0:,} quarantined)"
    return f"{s.kind:6} {s.name:38} {s.seconds:8.2f} s, lock {s.lock_text}{rows}"


def _round_trip_text(report: RehearsalReport) -> str:
    if report.round_trip_ok is None:
        return "not run"
    if not report.round_trip_ok:
        return "FAILED: " + "; ".join(report.round_trip_differences)
    expected = (
        f"; expected changes: {'; '.join(report.round_trip_expected)}" if report.round_trip_expected else ""
    )
    return f"ok (down {report.downgrade_seconds} s, up again {report.reupgrade_seconds} s){expected}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class RehearsalFailed(TradeDBError):
    """A rehearsal step failed; ``report`` holds everything measured up to it."""

    def __init__(self, report: RehearsalReport, message: str) -> None:
        super().__init__(message)
        self.report = report


def estimated_seconds(report: RehearsalReport, pending_steps: list[Step]) -> float | None:
    """Seconds the rehearsal measured for ``pending_steps``; None when one of them was never rehearsed.

    None is the honest answer for a step the rehearsal did not reach (it failed earlier, or started past it):
    the caller should not guess a duration for a migration nobody has timed.
    """
    measured = {(s.kind, s.name): s.seconds for s in report.steps}
    try:
        return sum(measured[(s.kind, s.name)] for s in pending_steps)
    except KeyError:
        return None


# ------------------------------------------------------------------------------------------------ rehearse


@dataclass(frozen=True)
class Refreshed:
    """What a refresh put into staging: where it came from, and the state the rehearsal must find there.

    ``checksums`` (with ``revision``) are what staging must hold once the rehearsal has its lock; None when the
    refresh cannot say (a custom refresh returning only a description), and then nothing is compared.
    """

    origin: str
    revision: str | None = None
    checksums: dict[str, str] | None = None


def rehearse(
    staging: Environment,
    *,
    source: Backup | None = None,
    refresh: Callable[[], str | Refreshed] | None = None,
    on_step: Callable[[StepMeasurement], None] | None = None,
    run_id: str | None = None,
) -> RehearsalReport:
    """Refresh ``staging``, deploy it to head as production would, check, round-trip; return the measurements.

    ``refresh`` replaces the default refresh (restore ``source``, else production's latest backup, else a fresh
    one) and returns where staging came from, as text or as a ``Refreshed`` naming the state to expect.
    ``on_step`` is called after each measured deploy step. ``run_id`` is the Dagster run's, so the ledger names it.
    A failing step raises ``RehearsalFailed`` carrying the report.

    Staging's migration lock cannot be held through a restore: a swap restore terminates every session on the old
    database (the lock's included) and puts a new database in its place, whose advisory locks are its own; and a
    restore that takes the target's lock itself would find ours. So the lock guards each side of the restore:
    - before it, staging must not be locked, and the default refresh holds the lock while it picks or takes the
      production backup (the long part), releasing it just before the restore, which takes it itself;
    - after it, the rehearsal takes the lock and checks that staging is still exactly what the refresh put there
      (same revision, every table equal to the backup's checksums); a migration that ran in between fails the
      rehearsal clearly instead of being measured as if it were production.
    """
    _refuse_production(staging)
    launched_by = dagster_launcher(run_id) if run_id else None
    if refresh is not None:
        _refuse_while_migrating(staging)
        refreshed = _as_refreshed(refresh())
    else:  # refuses a locked staging itself, under the lock it then holds while picking the backup
        refreshed = _as_refreshed(refresh_from_production(staging, source, launched_by))
    report = RehearsalReport(fingerprint(), staging.name, refreshed.origin, datetime.now(UTC), schema.head())
    engine = make_engine(staging)
    try:
        with migration_lock(engine, staging):
            _Rehearsal(staging, report, run_id, on_step).all_phases(refreshed)
    except Exception as exc:
        report.error = report.error or cause_line(exc)
        raise
    finally:
        report.finished_at = datetime.now(UTC)
        _record_in_ledger(engine, report, run_id)
        engine.dispose()
    return report


def _as_refreshed(result: str | Refreshed) -> Refreshed:
    return result if isinstance(result, Refreshed) else Refreshed(result)


def _refuse_while_migrating(staging: Environment) -> None:
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


def _require_refreshed(expected: Refreshed, revision: str | None, checksums: dict[str, str]) -> None:
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


def _refuse_production(staging: Environment) -> None:
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


def _record_in_ledger(engine: Engine, report: RehearsalReport, run_id: str | None) -> None:
    """One ``rehearsal`` row in staging's ledger (never raises: the report matters more than its record)."""
    entry = ledger.LedgerEntry(
        kind="rehearsal",
        name=report.fingerprint,
        direction="rehearse",
        environment=report.environment,
        launched_by=dagster_launcher(run_id) if run_id else cli_user("cli"),
        run_id=run_id,
        started_at=report.started_at,
        finished_at=report.finished_at or datetime.now(UTC),
        outcome="success" if report.ok else "failure",
        error=report.error,
        rows_touched=sum(s.rows or 0 for s in report.steps),
        detail={
            "start_revision": report.start_revision,
            "head": report.head,
            "source": report.source,
            "steps": len(report.steps),
            "deploy_seconds": round(report.deploy_seconds, 3),
            "round_trip_ok": report.round_trip_ok,
        },
    )
    ledger.record_apart(engine, entry)


class _Rehearsal:
    """One rehearsal's phases over a locked staging database, filling ``report`` as it goes."""

    def __init__(self, env: Environment, report: RehearsalReport, run_id: str | None, on_step) -> None:
        self.env = env
        self.report = report
        self.on_step = on_step
        self.launch = {"run_id": run_id} if run_id else {}
        self.downgrade_attrs = {"launched_by": dagster_launcher(run_id), "run_id": run_id} if run_id else {}

    def all_phases(self, refreshed: Refreshed) -> None:
        start = schema.current_revision(self.env)
        self.report.start_revision = start
        self.report.table_rows = self._table_rows()
        start_sums = table_checksums(self.env)
        self._guard(
            "checking staging is the refreshed copy",
            lambda: _require_refreshed(refreshed, start, start_sums),
        )
        steps = deploy_order(start)
        self.deploy(steps)
        head_sums = table_checksums(self.env)
        self.report.checks += self._guard("head checks", self._head_checks)
        self.round_trip(start, steps, start_sums, head_sums)

    def deploy(self, steps: list[Step]) -> None:
        with LockSampler(self.env) as sampler:
            try:
                for step in steps:
                    self.run_step(step, sampler)
            finally:
                self.report.lock_sampling = (
                    sampler.error or f"every {SAMPLE_MS} ms, {sampler.samples} samples"
                )

    def run_step(self, step: Step, sampler: LockSampler | None) -> StepMeasurement:
        """Run one deploy step as the Dagster asset does: a data step is gated by the checks Dagster blocks on.

        With a ``sampler`` this is the measured deploy: the measurement goes into the report (before its checks,
        so a failing check leaves the step's figures in the partial report). Without one it is the round trip's
        second pass, whose timings and checks are not the deploy's.
        """
        what = (
            f"{step.kind} step {step.name}"
            if sampler
            else f"round trip: re-upgrade {step.kind} step {step.name}"
        )
        measurement, rows_before = self._guard(what, lambda: self._measure(step, sampler))
        if sampler:
            self.report.steps.append(measurement)
            if self.on_step:
                self.on_step(measurement)
        if rows_before is not None:
            results = self._guard(what, lambda: self._gate(data_migrations.get(step.name), rows_before))
            if sampler:
                self.report.checks += results
            self._guard(what, lambda: _raise_on_failing(step.name, results))
        return measurement

    def _measure(self, step: Step, sampler: LockSampler | None) -> tuple[StepMeasurement, int | None]:
        """Run the step, timed, its locks attributed to it; also the table's rows before a data step."""
        with sampler.step(step.name) if sampler else nullcontext():
            started = time.monotonic()
            if step.kind == "schema":
                measurement, rows_before = self._schema_step(step), None
            else:
                measurement, rows_before = self._data_step(step)
            measurement.seconds = round(time.monotonic() - started, 3)
        if sampler:
            measurement.longest_lock_ms, measurement.lock_relation = sampler.longest(step.name)
        return measurement, rows_before

    def _schema_step(self, step: Step) -> StepMeasurement:
        outcome = apply_revision(self.env, step.name, **self.launch)
        return StepMeasurement("schema", step.name, step.feature, 0.0, detail=outcome.detail)

    def _data_step(self, step: Step) -> tuple[StepMeasurement, int]:
        m = data_migrations.get(step.name)
        rows_before = self._count(m.table)
        result = run_data_migration(self.env, m.name, **self.launch)
        if result.status != "finished":
            raise TradeDBError(f"data migration {m.name} stopped ({result.status}): {result.stop_reason}")
        detail = f"{result.rows_done} rows, {result.rows_quarantined} quarantined, {result.batches} batches"
        measurement = StepMeasurement(
            "data",
            m.name,
            m.feature,
            0.0,
            rows=result.rows_done,
            quarantined=result.rows_quarantined,
            detail=detail,
        )
        return measurement, rows_before

    def _gate(self, m: DataMigration, rows_before: int) -> list[CheckOutcome]:
        """The checks the deploy job runs after a data migration, blocking the contract that needs it."""
        with connect_checked(self.env) as conn:
            results = [_outcome(r) for r in core_checks.data_checks(conn, m)]
        rows_after = self._count(m.table)
        results.append(
            CheckOutcome(
                f"{m.name}:row_count_preserved",
                rows_after >= rows_before,
                max(0, rows_before - rows_after),
                f"{m.table}: {rows_before} rows before, {rows_after} after",
            )
        )
        return results

    def _head_checks(self) -> list[CheckOutcome]:
        """The deploy job's head checks: no orphans, no drift from the models, no applied revision edited since."""
        with connect_checked(self.env) as conn:
            orphans = _outcome(core_checks.foreign_key_orphans(conn))
            edited = ledger.edited_revisions(conn)
        unchanged = CheckOutcome(
            "revision_files_unchanged",
            not edited,
            len(edited),
            "no applied revision's file was edited after the ledger recorded it",
            sample=[{"edited": e.describe()} for e in edited[: core_checks.SAMPLE_ROWS]],
        )
        lines = schema.drift(self.env)
        drift = CheckOutcome(
            "schema_matches_models",
            not lines,
            len(lines),
            "no drift between models and database",
            sample=[{"difference": line} for line in lines[: core_checks.SAMPLE_ROWS]],
        )
        return [orphans, drift, unchanged]

    def round_trip(self, start: str | None, steps: list[Step], start_sums: dict, head_sums: dict) -> None:
        """Downgrade to ``start`` and upgrade again through the same steps; judge it as ``validate`` judges one.

        ``validate.round_trip_problems`` is the one rule of what must survive a round trip: after the downgrade
        every table equals its checksum at the start, except those written by a pending revision declaring
        ``preserves_data = False`` (its downgrade rebuilds a legacy column in canonical form); after the re-upgrade
        (data migrations re-run after their ``after`` revision, as in the deploy) every table, those included,
        equals its checksum after the first deploy. A change in an exempt table after the downgrade is reported
        in ``round_trip_expected`` with the declaring revision, without failing the round trip.
        """
        exempt = not_restorable_tables(_pending_revisions(start))
        self.report.round_trip_exempt = exempt
        started = time.monotonic()
        self._guard(f"downgrade to {start or 'base'}", lambda: self._downgrade(start or "base"))
        self.report.downgrade_seconds = round(time.monotonic() - started, 3)
        down_sums = table_checksums(self.env)
        started = time.monotonic()
        for step in steps:
            self.run_step(step, None)
        self.report.reupgrade_seconds = round(time.monotonic() - started, 3)
        reup_sums = table_checksums(self.env)
        self.report.round_trip_differences = round_trip_problems(
            start_sums, head_sums, down_sums, reup_sums, not_restorable=exempt
        )
        self.report.round_trip_expected = [
            f"{t}: not restored by the downgrade ({exempt[t]})"
            for t in differing(start_sums, down_sums)
            if t in exempt
        ]
        self.report.round_trip_ok = not self.report.round_trip_differences

    def _downgrade(self, target: str) -> None:
        schema.downgrade(self.env, target, lock_held=True, **self.downgrade_attrs)

    def _guard(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; any failure becomes ``RehearsalFailed`` naming ``what``, with the report so far."""
        try:
            return fn()
        except Exception as exc:
            message = f"rehearsal on {self.env.name} failed at {what}: {cause_line(exc)}"
            self.report.error = message
            raise RehearsalFailed(self.report, message) from exc

    def _count(self, table: str) -> int:
        with connect_checked(self.env) as conn:
            return int(conn.scalar(text(f'SELECT count(*) FROM "{table}"')))

    def _table_rows(self) -> dict[str, int]:
        with connect_checked(self.env) as conn:
            return {t: int(conn.scalar(text(f'SELECT count(*) FROM "{t}"'))) for t in app_tables(conn)}


def _raise_on_failing(name: str, results: list[CheckOutcome]) -> None:
    """Stop as the deploy job would: a failing blocking check keeps the contract revision from running."""
    failing = [r for r in results if not r.passed]
    if failing:
        names = ", ".join(f"{r.name} ({r.violations} violation(s))" for r in failing)
        raise TradeDBError(f"check failed after data migration {name}: {names}")


def _outcome(r: core_checks.CheckResult) -> CheckOutcome:
    return CheckOutcome(r.name, r.passed, r.violations, r.description, r.skipped, r.sample)


# ------------------------------------------------------------------------------------------------ round trip


TABLE_WRITE = re.compile(
    r"\b(?:ALTER TABLE|UPDATE|INSERT INTO|DELETE FROM|DROP TABLE|TRUNCATE(?: TABLE)?|CREATE TABLE)\s+"
    r"(?:IF (?:NOT )?EXISTS\s+)?(?:ONLY\s+)?(?:\"?public\"?\.)?\"?(\w+)",
    re.IGNORECASE,
)


def not_restorable_tables(pending: list[schema.RevisionInfo]) -> dict[str, str]:
    """Tables a downgrade through ``pending`` may legitimately change, with the reason, by table name.

    A revision declaring ``preserves_data = False`` exempts the tables its upgrade and downgrade SQL write and
    the tables of the data migrations it requires; every other table must come back byte for byte.
    """
    out: dict[str, str] = {}
    for info in pending:
        if info.preserves_data:
            continue
        for table in sorted(_tables_written(info)):
            out.setdefault(table, f"revision {info.revision} declares preserves_data = False")
    return out


def _tables_written(info: schema.RevisionInfo) -> set[str]:
    sql = schema.render_sql(info.revision) + _render_downgrade_sql(info)
    tables = {t for t in TABLE_WRITE.findall(sql) if t != "alembic_version"}
    return tables | {data_migrations.get(n).table for n in info.requires_data}


@cache
def _render_downgrade_sql(info: schema.RevisionInfo) -> str:
    """The SQL of one revision's downgrade alone, rendered offline (``alembic downgrade rev:prev --sql``)."""
    import io

    from alembic import command

    buffer = io.StringIO()
    cfg = schema.alembic_config()
    cfg.output_buffer = buffer
    command.downgrade(cfg, f"{info.revision}:{info.down_revision or 'base'}", sql=True)
    return buffer.getvalue()
