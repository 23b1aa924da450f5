"""The deployment plan: the strategy's rollback plan and downtime assessment, computed instead of written by hand.

For an environment: what is pending, in the order the deploy runs it, each step's duration and longest ACCESS
EXCLUSIVE lock as the last staging rehearsal measured them, whether it needs a maintenance window or can run
online, the backup a rollback would restore, and the exact command that rolls each step back. The production
schedule's fit decision uses the same figures (``Plan.estimated_seconds``).

A data migration's duration grows with its rows, and production is rarely the size staging was at the rehearsal
(it grew since the backup staging was refreshed from, or staging holds a sample). So each data migration's
estimate is its rehearsed time scaled by production's rows now over the rows it was rehearsed on: the rows still
needing it when production is past its ``after`` revision, else all rows of its table (``SCALING``). Schema steps
are taken as rehearsed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import data_migrations
from tradedb import schema
from tradedb.core.db import connect_checked
from tradedb.core.settings import Environment
from tradedb.ops.backup import latest_backup
from tradedb.ops.deploy_order import Step, deploy_order, fingerprint
from tradedb.ops.rehearsal import RehearsalReport
from tradedb.schema.pending_rows import estimate_pending, table_rows

ONLINE_LOCK_MS = 200.0  # a schema step whose rehearsed ACCESS EXCLUSIVE lock stays under this may run online
SCALING = (
    "data migrations: rehearsed time in batches scaled by production's rows over the rows rehearsed on "
    "(waits for vacuum or locks not included); schema steps as rehearsed"
)
BACKUP_ENVIRONMENTS = ("production",)  # environments whose schema never changes without a fresh backup


@dataclass
class PlanStep:
    kind: str
    name: str
    feature: str
    description: str
    estimated_s: float | None
    longest_lock_ms: float | None
    lock_relation: str | None
    needs_window: bool
    why: str
    rollback: str
    basis: str = ""  # how a data migration's estimate was reached from the rehearsal (its scaling)

    @property
    def estimate_text(self) -> str:
        return "unknown" if self.estimated_s is None else f"{self.estimated_s:,.1f} s"

    @property
    def lock_text(self) -> str:
        if self.longest_lock_ms is None:
            return "unknown"
        if self.lock_relation is None:
            return "none seen"
        return f"{self.longest_lock_ms:,.0f} ms on {self.lock_relation}"


@dataclass
class Plan:
    environment: str
    current: str | None
    head: str
    steps: list[PlanStep] = field(default_factory=list)
    backup: str = ""
    rehearsal: str = ""
    rehearsal_current: bool = False
    estimated_seconds: float | None = None  # None: some pending step was never rehearsed, or the code changed
    backup_seconds: float = 0.0  # the run's own backup, timed like the last one (included in the estimate)
    fingerprint: str = ""  # of the revisions and data migrations in code when the plan was made
    restore: str = ""  # the restore command the rollbacks of data-dropping steps name

    def with_backup(self, backup_id: str) -> Plan:
        """This plan once the run has taken its backup: rollbacks name it (nothing is measured again)."""
        restore = restore_command(self.environment, backup_id)
        steps = [replace(s, rollback=s.rollback.replace(self.restore, restore)) for s in self.steps]
        return replace(self, steps=steps, backup=backup_id, restore=restore)

    @property
    def needs_window(self) -> bool:
        return any(s.needs_window for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "needs_window": self.needs_window}

    def markdown(self) -> str:
        """The plan as a table for Dagster metadata."""
        lines = [
            f"**{self.environment}**: {self.current or 'empty'} -> {self.head}; backup: {self.backup}; "
            f"rehearsal: {self.rehearsal}",
            "",
            f"estimates: {SCALING}",
            "",
            "| step | estimate | longest lock | window | rollback |",
            "| --- | --- | --- | --- | --- |",
        ]
        for s in self.steps:
            basis = f" ({s.basis})" if s.basis else ""
            lines.append(
                f"| {s.kind} {s.name} | {s.estimate_text}{basis} | {s.lock_text} | "
                f"{'window' if s.needs_window else 'online'}: {s.why} | `{s.rollback}` |"
            )
        return "\n".join(lines)


def pending_steps(env: Environment) -> tuple[str | None, list[Step]]:
    """The environment's revision and the deploy steps still to run (finished data migrations left out)."""
    current, steps, _ = _pending(env)
    return current, steps


