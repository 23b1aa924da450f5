"""The migration ledger: every schema step and data-migration run, from every entry point, in the target database.

It lives in the target database's own ``tradedb_migrations`` schema (never in Dagster's storage) so the record
travels with the data: a restore or a staging refresh carries its history, and plain ``alembic`` runs, which know
nothing of Dagster, are recorded by ``migrations/env.py`` in the same table as Dagster and CLI runs.

A successful schema step is written in the step's own transaction (it commits with the version change, or not at
all); a failure is written after the rollback, in a transaction of its own. Writing the ledger never breaks the
migration that is being recorded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from tradedb.core import alerts
from tradedb.core.db import database_size
from tradedb.core.errors import first_line
from tradedb.core.paths import project_root
from tradedb.core.scrub import scrub
from tradedb.schema.history import revisions
from tradedb.schema.state_schema import STATE_SCHEMA, ensure_state_tables, has_state_table

log = logging.getLogger("tradedb.ledger")

TABLE = f"{STATE_SCHEMA}.ledger"

KINDS = ("schema", "data", "backup", "restore", "rehearsal", "override")
DIRECTIONS = ("upgrade", "downgrade", "stamp", "run", "revert", "backup", "restore", "rehearse", "override")
OUTCOMES = ("success", "failure", "stopped")

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA};
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    name text NOT NULL,
    direction text NOT NULL,
    environment text NOT NULL,
    launched_by text NOT NULL,
    run_id text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    duration_s double precision NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('success', 'failure', 'stopped')),
    error text,
    rows_touched bigint,
    db_size_before bigint,
    db_size_after bigint,
    file_checksum text,
    detail jsonb NOT NULL DEFAULT '{{}}'
);
CREATE INDEX IF NOT EXISTS ledger_started_at_idx ON {TABLE} (started_at);
"""


@dataclass
class LedgerEntry:
    """One row of the ledger: what ran, in which direction, launched by whom, how it ended."""

    kind: str
    name: str
    direction: str
    environment: str
    launched_by: str
    started_at: datetime
    finished_at: datetime
    outcome: str
    run_id: str | None = None
    error: str | None = None
    rows_touched: int | None = None
    db_size_before: int | None = None
    db_size_after: int | None = None
    file_checksum: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


def now() -> datetime:
    return datetime.now(UTC)


def ensure(conn: Connection) -> None:
    """Create the ledger table if this database has none yet (idempotent, cheap when it exists)."""
    ensure_state_tables(conn, lambda: has_state_table(conn, "ledger"), DDL)


def record(conn: Connection, entry: LedgerEntry) -> int:
    """Insert ``entry`` on ``conn`` (in the caller's transaction) and return its id."""
    ensure(conn)
    values = asdict(entry)
    values["duration_s"] = entry.duration_s
    values["error"] = scrub(entry.error) if entry.error else None
    values["detail"] = json.dumps(_scrubbed(entry.detail, scrub), default=str)
    columns = ", ".join(values)
    params = ", ".join(f"CAST(:{k} AS jsonb)" if k == "detail" else f":{k}" for k in values)
    return int(conn.scalar(text(f"INSERT INTO {TABLE} ({columns}) VALUES ({params}) RETURNING id"), values))