def _pending(env: Environment) -> tuple[str | None, list[Step], dict[str, tuple[str, int]]]:
    """``pending_steps``, plus each pending data migration's rows now: ``(basis, rows)`` as ``scaled_seconds`` takes.

    Past its ``after`` revision a migration can say how many rows still need it (``pending``); before it, its
    ``pending_where`` may name columns that do not exist yet, so the rows of its table stand in (``table``).
    """
    with connect_checked(env) as conn:
        current = schema.current_revision(env, conn)
        steps = deploy_order(current)
        applied = {r.revision for r in schema.revisions()} - {s.name for s in steps if s.kind == "schema"}
        kept, rows = [], {}
        for step in steps:
            if step.kind == "data":
                m = data_migrations.get(step.name)
                if m.after in applied:
                    # an estimate on a big table: the schedule asks every tick, and a count would scan it whole
                    rows[m.name] = ("pending", estimate_pending(conn, m)[0])
                    if not rows[m.name][1]:
                        continue
                else:
                    rows[m.name] = ("table", table_rows(conn, m.table))
            kept.append(step)
    return current, kept, rows


def build_plan(env: Environment, rehearsal: RehearsalReport | None) -> Plan:
    """The plan for ``env`` now, with the rehearsal's figures where it measured the step."""

    current, steps, rows = _pending(env)
    plan = Plan(env.name, current, schema.head(), fingerprint=fingerprint())
    latest = latest_backup(env)
    takes_own = env.name in BACKUP_ENVIRONMENTS
    if takes_own:
        plan.backup = f"a new backup taken by the run (latest now: {latest.id if latest else 'none'})"
    else:
        plan.backup = latest.id if latest else "none"
    plan.restore = restore_command(env.name, "latest" if takes_own else latest.id if latest else None)
    if rehearsal is None:
        plan.rehearsal = "none yet: run `tradedb rehearse`"
    else:
        plan.rehearsal_current = rehearsal.fingerprint == plan.fingerprint
        stale = "" if plan.rehearsal_current else " (code changed since: estimates are stale)"
        plan.rehearsal = f"{rehearsal.fingerprint} at {rehearsal.started_at:%Y-%m-%d %H:%M} UTC{stale}"
    measured = {(s.kind, s.name): s for s in rehearsal.steps} if rehearsal else {}
    for step in steps:
        found = measured.get((step.kind, step.name))
        plan.steps.append(_plan_step(env, step, found, plan.restore, rows.get(step.name)))
    if takes_own and steps and latest is not None:
        plan.backup_seconds = latest.duration_s  # the run's own backup takes about as long as the last one
    known = [s.estimated_s for s in plan.steps]
    if rehearsal is not None and plan.rehearsal_current and None not in known:
        plan.estimated_seconds = sum(known) + plan.backup_seconds
    return plan


def restore_command(env_name: str, backup: str | None) -> str:
    """The exact restore a rollback of a data-dropping step needs.

    Production's run takes its own backup before its first change, so until a run has named it, the command is
    ``restore latest``: right after the run, the latest backup is that one (``Plan.with_backup`` names it).
    """
    if backup is None:
        return f"tradedb backup --env {env_name}  (no backup yet: take one before deploying)"
    return f"tradedb restore {backup} --env {env_name}"


def _plan_step(
    env: Environment, step: Step, measured, restore: str, rows: tuple[str, int] | None
) -> PlanStep:
    if step.kind == "data":
        m = data_migrations.get(step.name)
        rollback = (
            f"tradedb data revert {m.name} --env {env.name}"
            if m.reversible
            else f"{restore}  (not reversible)"
        )
        estimate, basis = (None, "not rehearsed")
        if measured is not None and rows is not None:
            estimate, basis = measured.scaled_seconds(rows[1], rows[0])
        return PlanStep(
            "data",
            m.name,
            m.feature,
            m.description.splitlines()[0] if m.description else "",
            estimate,
            measured.longest_lock_ms if measured else None,
            measured.lock_relation if measured else None,
            False,
            "batched: row locks for a fraction of a second per batch, stops at the window's end",
            rollback,
            basis,
        )
    info = next(r for r in schema.revisions() if r.revision == step.name)
    rollback = f"alembic -x env={env.name} downgrade {info.down_revision or 'base'}"
    if not info.preserves_data:
        rollback += f"; the data it drops comes back only with: {restore}"
    needs, why = _needs_window(info, measured)
    return PlanStep(
        "schema",
        info.revision,
        info.feature,
        info.message.splitlines()[0],
        measured.seconds if measured else None,
        measured.longest_lock_ms if measured else None,
        measured.lock_relation if measured else None,
        needs,
        why,
        rollback,
    )


def _needs_window(info: schema.RevisionInfo, measured) -> tuple[bool, str]:
    if measured is None:
        return True, "not rehearsed: lock time unknown"
    if info.requires_data:
        return True, "contract step after a data migration"
    if measured.longest_lock_ms >= ONLINE_LOCK_MS:
        return True, f"ACCESS EXCLUSIVE for {measured.longest_lock_ms:,.0f} ms in rehearsal"
    return False, f"longest ACCESS EXCLUSIVE lock {measured.lock_text} in rehearsal"