def _scrubbed(value: Any, scrub: Callable[[str], str]) -> Any:
    """``value`` with every string passed through ``scrub``: details quote URLs and commands too."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v, scrub) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v, scrub) for v in value]
    return value


def record_apart(engine, entry: LedgerEntry) -> None:
    """Record ``entry`` in a transaction of its own; a ledger that cannot be written is logged, never raised."""
    try:
        with engine.begin() as conn:
            record(conn, entry)
    except Exception as exc:  # the run's own outcome matters more than its record
        log.warning("could not write the ledger entry for %s %s: %s", entry.kind, entry.name, exc)


def entries(
    conn: Connection, *, since: datetime | None = None, environment: str | None = None
) -> list[dict[str, Any]]:
    """Ledger rows, oldest first, optionally from ``since`` and for one environment."""
    if not has_state_table(conn, "ledger"):
        return []
    where, params = [], {}
    if since is not None:
        where.append("started_at >= :since")
        params["since"] = since
    if environment is not None:
        where.append("environment = :env")
        params["env"] = environment
    sql = f"SELECT * FROM {TABLE}" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
    return [dict(r) for r in conn.execute(text(sql), params).mappings()]


# ------------------------------------------------------------------------------------------------ revision files


def file_checksum(revision: str) -> str | None:
    """sha256 of a revision's file as it is in the code now (None for a revision this code does not have)."""
    info = next((r for r in revisions() if r.revision == revision), None)
    if info is None:
        return None
    return hashlib.sha256((project_root() / info.path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class EditedRevision:
    revision: str
    path: str
    applied_at: datetime
    applied_checksum: str
    current_checksum: str

    def describe(self) -> str:
        return (
            f"revision {self.revision} ({self.path}) was edited after it was applied on "
            f"{self.applied_at:%Y-%m-%d %H:%M} UTC: the database ran a different file than the code holds now"
        )


def edited_revisions(conn: Connection) -> list[EditedRevision]:
    """Applied revisions whose file changed since the ledger recorded their upgrade.

    Only the last successful upgrade of each revision counts (a revision downgraded and re-applied after an edit
    is applied as it is now). Revisions applied before the ledger existed have nothing to compare with.
    """
    if not has_state_table(conn, "ledger"):
        return []
    from alembic.migration import MigrationContext

    current = MigrationContext.configure(conn).get_current_revision()
    order = [r.revision for r in revisions()]
    if current not in order:
        return []
    applied = order[: order.index(current) + 1]
    rows = conn.execute(
        text(
            f"""SELECT DISTINCT ON (name) name, file_checksum, finished_at FROM {TABLE}
                WHERE kind = 'schema' AND outcome = 'success' AND direction = 'upgrade'
                  AND name = ANY(:names)
                ORDER BY name, id DESC"""
        ),
        {"names": applied},
    ).mappings()
    out = []
    paths = {r.revision: r.path for r in revisions()}
    for row in rows:
        now_sum = file_checksum(row["name"])
        if row["file_checksum"] and now_sum and row["file_checksum"] != now_sum:
            out.append(
                EditedRevision(
                    row["name"], paths[row["name"]], row["finished_at"], row["file_checksum"], now_sum
                )
            )
    return sorted(out, key=lambda e: order.index(e.revision))


# ------------------------------------------------------------------------------------------------ alembic hooks


class SchemaStepRecorder:
    """Records each Alembic step of one ``env.py`` run: successes in the step's transaction, a failure after it.

    ``watch`` wraps the migration context's step generator so the recorder knows which step is running (and since
    when) even when that step fails before Alembic's ``on_version_apply`` callback would name it. Alerts are held
    until the run is over, so a slow webhook never keeps a migration's locks.
    """

    def __init__(
        self, environment: str, launched_by: str, run_id: str | None = None, size_before: int | None = None
    ) -> None:
        self.environment = environment
        self.launched_by = launched_by
        self.run_id = run_id
        self._size = size_before
        self._step = None
        self._started = now()
        self._alerts: list[tuple[str, str, str]] = []

    def launch(self) -> dict[str, str | None]:
        """Who this run is, as ``RunOptions`` fields: data migrations a step finishes inline are recorded alike."""
        return {"environment": self.environment, "launched_by": self.launched_by, "run_id": self.run_id}

    def watch(self, migration_context) -> None:
        """Wrap ``migration_context``'s step generator to note each step as it starts."""
        steps = migration_context._migrations_fn
        if steps is None:
            return

        def noted(heads, ctx):
            for step in steps(heads, ctx):
                self._step, self._started = step.info, now()
                yield step

        migration_context._migrations_fn = noted

    def step_name(self) -> str:
        """The running (or last failed) step, for error messages: ``revision 0007 (upgrade)``."""
        if self._step is None:
            return "this step"
        return f"revision {_step_name(self._step)} ({_direction(self._step)})"

    def on_version_apply(self, ctx, step, heads, run_args) -> None:
        """Alembic callback after each step, inside the step's transaction.

        The row is written under a savepoint: a ledger that cannot be written is logged, never the reason a
        migration fails or rolls back.
        """
        if ctx.as_sql:
            return
        try:
            with ctx.connection.begin_nested():
                size_after = database_size(ctx.connection)
                record(ctx.connection, self._entry(step, "success", size_after=size_after))
        except Exception as exc:
            log.warning("could not record %s in the ledger: %s", step, first_line(exc))
            size_after = None
        self._size, self._step = size_after, None

    def failed(self, connection: Connection, exc: BaseException) -> None:
        """Record the step that was running when ``exc`` ended the run (after its rollback)."""
        if self._step is None:
            return
        try:
            if connection.in_transaction():
                connection.rollback()
            with connection.begin():
                record(connection, self._entry(self._step, "failure", error=first_line(exc)))
        except Exception as record_exc:
            log.warning("could not record the failed step in the ledger: %s", record_exc)

    def _entry(self, step, outcome: str, *, size_after: int | None = None, error: str | None = None):
        entry = LedgerEntry(
            kind="schema",
            name=_step_name(step),
            direction=_direction(step),
            environment=self.environment,
            launched_by=self.launched_by,
            run_id=self.run_id,
            started_at=self._started,
            finished_at=now(),
            outcome=outcome,
            error=error,
            db_size_before=self._size,
            db_size_after=size_after,
            file_checksum=file_checksum(step.up_revision_id) if step.up_revision_id else None,
            detail={
                "from": ",".join(step.source_revision_ids) or "base",
                "to": ",".join(step.destination_revision_ids) or "base",
            },
        )
        self._queue_alerts(entry)
        return entry

    def _queue_alerts(self, entry: LedgerEntry) -> None:
        if entry.outcome == "failure" and self.run_id is None:  # Dagster runs alert through their sensor
            self._alerts.append(
                (
                    alerts.RUN_FAILED,
                    f"{entry.direction} {entry.name} failed on {entry.environment}",
                    entry.error or "",
                )
            )
        if entry.outcome == "success" and entry.environment == "production" and entry.direction != "upgrade":
            self._alerts.append(
                (
                    alerts.STAMP if entry.direction == "stamp" else alerts.DOWNGRADE,
                    f"{entry.direction} {entry.name} on production by {entry.launched_by}",
                    f"{entry.detail['from']} -> {entry.detail['to']}",
                )
            )

    def send_alerts(self) -> None:
        """Send what the run raised; called once the run's transactions are over."""
        for kind, title, detail in self._alerts:
            alerts.send(self.environment, kind, title, detail, {"launched_by": self.launched_by})
        self._alerts.clear()


def _direction(step) -> str:
    return "stamp" if step.is_stamp else "upgrade" if step.is_upgrade else "downgrade"


def _step_name(step) -> str:
    """An upgrade step adds its up revision; a downgrade step removes it: either way the step is about it."""
    return ",".join(step.up_revision_ids) or "base"
